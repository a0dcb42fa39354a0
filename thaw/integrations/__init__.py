"""Integrations a spec names (MLflow): which URIs the server allows, and their sinks."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from thaw.errors import SpecError
from thaw.settings import Settings
from thaw.spec import MlflowIntegration


def allowed_uris(settings: Settings) -> list[str]:
    return [u.strip() for u in settings.integration_uris.split(",") if u.strip()]


def check_integrations(integrations: Sequence[MlflowIntegration], settings: Settings) -> None:
    """Every integration's URI starts with an allowed prefix, and its library is here."""
    allowed = allowed_uris(settings)
    for i, integration in enumerate(integrations):
        uri = integration.tracking_uri
        if not any(uri.startswith(prefix) for prefix in allowed):
            shown = ", ".join(allowed) if allowed else "none"
            raise SpecError(
                ("integrations", i, "tracking_uri"),
                f"{uri[:200]!r} is not a URI this server sends to (allowed prefixes: {shown})",
                "use an allowed URI, or ask the operator to add it to THAW_INTEGRATION_URIS",
            )
        if importlib.util.find_spec("mlflow") is None:
            raise SpecError(
                ("integrations", i, "type"),
                "MLflow is not installed on this server",
                "install the mlflow extra (pip install 'thaw[mlflow]') or drop the integration",
            )
