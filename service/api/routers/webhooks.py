"""Webhooks: register, list, read and delete a tenant's endpoints, and their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from service.api.deps import SettingsDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookCreated,
    WebhookIn,
    WebhookList,
    WebhookOut,
)
from service.http.paging import paging
from service.http.problems import not_found
from thaw.webhooks import Webhook, WebhookStore
from thaw.webhooks.address import resolve_target
from thaw.webhooks.store import WEBHOOK_ID

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=V1_RESPONSES)

DELIVERY_ID = r"^evt_(e[vx]_)?[0-9a-f]{24}_[0-9]{1,20}_[0-9]{1,20}$"
DeliveryPageDep = paging(DELIVERY_ID, "evt_0123456789abcdef01234567_1700000000000_0", 72)


def _store(request: Request) -> WebhookStore:
    return WebhookStore(request.app.state.stores.client)


def _owned(request: Request, webhook_id: str, tenant: str) -> Webhook:
    hook = _store(request).get(webhook_id, tenant)
    if hook is None:
        raise not_found("webhook", webhook_id)
    return hook


WebhookId = Annotated[
    str,
    Path(
        description="A webhook id such as wh_0123456789abcdef01234567.",
        json_schema_extra={"pattern": WEBHOOK_ID.pattern},
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    summary="Register a webhook",
    description="Job events are POSTed to the URL, signed in the Standard Webhooks format "
    "(webhook-id, webhook-timestamp, webhook-signature). The secret is shown once.",
    responses=problem_responses(
        422, e429="The key has THAW_MAX_WEBHOOKS_PER_TENANT webhooks already."
    ),
)
def create_webhook(
    body: WebhookIn, request: Request, response: Response, settings: SettingsDep, tenant: TenantDep
) -> WebhookCreated:
    resolve_target(body.url, settings.webhooks_allow_private)
    events = list(dict.fromkeys(body.events))
    hook = _store(request).create(
        tenant, body.url, events, body.description, settings.max_webhooks_per_tenant
    )
    response.headers["Location"] = f"/v1/webhooks/{hook.id}"
    return WebhookCreated.model_validate({**hook.to_dict(), "secret": hook.secret})


@router.get("", response_model=WebhookList, summary="List webhooks, newest first")
def list_webhooks(request: Request, tenant: TenantDep) -> WebhookList:
    hooks = [WebhookOut.model_validate(h.to_dict()) for h in _store(request).list(tenant)]
    return WebhookList(data=hooks, has_more=False)


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="Read a webhook",
    responses=problem_responses(404),
)
def get_webhook(webhook_id: WebhookId, request: Request, tenant: TenantDep) -> WebhookOut:
    return WebhookOut.model_validate(_owned(request, webhook_id, tenant).to_dict())


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook and its delivery records",
    responses=problem_responses(404),
)
def delete_webhook(webhook_id: WebhookId, request: Request, tenant: TenantDep) -> Response:
    if not _store(request).delete(webhook_id, tenant):
        raise not_found("webhook", webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    summary="A webhook's deliveries, newest first",
    description="Each event sent (or being sent) with its tries: attempt, time, answer.",
    responses=problem_responses(404, 422),
)
def list_deliveries(
    webhook_id: WebhookId, request: Request, tenant: TenantDep, page: DeliveryPageDep
) -> DeliveryList:
    hook = _owned(request, webhook_id, tenant)
    found, has_more = _store(request).deliveries(hook.id, page.limit, page.after)
    return DeliveryList(data=[DeliveryOut.model_validate(d.to_dict()) for d in found],
                        has_more=has_more)  # fmt: skip
