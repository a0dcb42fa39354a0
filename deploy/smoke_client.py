"""The HTTP side of deploy/smoke: run inside the api container, standard library only.

    docker compose exec -T api python - COMMAND [ARGS] < deploy/smoke_client.py

Talks to the API at http://127.0.0.1:8000 with the first key of THAW_API_KEYS. Each
command prints one line of JSON and exits non-zero with a message when a check fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile

API = "http://127.0.0.1:8000"
KEY = os.environ["THAW_API_KEYS"].split(",")[0].split(":", 1)[1]
TERMINAL = {"succeeded", "failed", "cancelled"}


class SmokeFailure(Exception):
    pass


def request(method: str, path: str, body: bytes | None = None, content_type: str = "") -> tuple:
    """``(status, headers, body)``; the headers are case-insensitive."""
    headers = {"Authorization": f"Bearer {KEY}"}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(API + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        raise SmokeFailure(f"{method} {path}: {exc.code} {exc.read().decode()[:500]}") from exc


def get_json(path: str) -> dict:
    return json.loads(request("GET", path)[2])


def digits_zip(per_class: int) -> bytes:
    """Two classes of 32x32 images a model can tell apart: light and dark noise."""
    from PIL import Image

    rng = random.Random(0)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for label, (low, high) in {"dark": (0, 100), "light": (155, 255)}.items():
            for i in range(per_class):
                pixels = bytes(rng.randint(low, high) for _ in range(32 * 32 * 3))
                png = io.BytesIO()
                Image.frombytes("RGB", (32, 32), pixels).save(png, format="PNG")
                archive.writestr(f"{label}/{i}.png", png.getvalue())
    return out.getvalue()


def cmd_dataset(per_class: str) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="digits.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        + digits_zip(int(per_class))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    _, _, raw = request("POST", "/v1/datasets", body, f"multipart/form-data; boundary={boundary}")
    return {"dataset": json.loads(raw)["id"]}


def cmd_submit(dataset: str, epochs: str, image_size: str) -> dict:
    spec = {
        "name": f"smoke-{image_size}px",
        "base_model": {"source": "torchvision", "name": "resnet18"},
        "dataset": {"id": dataset, "validation": {"split": 0.2}},
        "freeze": {
            "default": "frozen",
            "rules": [{"match": "layer4", "trainable": True}, {"match": "fc", "trainable": True}],
        },
        "schedule": [{"at_epoch": 2, "unfreeze": ["layer3"], "lr": 1e-3}],
        "checkpointing": {"every_epochs": 1, "keep_last": 2},
        "hyperparameters": {
            "epochs": int(epochs),
            "batch_size": 16,
            "image_size": int(image_size),
            "lr": 3e-3,
            "num_workers": 0,
        },
    }
    status, _, raw = request("POST", "/v1/jobs", json.dumps(spec).encode(), "application/json")
    if status != 202:
        raise SmokeFailure(f"POST /v1/jobs answered {status}, not 202")
    return {"job": json.loads(raw)["id"]}


def cmd_wait(job: str, until: str, timeout: str) -> dict:
    """Until the job is terminal (``done``) or has run ``step:N`` steps; seconds taken."""
    start = time.monotonic()
    while time.monotonic() - start < float(timeout):
        state = get_json(f"/v1/jobs/{job}")
        if until.startswith("step:") and state["status"] in TERMINAL:
            raise SmokeFailure(f"{job} ended ({state['status']}) before {until}")
        if until.startswith("step:") and state["progress"].get("step", 0) >= int(until[5:]):
            return {"job": job, "step": state["progress"]["step"], "seconds": _since(start)}
        if until == "done" and state["status"] in TERMINAL:
            if state["status"] != "succeeded":
                raise SmokeFailure(f"{job} {state['status']}: {state['error']}")
            return {"job": job, "status": "succeeded", "seconds": _since(start)}
        time.sleep(1)
    raise SmokeFailure(f"{job} not {until} after {timeout} s")


def _since(start: float) -> float:
    return round(time.monotonic() - start, 1)


def cmd_checkpoint(job: str) -> dict:
    """Download the best checkpoint's weights; their sha256 must be the listed one and the ETag."""
    listing = get_json(f"/v1/jobs/{job}/checkpoints")["data"]
    best = [c for c in listing if c["best"]]
    if not best:
        raise SmokeFailure(f"{job} lists no best checkpoint: {[c['name'] for c in listing]}")
    files = {f["name"]: f for f in best[0]["files"]}
    listed = files["model.safetensors"]["sha256"]
    _, headers, raw = request("GET", f"/v1/jobs/{job}/checkpoints/best/model.safetensors")
    actual = hashlib.sha256(raw).hexdigest()
    if actual != listed or headers.get("ETag") != f'"{listed}"':
        raise SmokeFailure(f"sha256 {actual}, listed {listed}, ETag {headers.get('ETag')}")
    return {"job": job, "sha256": actual, "bytes": len(raw)}


def cmd_handover(job: str) -> dict:
    """The job was handed over once (released, not charged an attempt) and resumed: from
    the step checkpoint it saved on the way out, or from its last epoch checkpoint when
    the stop came between epochs (or during a phase's cache fill, before its first step)."""
    state = get_json(f"/v1/jobs/{job}")
    events, after = [], ""
    while True:
        page = get_json(f"/v1/jobs/{job}/events?limit=100{after}")
        events += page["data"]
        if not page["has_more"]:
            break
        after = f"&after={events[-1]['id']}"
    statuses = [e["data"] for e in events if e["type"] == "status"]
    logs = [e["data"].get("message", "") for e in events if e["type"] == "log"]
    released = [s for s in statuses if s.get("released")]
    saved = [m for m in logs if m.startswith("step checkpoint at step ")]
    resumed = [m for m in logs if m.startswith(("resumed from step ", "resumed from epoch "))]
    if state["status"] != "succeeded" or state["attempts"] != 1:
        raise SmokeFailure(f"{job}: {state['status']}, attempts {state['attempts']}")
    if not (released and resumed) or (resumed[0].startswith("resumed from step") and not saved):
        raise SmokeFailure(f"{job}: no hand-over in its events: {[s['status'] for s in statuses]}")
    checkpoint = saved[0] if saved else "none: the stop came before an epoch's first step"
    return {"job": job, "checkpoint": checkpoint, "resume": resumed[0]}


def main(argv: list[str]) -> int:
    commands = {
        "dataset": cmd_dataset,
        "submit": cmd_submit,
        "wait": cmd_wait,
        "checkpoint": cmd_checkpoint,
        "handover": cmd_handover,
    }
    try:
        print(json.dumps(commands[argv[0]](*argv[1:])))
    except SmokeFailure as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
