"""Send one delivery: signed in the Standard Webhooks format, to the checked address,
with bounded timeouts, no redirects and the receiver's body never read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook as Signer

from thaw.webhooks.address import resolve_target
from thaw.webhooks.errors import WebhookUrlRefused

USER_AGENT = "thaw-webhooks/1"


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str


def signed_headers(secret: str, msg_id: str, body: str, at: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent at ``at``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Signer(secret).sign(msg_id, at, body),
    }


def send(
    url: str, secret: str, msg_id: str, body: str, *, timeout_s: float, allow_private: bool
) -> Outcome:
    """One try; a 2xx answer is success, anything else (a redirect included) a failure."""
    try:
        target = resolve_target(url, allow_private)
    except WebhookUrlRefused as exc:
        return Outcome(False, None, exc.reason)
    headers = {
        **signed_headers(secret, msg_id, body, datetime.now(UTC)),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": target.host_header,
    }
    extensions = {"sni_hostname": target.url.host} if target.url.scheme == "https" else {}
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST",
                target.pinned_url,
                content=body.encode(),
                headers=headers,
                extensions=extensions,
            ) as response,
        ):
            code = response.status_code
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= code < 300:
        return Outcome(True, code, "")
    return Outcome(False, code, f"the receiver answered {code}")
