"""Settings from the environment, prefix ``THAW_``; shared by the CLI, the API and the worker."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THAW_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("./data")
    models_dir: Path = Path("./models")
    datasets_dir: Path = Path("./datasets")
    api_keys: str = Field(default="", description="Comma-separated tenant:key pairs.")
    queue: str = "gpu"
    allow_hub_downloads: bool = Field(
        default=False,
        description="Let workers download Hugging Face and timm weights from the hub; the "
        "API never does, and without it models resolve under models_dir only.",
    )
    allow_pickle_weights: bool = Field(
        default=False,
        description="Accept pytorch_model.bin / .pt weights, read with torch's weights_only "
        "loader; otherwise safetensors only.",
    )

    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_archive_members: int = Field(default=200_000, ge=1)
    max_uncompressed_bytes: int = Field(default=8 * 1024**3, ge=1)
    page_size_max: int = Field(default=100, ge=1)
    page_size_default: int = Field(default=20, ge=1)

    max_attempts: int = Field(default=3, ge=1)
    broker_visibility_timeout: float = Field(
        default=3600.0, gt=0, description="Redis re-delivers unacked messages after this."
    )
    lease_seconds: float = Field(default=60.0, gt=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    progress_interval_seconds: float = Field(default=1.0, ge=0)

    feature_cache_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Feature cache held in memory; beyond it the cache is a memory-mapped "
        "file in the job folder. None: a quarter of the memory available when the run starts.",
    )
    decoded_cache_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Decoded uint8 images of a job held in memory; beyond it they are a "
        "memory-mapped file in the job folder. None: an eighth of the memory available when "
        "the run starts.",
    )
    supervisor_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First wait before a dead worker process is restarted."
    )
    supervisor_backoff_max_seconds: float = Field(
        default=60.0, gt=0, description="Longest wait between restarts; doubles up to it."
    )
    supervisor_stable_seconds: float = Field(
        default=60.0, gt=0, description="A worker process up this long resets its backoff."
    )

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    sse_keepalive_seconds: float = Field(default=15.0, gt=0, le=50)

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "datasets"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
