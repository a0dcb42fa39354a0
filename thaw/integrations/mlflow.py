"""The MLflow sink: the run's curves logged to a tracking server from a thread of its
own, so a slow or failing server never holds a training step.

Metric keys match the TensorBoard tags (train/loss and lr/group_<k> by step, val/* by
epoch); a thaw is a tag. A resumed job logs into the same MLflow run (its id is kept in
the run folder). Credentials come from ``THAW_MLFLOW_CREDENTIALS`` for the tenant."""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from thaw.integrations import check_integrations
from thaw.settings import Settings
from thaw.spec import MlflowIntegration

QUEUE_MAX = 10_000
BATCH_MAX = 1000
STATE_DIR = "integrations"
END_STATUS = {"succeeded": "FINISHED", "cancelled": "KILLED", "failed": "FAILED"}
CREDENTIAL_ENV = {
    "username": "MLFLOW_TRACKING_USERNAME",
    "password": "MLFLOW_TRACKING_PASSWORD",
    "token": "MLFLOW_TRACKING_TOKEN",
}
_END = object()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class MlflowSink:
    name = "MLflow"

    def __init__(
        self,
        config: MlflowIntegration,
        index: int,
        job_name: str,
        run_dir: Path,
        settings: Settings,
        tenant: str | None,
    ):

        check_integrations([config], settings)  # the allow-list may have changed since submit
        self.config = config
        self.job_name = job_name
        self.run_label = run_dir.name
        self.state_file = run_dir / STATE_DIR / f"mlflow-{index}.json"
        self.credentials = settings.mlflow_credentials.get(tenant or "", {})
        self.close_timeout = settings.integration_close_seconds
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_MAX)
        self.error: str | None = None
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="thaw-mlflow", daemon=True)

    # Called from the training thread: never blocks. ---------------------------------------

    def _put(self, item: Any) -> None:
        if not self.thread.is_alive() and self.thread.ident is None:
            self.thread.start()  # at the first metric: a run that never trains logs nothing
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def progress(self, progress: dict[str, Any]) -> None:
        if "loss" not in progress:
            return
        step = progress["step"]
        self._put(("metric", "train/loss", progress["loss"], step))
        for k, lr in enumerate(progress.get("lr", [])):
            self._put(("metric", f"lr/group_{k}", lr, step))

    def metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if key != "epoch" and _finite(value):
                self._put(("metric", f"val/{key.removeprefix('val_')}", value, epoch))

    def phase(self, phase: int, step: int, thawed: list[str], frozen: list[str]) -> None:
        self._put(("tag", f"thaw.phase.{phase}", f"step {step}: {len(thawed)} thawed"))

    def failure(self) -> str | None:
        return self.error

    def close(self, status: str) -> None:
        if self.thread.ident is None:
            return
        self._put((_END, status))
        self.thread.join(self.close_timeout)
        if self.thread.is_alive() and self.error is None:
            self.error = f"did not finish within {self.close_timeout:g} s"
        if self.dropped and self.error is None:
            self.error = f"{self.dropped} metrics dropped: the server did not keep up"

    # The sender thread. --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with _credentials(self.credentials):
                client = self._client()
                run_id = self._run_id(client)
                while self._send(client, run_id):
                    pass
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {str(exc)[:300]}"

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.config.tracking_uri)

    def _run_id(self, client: Any) -> str:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())["run_id"]
        experiment = client.get_experiment_by_name(self.config.experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(self.config.experiment)
        )
        run = client.create_run(
            experiment_id, run_name=self.job_name, tags={"thaw.run": self.run_label}
        )
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"run_id": run.info.run_id}))
        return run.info.run_id

    def _send(self, client: Any, run_id: str) -> bool:
        """Send what is queued in one batch; False once the run has ended."""
        from mlflow.entities import Metric

        items = [self.queue.get()]
        while len(items) < BATCH_MAX:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        now = int(time.time() * 1000)
        metrics = [Metric(i[1], float(i[2]), now, int(i[3])) for i in items if i[0] == "metric"]
        if metrics:
            client.log_batch(run_id, metrics=metrics)
        for item in items:
            if item[0] == "tag":
                client.set_tag(run_id, item[1], item[2])
        ended = [i[1] for i in items if i[0] is _END]
        if ended:
            if ended[0] in END_STATUS:
                client.set_terminated(run_id, status=END_STATUS[ended[0]])
            return False
        return True


class _credentials:
    """The tenant's MLflow credentials in the environment MLflow reads, while sending.
    A worker runs one job at a time, so no other run shares them."""

    def __init__(self, values: dict[str, str]):
        self.values = {CREDENTIAL_ENV[k]: v for k, v in values.items() if k in CREDENTIAL_ENV}
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for name, value in self.values.items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = value

    def __exit__(self, *exc: object) -> None:
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
