"""Where the client finds the API: ``THAW_API_URL`` and ``THAW_API_KEY`` (or the flags)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THAW_", extra="ignore")

    api_url: str = "http://127.0.0.1:8000"
    api_key: str = Field(default="", description="Sent as 'Authorization: Bearer <key>'.")
    client_timeout_seconds: float = Field(default=60.0, gt=0)
    stream_retry_seconds: float = Field(
        default=2.0, ge=0, description="Wait before re-opening a dropped event stream."
    )
    stream_retries: int = Field(default=30, ge=0, description="Re-opens of one event stream.")
