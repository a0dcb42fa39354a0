"""Signed webhooks on job events: the stored endpoints, their deliveries and the dispatcher."""

from thaw.webhooks.events import EVENT_TYPES, JOB_EVENT_TYPES
from thaw.webhooks.store import Delivery, Webhook, WebhookStore

__all__ = ["EVENT_TYPES", "JOB_EVENT_TYPES", "Delivery", "Webhook", "WebhookStore"]
