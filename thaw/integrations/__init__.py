"""Integrations a spec names (MLflow): which URIs the server allows, and their sinks."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from thaw.errors import SpecError
from thaw.settings import Settings
from thaw.spec import MlflowIntegration


def allowed_uris(settings: Settings) -> list[str]:
    return [u.strip() for u in settings.integration_uris.split(",") if u.strip()]


def _under(uri: str, prefix: str) -> bool:
    """``uri`` is ``prefix`` or below it: a prefix without a trailing slash does not let
    ``https://host.evil`` pass for ``https://host``."""
    if not uri.startswith(prefix):
        return False
    return prefix.endswith("/") or len(uri) == len(prefix) or uri[len(prefix)] in "/?#"


def uri_problem(uri: str, allowed: Sequence[str]) -> str | None:
    """Why ``uri`` may not be sent to, or None."""
    parts = urlsplit(uri)
    if parts.username is not None or parts.password is not None:
        return "credentials in the URI are not accepted; the server holds them"
    if any(segment == ".." for segment in unquote(parts.path).split("/")):
        return "'..' is not accepted in the path"
    if not any(_under(uri, prefix) for prefix in allowed):
        shown = ", ".join(allowed) if allowed else "none"
        return f"{uri[:200]!r} is not a URI this server sends to (allowed prefixes: {shown})"
    return None


def check_integrations(integrations: Sequence[MlflowIntegration], settings: Settings) -> None:
    """Every integration's URI is allowed, and its library is installed here."""
    allowed = allowed_uris(settings)
    for i, integration in enumerate(integrations):
        problem = uri_problem(integration.tracking_uri, allowed)
        if problem is not None:
            raise SpecError(
                ("integrations", i, "tracking_uri"),
                problem,
                "use an allowed URI, or ask the operator to add it to THAW_INTEGRATION_URIS",
            )
        if importlib.util.find_spec("mlflow") is None:
            raise SpecError(
                ("integrations", i, "type"),
                "MLflow is not installed on this server",
                "install the mlflow extra (pip install 'thaw[mlflow]') or drop the integration",
            )
