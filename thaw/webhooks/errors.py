"""Errors of webhook registration, each with its HTTP status and code."""

from __future__ import annotations

from thaw.errors import ThawError


class WebhookUrlRefused(ThawError):
    """A webhook URL that is malformed, does not resolve, or points at a non-public
    address while ``THAW_WEBHOOKS_ALLOW_PRIVATE`` is off."""

    status = 422
    code = "webhook_url_refused"
    title = "Invalid request"

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"url: {reason}")

    def problem_fields(self) -> dict[str, object]:
        return {"errors": [{"loc": "url", "message": self.reason}]}


class TooManyWebhooks(ThawError):
    """A tenant at its ``THAW_MAX_WEBHOOKS_PER_TENANT``."""

    status = 429
    code = "too_many_webhooks"

    def __init__(self, limit: int):
        super().__init__(
            f"this key has {limit} webhooks, the most allowed (THAW_MAX_WEBHOOKS_PER_TENANT); "
            "delete one first"
        )
