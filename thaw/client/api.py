"""``ThawClient``: the JSON API's resources as methods over one ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from thaw.client.download import DownloadedFile, destination, download_file
from thaw.client.errors import ApiError, raise_for_problem
from thaw.client.settings import ClientSettings
from thaw.client.sse import SseEvent, parse_sse
from thaw.job_status import TaskStatus

RESUME_STATE_FILE = "training_state.safetensors"


class ThawClient:
    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        settings: ClientSettings | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.settings = settings or ClientSettings()
        self.api_url = (api_url or self.settings.api_url).rstrip("/")
        key = api_key if api_key is not None else self.settings.api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(
            base_url=self.api_url,
            headers=headers,
            timeout=self.settings.client_timeout_seconds,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ThawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        raise_for_problem(response)
        return None if response.status_code == 204 else response.json()

    # jobs
    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/jobs", json=spec, headers=headers)

    def plan(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/plans", json=spec)

    def list_jobs(
        self, status: str | None = None, limit: int | None = None, after: str | None = None
    ) -> dict[str, Any]:
        params = {k: v for k, v in (("status", status), ("limit", limit), ("after", after)) if v}
        return self._json("GET", "/v1/jobs", params=params)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def layers(self, job_id: str, epoch: int | None = None) -> dict[str, Any]:
        params = {"epoch": epoch} if epoch is not None else {}
        return self._json("GET", f"/v1/jobs/{job_id}/layers", params=params)

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/v1/jobs/{job_id}/checkpoints")["data"]

    def metrics(self, job_id: str, format: str = "json") -> str:
        """The job's metrics export as text (JSON or CSV)."""
        response = self.http.get(f"/v1/jobs/{job_id}/metrics", params={"format": format})
        raise_for_problem(response)
        return response.text

    # webhooks
    def add_webhook(
        self, url: str, events: list[str] | None = None, description: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url, "description": description}
        if events:
            body["events"] = events
        return self._json("POST", "/v1/webhooks", json=body)

    def list_webhooks(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/webhooks")["data"]

    def delete_webhook(self, webhook_id: str) -> None:
        self._json("DELETE", f"/v1/webhooks/{webhook_id}")

    def deliveries(self, webhook_id: str, limit: int | None = None) -> dict[str, Any]:
        params = {"limit": limit} if limit else {}
        return self._json("GET", f"/v1/webhooks/{webhook_id}/deliveries", params=params)

    # events
    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Every event recorded so far, oldest first, page by page."""
        after: str | None = None
        while True:
            params = {"after": after} if after else {}
            page = self._json("GET", f"/v1/jobs/{job_id}/events", params=params)
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1]["id"]

    def follow(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Every event, then live ones until the job is terminal (the server ends the stream).

        A dropped connection is re-opened after the last event seen."""
        last_id: str | None = None
        retries = self.settings.stream_retries
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                with self.http.stream(
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(self.settings.client_timeout_seconds, read=None),
                ) as response:
                    raise_for_problem(response)
                    for event in parse_sse(response.iter_lines()):
                        if _is_job_event(event):
                            last_id = event.id
                            yield event.data
                return
            except (httpx.TransportError, httpx.DecodingError):
                if retries <= 0:
                    raise
                retries -= 1
                time.sleep(self.settings.stream_retry_seconds)

    # checkpoints
    def download(
        self,
        job_id: str,
        checkpoint: str,
        out: Path,
        *,
        with_resume_state: bool = False,
    ) -> list[DownloadedFile]:
        """The files of ``checkpoint`` (``best``, ``last`` or ``epoch-<k>``) into ``out``,
        each resumed if partly there and checked against the listed sha256."""
        entry = pick_checkpoint(self.checkpoints(job_id), checkpoint)
        files = [f for f in entry["files"] if with_resume_state or f["name"] != RESUME_STATE_FILE]
        out.mkdir(parents=True, exist_ok=True)
        # Every listed name is checked before anything is written.
        targets = [destination(out, str(f["name"])) for f in files]
        base = f"/v1/jobs/{job_id}/checkpoints/{quote(str(entry['name']), safe='')}"
        done = []
        for f, dest in zip(files, targets, strict=True):
            dest.parent.mkdir(exist_ok=True)  # adapter/ of a lora checkpoint
            done.append(
                download_file(
                    self.http,
                    f"{base}/{quote(str(f['name']), safe='/')}",
                    dest,
                    size=f["size"],
                    sha256=f["sha256"],
                )
            )
        return done

    # evaluations, predictions, exports
    def evaluate(
        self, job_id: str, checkpoint: str = "best", dataset: str | None = None
    ) -> dict[str, Any]:
        choice = {"id": dataset} if dataset else {"split": "validation"}
        body = {"checkpoint": checkpoint, "dataset": choice}
        return self._json("POST", f"/v1/jobs/{job_id}/evaluations", json=body)

    def export(self, job_id: str, checkpoint: str = "best", fmt: str = "onnx") -> dict[str, Any]:
        body = {"checkpoint": checkpoint, "format": fmt}
        return self._json("POST", f"/v1/jobs/{job_id}/exports", json=body)

    def predict(
        self,
        job_id: str,
        *,
        texts: list[str] | None = None,
        files: list[Path] | None = None,
        checkpoint: str = "best",
        top_k: int = 5,
    ) -> dict[str, Any]:
        """Top classes per input; the server waits for a worker up to its deadline."""
        url = f"/v1/jobs/{job_id}/predictions"
        if texts is not None:
            body = {"checkpoint": checkpoint, "texts": texts, "top_k": top_k}
            return self._json("POST", url, json=body)
        parts = [
            ("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in files or []
        ]
        form = {"checkpoint": checkpoint, "top_k": str(top_k)}
        return self._json("POST", url, files=parts, data=form)

    def wait_task(self, task: dict[str, Any], poll_seconds: float = 0.5) -> dict[str, Any]:
        """Poll an evaluation or export until it has succeeded or failed."""
        while not TaskStatus(task["status"]).terminal:
            time.sleep(poll_seconds)
            task = self._json("GET", task["links"]["self"])
        return task

    def download_export(self, export: dict[str, Any], out: Path) -> list[DownloadedFile]:
        """An export's files into ``out``, each checked against its listed sha256."""
        out.mkdir(parents=True, exist_ok=True)
        return [
            download_file(
                self.http,
                f"/v1/exports/{export['id']}/files/{f['name']}",
                out / f["name"],
                size=f["size"],
                sha256=f["sha256"],
            )
            for f in export["result"]["files"]
        ]

    # datasets
    def upload_dataset(self, path: Path, name: str | None = None) -> dict[str, Any]:
        data = {"name": name} if name else {}
        with path.open("rb") as fh:
            return self._json(
                "POST",
                "/v1/datasets",
                files={"file": (path.name, fh, "application/octet-stream")},
                data=data,
                timeout=httpx.Timeout(self.settings.client_timeout_seconds, write=None),
            )


def pick_checkpoint(listing: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """``best``/``last`` by their flags, else the checkpoint of that name."""
    for entry in listing:
        if (name == "best" and entry["best"]) or (name == "last" and entry["last"]):
            return entry
        if entry["name"] == name:
            return entry
    names = ", ".join(e["name"] for e in listing) or "none yet"
    raise ApiError(
        404, "Not Found", f"no checkpoint {name!r}; this job has: {names} (and best, last)"
    )


def _is_job_event(event: SseEvent) -> bool:
    return isinstance(event.data, dict) and "type" in event.data
