"""Settings from the environment, prefix ``THAW_``; shared by the CLI, the API and the worker."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THAW_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("./data")
    models_dir: Path = Path("./models")
    datasets_dir: Path = Path("./datasets")
    api_keys: str = Field(default="", description="Comma-separated tenant:key pairs.")
    admin_keys: str = Field(
        default="",
        description="Comma-separated keys that read cluster-wide figures (every job count, "
        "every worker, request counters) in /metrics, /v1/workers and /readyz; they own no jobs.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies; only a request "
        "from one of them has its client address taken from X-Forwarded-For.",
    )
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
    max_archive_header_bytes: int = Field(
        default=64 * 1024, ge=512, description="One tar PAX or GNU long-name header."
    )
    max_member_depth: int = Field(default=32, ge=1, description="Folders in an archive path.")
    max_member_name_chars: int = Field(default=1024, ge=16, description="An archive path.")
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, description="Decoded pixels of one image (from its header)."
    )
    max_dataset_pixels: int = Field(
        default=20_000_000_000, ge=1, description="Decoded pixels of one uploaded dataset."
    )
    max_classes: int = Field(
        default=10_000,
        ge=2,
        description="Classes of one dataset (an upload or a spec's dataset; 422 beyond).",
    )
    page_size_max: int = Field(default=100, ge=1)
    page_size_default: int = Field(default=20, ge=1)

    max_attempts: int = Field(default=3, ge=1)
    broker_visibility_timeout: float = Field(
        default=3600.0, gt=0, description="Redis re-delivers unacked messages after this."
    )
    lease_seconds: float = Field(default=60.0, gt=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    progress_interval_seconds: float = Field(default=1.0, ge=0)
    store_outage_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a running job rides out an unreachable Redis (its writes are "
        "buffered and retried with backoff) before the worker gives the job up.",
    )
    store_outbox_max: int = Field(
        default=10_000, ge=1, description="Writes a running job buffers while Redis is away."
    )
    redispatch_seconds: float | None = Field(
        default=None,
        gt=0,
        description="A queued job with no message in the broker is sent again after this "
        "(default: twice the lease).",
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        description="torch intra- and inter-op threads of a worker and of `thaw train` (0: "
        "the CPUs the process may use: affinity, cgroup cpuset and CPU quota, rounded down). "
        "Bitwise-equal resume needs the same count on every worker of a pool.",
    )

    feature_cache_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Feature cache held in memory; beyond it the cache is a memory-mapped "
        "file in the job folder. None: a quarter of the memory available when the run starts.",
    )
    feature_cache_gpu_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Feature cache held in GPU memory on a GPU worker; beyond it the cache "
        "sits in pinned host memory. None: a quarter of the GPU's memory.",
    )
    cache_fill_batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Samples per batch of the feature cache's fill (one inference pass "
        "before a phase's first step). None: as many as the frozen prefix's largest "
        "activation fits in a sixteenth of the GPU's memory (on a CPU: in 8 MiB), from the "
        "training batch size up to 1024.",
    )
    decoded_cache_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Decoded uint8 images of a job held in memory; beyond it they are a "
        "memory-mapped file in the job folder. None: an eighth of the memory available when "
        "the run starts.",
    )
    disk_reserve_bytes: int = Field(
        default=512 * 1024**2,
        ge=0,
        description="Free disk a worker keeps: a checkpoint or a cache spill that would leave "
        "less fails the job with storage_full instead of filling the disk.",
    )
    max_job_host_memory_bytes: int = Field(
        default=32 * 1024**3,
        ge=1,
        description="Host memory one job may take by its plan (422 at submit beyond); the "
        "worker fails a run whose memory grows past it as out_of_memory. The in-memory parts "
        "of the input caches default to a quarter and an eighth of it.",
    )
    max_job_gpu_memory_bytes: int = Field(
        default=80 * 1024**3, ge=1, description="GPU memory one job may take by its plan (422)."
    )
    max_job_feature_cache_bytes: int = Field(
        default=64 * 1024**3, ge=0, description="A job's feature cache, memory and disk (422)."
    )
    max_job_decoded_cache_bytes: int = Field(
        default=64 * 1024**3, ge=0, description="A job's decoded-image cache, memory and disk."
    )
    max_job_checkpoint_bytes: int = Field(
        default=64 * 1024**3, ge=1, description="The checkpoints one job keeps, all told (422)."
    )
    max_job_disk_bytes: int = Field(
        default=128 * 1024**3,
        ge=1,
        description="Disk one job may fill on its worker: spilled caches and checkpoints (422).",
    )
    max_keep_last: int = Field(default=20, ge=1, description="checkpointing.keep_last (422).")
    min_checkpoint_every_steps: int = Field(
        default=50, ge=1, description="The shortest checkpointing.every_steps (422)."
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

    selector_regex_max_chars: int = Field(default=256, ge=1, description="Longest re: pattern.")
    selector_regex_max_mem: int = Field(
        default=8 * 1024**2, ge=1024**2, description="RE2 memory budget per compiled re: pattern."
    )
    max_selectors: int = Field(default=1000, ge=1, description="Selectors in one spec, all told.")
    max_rotate_intervals: int = Field(
        default=1000, ge=1, description="Intervals (phase changes) one rotate preset expands into."
    )
    lora_max_rank: int = Field(default=256, ge=1, description="Largest freeze.adapter.r.")
    max_plan_rows: int = Field(
        default=100_000, ge=1, description="Epochs x layers of one plan or layer status."
    )
    max_metadata_bytes: int = Field(default=16 * 1024, ge=2, description="A spec's metadata JSON.")
    max_json_body_bytes: int = Field(default=1024**2, ge=1024, description="JSON bodies (413).")
    plan_workers: int = Field(default=2, ge=1, description="Threads resolving specs in the API.")
    plan_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Deadline of one plan or submit in the API (503 after)."
    )
    max_queued_jobs_per_tenant: int = Field(
        default=100, ge=1, description="Queued jobs one tenant may have (429 beyond)."
    )
    sse_max_streams_per_tenant: int = Field(default=50, ge=1, description="Open SSE streams.")
    upload_read_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Longest wait for the next chunk of an upload (408)."
    )
    auth_failures_max: int = Field(
        default=20,
        ge=1,
        description="Invalid API keys per client address, and per key prefix, in the window "
        "(429 for further invalid keys; a valid key always passes).",
    )
    auth_failure_window_seconds: float = Field(
        default=60.0, gt=0, description="The window of auth_failures_max."
    )
    max_datasets_per_tenant: int = Field(
        default=1000, ge=1, description="Stored uploads one tenant may have (429 beyond)."
    )
    max_dataset_bytes_per_tenant: int = Field(
        default=100 * 1024**3, ge=1, description="Bytes of one tenant's stored uploads (429)."
    )
    max_prediction_inputs: int = Field(
        default=16, ge=1, le=1000, description="Images or texts in one prediction request."
    )
    max_prediction_bytes: int = Field(
        default=32 * 1024**2, ge=1024, description="A multipart prediction request body (413)."
    )
    max_prediction_text_chars: int = Field(
        default=10_000, ge=1, description="Characters of one text to predict on."
    )
    prediction_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long the API waits for a worker's prediction (503)."
    )
    evaluation_batch_size: int = Field(default=64, ge=1, description="Batch of evaluations.")
    evaluation_worst_examples: int = Field(
        default=20, ge=0, le=1000, description="Worst-predicted examples an evaluation lists."
    )
    evaluation_confused_pairs: int = Field(
        default=10, ge=0, le=10_000, description="Most confused class pairs an evaluation lists."
    )
    onnx_opset: int = Field(default=18, ge=14, le=23, description="ONNX opset of exports.")
    export_tolerance: float = Field(
        default=1e-3, gt=0, description="Largest |onnxruntime - PyTorch| logit an export passes."
    )

    webhooks_allow_private: bool = Field(
        default=False,
        description="Let webhook URLs resolve to private, loopback, link-local or other "
        "non-public addresses (a receiver on this host or network).",
    )
    max_webhooks_per_tenant: int = Field(default=20, ge=1, description="Webhooks (429 beyond).")
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Connect, send and answer limit of one delivery."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Tries of one delivery before it is marked failed."
    )
    webhook_backoff_seconds: float = Field(
        default=5.0, gt=0, description="Wait before the second try; doubles with each try."
    )
    webhook_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two tries of a delivery."
    )
    webhook_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A delivery a dispatcher claimed and did not settle (it died) is tried "
        "again after this; keep it above three times webhook_timeout_seconds.",
    )
    webhook_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often a dispatcher looks for due deliveries."
    )
    webhook_deliveries_kept: int = Field(
        default=500, ge=1, description="Delivery records kept per webhook, newest first."
    )
    integration_uris: str = Field(
        default="",
        description="Comma-separated URI prefixes a spec's integrations may send to (such as "
        "https://mlflow.example.com/,file:///srv/mlruns/); empty: integrations are refused.",
    )
    mlflow_credentials: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Per-tenant MLflow credentials as JSON: {"tenant": {"username": ..., '
        '"password": ...} or {"token": ...}}; never taken from a spec.',
    )
    integration_close_seconds: float = Field(
        default=30.0, gt=0, description="Wait for an integration to send its last metrics."
    )

    artifacts_url: str = Field(
        default="",
        description="Where checkpoints, resume points and uploaded datasets live: empty keeps "
        "them under data_dir (one host or a shared mount); s3://bucket/prefix puts them in an "
        "S3-compatible object store.",
    )
    artifacts_endpoint: str | None = Field(
        default=None,
        description="The object store's URL (http://seaweedfs:8333); empty: AWS S3.",
    )
    artifacts_region: str = Field(default="us-east-1", description="The object store's region.")
    artifacts_access_key_id: str | None = Field(
        default=None,
        description="Access key of the object store; empty: the credentials file, else AWS_* "
        "variables and boto3's usual chain.",
    )
    artifacts_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret of the access key."
    )
    artifacts_credentials_file: Path | None = Field(
        default=None,
        description="An AWS-style credentials file ([default] aws_access_key_id, "
        "aws_secret_access_key), read when the two settings above are empty.",
    )
    artifacts_presign_seconds: int = Field(
        default=0,
        ge=0,
        le=7 * 24 * 3600,
        description="With an S3 store: checkpoint downloads answer 302 to a presigned URL "
        "valid this long; 0 streams them through the API.",
    )
    artifacts_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to reach the object store before a try fails."
    )
    artifacts_outage_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a job rides out an unreachable object store (each upload and "
        "commit tried again with backoff) before it fails with artifact_store_unreachable.",
    )
    dataset_cache_bytes: int = Field(
        default=20 * 1024**3,
        ge=0,
        description="With an object store: the most bytes of uploaded datasets a worker keeps "
        "unpacked in its local cache (least recently used evicted first).",
    )
    artifacts_multipart_bytes: int = Field(
        default=64 * 1024**2,
        ge=5 * 1024**2,
        description="Files above this are uploaded in parts of this size.",
    )

    @property
    def redispatch_period(self) -> float:
        return self.redispatch_seconds or 2 * self.lease_seconds

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "datasets"


DEFAULTS = Settings.model_construct()
"""The built-in defaults, no environment read: the limits of a call given no settings."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
