"""After a real digits job: evaluations, predictions and ONNX exports through the API, each
computed on a real worker, checked against sklearn, thaw.load_model and onnxruntime, and
the client commands that drive them."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest
import redis
import torch
from api_fixtures import KEYS, ApiServer, ApiServers, problem
from digits import write_digits_folder, zip_folder
from PIL import Image
from redis_server import RedisDatabases
from sklearn.metrics import classification_report, confusion_matrix
from support import thaw_cli
from worker_fixtures import Stack, digits_spec, write_base_weights

import thaw

pytestmark = pytest.mark.slow
ALICE, BOB = KEYS["alice"], KEYS["bob"]


@dataclass
class Trained:
    stack: Stack
    api: ApiServer
    job_id: str
    dataset_id: str
    test_folder: Path

    def client(self, key: str = ALICE) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.api.url, headers=headers, timeout=120.0)

    @property
    def best(self) -> Path:
        return self.stack.settings.jobs_dir / self.job_id / "checkpoints" / "best"


def _wait(http: httpx.Client, url: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(url).json()
        if body["status"] not in ("queued", "running"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


@pytest.fixture(scope="module")
def trained(
    module_tmp_path: Path, redis_databases: RedisDatabases, api_servers: ApiServers
) -> Iterator[Trained]:
    """One digits job (1 epoch) of tenant alice, an uploaded digits test set, a worker."""
    root = module_tmp_path
    with ExitStack() as cleanup:
        url = cleanup.enter_context(redis_databases.lend())
        client = redis.Redis.from_url(url, decode_responses=True)
        cleanup.callback(client.close)
        stack = Stack(root, url, client)
        cleanup.callback(stack.stop)
        yield _train(stack, api_servers, cleanup)


def _train(stack: Stack, api_servers: ApiServers, cleanup: ExitStack) -> Trained:
    root = stack.root
    for folder in ("data", "models", "datasets"):
        (root / folder).mkdir()
    write_base_weights(root / "models")
    write_digits_folder(root / "datasets" / "digits", per_class=12, size=32)
    test_folder = write_digits_folder(root / "test-digits", per_class=4, size=32)
    archive = zip_folder(test_folder, root / "test-digits.zip")
    keys = ",".join(f"{tenant}:{key}" for tenant, key in KEYS.items())
    env = {"THAW_API_KEYS": keys, "THAW_AUTH_FAILURES_MAX": "1000000"}
    stack.start_worker("w")
    api = cleanup.enter_context(api_servers.serving(env, redis_url=stack.redis_url, root=root))
    with api.client(ALICE) as http:
        spec = digits_spec(epochs=1, batch_size=8, lr=1e-3)
        job = http.post("/v1/jobs", json=spec)
        assert job.status_code == 202, job.text
        with archive.open("rb") as fh:
            upload = http.post("/v1/datasets", files={"file": ("test.zip", fh)})
        assert upload.status_code == 201, upload.text
        done = stack.wait_done(job.json()["id"], timeout=600)
        assert done.status == "succeeded", done.to_dict()
    return Trained(stack, api, done.id, upload.json()["id"], test_folder)


def _images(model_config: dict[str, Any], paths: list[Path]) -> torch.Tensor:
    """The pixels as training normalizes them, computed here from PIL and numpy."""
    size = model_config["image_size"]
    mean = np.array(model_config["mean"], dtype=np.float32)
    std = np.array(model_config["std"], dtype=np.float32)
    batch = []
    for path in paths:
        rgb = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        pixels = (np.asarray(rgb, dtype=np.float32) / 255.0 - mean) / std
        batch.append(torch.from_numpy(pixels).permute(2, 0, 1))
    return torch.stack(batch)


def _predicted(trained: Trained, paths: list[Path]) -> list[int]:
    model = thaw.load_model(trained.best)
    config = json.loads((trained.best / "config.json").read_text())
    with torch.no_grad():
        return model(_images(config, paths)).argmax(dim=1).tolist()


def test_evaluation_equals_sklearn_on_predictions_made_here(trained: Trained) -> None:
    with trained.client() as http:
        created = http.post(
            f"/v1/jobs/{trained.job_id}/evaluations",
            json={"checkpoint": "best", "dataset": {"id": trained.dataset_id}},
        )
        assert created.status_code == 202, created.text
        location = created.headers["Location"]
        assert location == f"/v1/evaluations/{created.json()['id']}"
        evaluation = _wait(http, location)
        listed = http.get(f"/v1/jobs/{trained.job_id}/evaluations").json()["data"]
    assert evaluation["status"] == "succeeded", evaluation
    assert [e["id"] for e in listed][:1] == [evaluation["id"]]
    result = evaluation["result"]
    classes = result["classes"]
    assert classes == [str(d) for d in range(10)]

    paths = sorted(trained.test_folder.rglob("*.png"))
    truth = [classes.index(p.parent.name) for p in paths]
    preds = _predicted(trained, paths)
    labels = list(range(10))
    matrix = confusion_matrix(truth, preds, labels=labels)
    assert result["confusion_matrix"] == matrix.tolist()
    assert [sum(row) for row in result["confusion_matrix"]] == [
        c["support"] for c in result["per_class"]
    ]
    report = classification_report(
        truth, preds, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    for row in result["per_class"]:
        expected = report[row["class"]]
        assert row["precision"] == pytest.approx(expected["precision"], abs=1e-12)
        assert row["recall"] == pytest.approx(expected["recall"], abs=1e-12)
        assert row["f1"] == pytest.approx(expected["f1-score"], abs=1e-12)
        assert row["support"] == expected["support"]
    assert result["accuracy"] == pytest.approx(report["accuracy"], abs=1e-12)
    assert result["f1_macro"] == pytest.approx(report["macro avg"]["f1-score"], abs=1e-12)
    assert result["f1_weighted"] == pytest.approx(report["weighted avg"]["f1-score"], abs=1e-12)

    off = [(matrix[t, p], t, p) for t in labels for p in labels if t != p and matrix[t, p]]
    if off:
        top = max(off, key=lambda c: c[0])
        assert result["most_confused"][0]["count"] == top[0]
    names = {p.relative_to(trained.test_folder).as_posix() for p in paths}
    assert result["worst_examples"]
    assert {w["example"] for w in result["worst_examples"]} <= names


def test_validation_split_evaluation_names_its_files(trained: Trained) -> None:
    with trained.client() as http:
        created = http.post(f"/v1/jobs/{trained.job_id}/evaluations", json={})
        assert created.status_code == 202, created.text
        evaluation = _wait(http, created.headers["Location"])
        job = http.get(f"/v1/jobs/{trained.job_id}").json()
    assert evaluation["status"] == "succeeded", evaluation
    assert evaluation["request"]["dataset"] == {"split": "validation"}
    result = evaluation["result"]
    # 12 images per class, a stratified 0.2 split: the job's own validation part.
    assert result["num_examples"] == sum(sum(row) for row in result["confusion_matrix"]) == 20
    assert result["accuracy"] == pytest.approx(job["metrics"]["val_accuracy"], abs=1e-9)
    assert all(w["example"].endswith(".png") for w in result["worst_examples"])


def test_another_tenant_gets_404(trained: Trained) -> None:
    with trained.client() as http:
        mine = http.post(f"/v1/jobs/{trained.job_id}/evaluations", json={}).json()
    with trained.client(BOB) as http:
        for response in (
            http.get(f"/v1/evaluations/{mine['id']}"),
            http.get(f"/v1/jobs/{trained.job_id}/evaluations"),
            http.post(f"/v1/jobs/{trained.job_id}/evaluations", json={}),
            http.post(f"/v1/jobs/{trained.job_id}/exports", json={}),
            http.post(f"/v1/jobs/{trained.job_id}/predictions", json={"texts": ["x"]}),
        ):
            assert problem(response, 404)["code"] in ("evaluation_not_found", "job_not_found")


def test_bad_checkpoint_names_are_422_and_create_nothing(trained: Trained) -> None:
    url = f"/v1/jobs/{trained.job_id}/evaluations"
    with trained.client() as http:
        before = http.get(url).json()["data"]
        missing = problem(http.post(url, json={"checkpoint": "epoch-99"}), 422)
        assert missing["code"] == "invalid_checkpoint"
        assert missing["errors"][0]["loc"] == "checkpoint"
        assert "epoch-1" in missing["errors"][0]["hint"]
        tricky = problem(http.post(url, json={"checkpoint": "../epoch-1"}), 422)
        assert tricky["errors"][0]["loc"] == "checkpoint"
        export = problem(
            http.post(f"/v1/jobs/{trained.job_id}/exports", json={"checkpoint": "epoch-7"}), 422
        )
        assert export["code"] == "invalid_checkpoint"
        assert http.get(url).json()["data"] == before


def test_a_dataset_with_other_classes_is_422_naming_them(trained: Trained, tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 90, 10, 10)).save(tmp_path / "pets" / name / f"{i}.png")
    archive = zip_folder(tmp_path / "pets", tmp_path / "pets.zip")
    with trained.client() as http:
        with archive.open("rb") as fh:
            pets = http.post("/v1/datasets", files={"file": ("pets.zip", fh)}).json()
        response = http.post(
            f"/v1/jobs/{trained.job_id}/evaluations", json={"dataset": {"id": pets["id"]}}
        )
    body = problem(response, 422)
    assert body["code"] == "class_mismatch"
    assert body["unknown_classes"] == ["cat", "dog"]
    assert "'cat', 'dog'" in body["detail"]


def test_predictions_on_digit_pngs_are_what_load_model_predicts(trained: Trained) -> None:
    paths = sorted(trained.test_folder.rglob("*.png"))[::7]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    with trained.client() as http:
        response = http.post(
            f"/v1/jobs/{trained.job_id}/predictions", files=files, data={"top_k": "3"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert http.get(f"/v1/predictions/{body['id']}").json()["status"] == "succeeded"
        texts = http.post(f"/v1/jobs/{trained.job_id}/predictions", json={"texts": ["seven"]})
        broken = http.post(
            f"/v1/jobs/{trained.job_id}/predictions",
            files=[("files", ("broken.png", b"not an image", "image/png"))],
        )
    rows = body["result"]["predictions"]
    assert [r["input"] for r in rows] == [p.name for p in paths]
    assert all(len(r["top"]) == 3 for r in rows)
    classes = body["result"]["classes"]
    assert [classes.index(r["top"][0]["class"]) for r in rows] == _predicted(trained, paths)
    assert problem(texts, 422)["errors"][0]["loc"] == "texts"
    assert problem(broken, 422)["code"] == "undecodable_image"


def test_a_prediction_no_worker_answers_is_503_with_retry_after(
    trained: Trained, api_servers: ApiServers
) -> None:
    env = {
        "THAW_QUEUE": "nobody-listens",
        "THAW_PREDICTION_TIMEOUT_SECONDS": "0.5",
        "THAW_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
    }
    where = {"redis_url": trained.api.redis_url, "root": trained.api.root}
    with api_servers.in_process(env, **where) as idle, idle.client(ALICE) as http:
        png = next(trained.test_folder.rglob("*.png"))
        response = http.post(
            f"/v1/jobs/{trained.job_id}/predictions",
            files=[("files", (png.name, png.read_bytes(), "image/png"))],
        )
        body = problem(response, 503)
        assert body["code"] == "prediction_timeout"
        assert response.headers["Retry-After"] == "1"
        record = http.get(response.headers["Location"]).json()
    assert record["status"] == "expired"
    # Its uploaded image is removed with it; no worker will read it.
    inputs = trained.stack.settings.jobs_dir / trained.job_id / "predictions" / record["id"]
    assert not inputs.exists()


def test_onnx_export_of_resnet18_matches_pytorch(trained: Trained, tmp_path: Path) -> None:
    with trained.client() as http:
        created = http.post(f"/v1/jobs/{trained.job_id}/exports", json={"format": "onnx"})
        assert created.status_code == 202, created.text
        export = _wait(http, created.headers["Location"])
        assert export["status"] == "succeeded", export
        listed = http.get(f"/v1/jobs/{trained.job_id}/exports").json()["data"]
        assert export["id"] in [e["id"] for e in listed]
        for f in export["result"]["files"]:
            response = http.get(f"/v1/exports/{export['id']}/files/{f['name']}")
            assert response.status_code == 200
            assert response.headers["etag"] == f'"{f["sha256"]}"'
            (tmp_path / f["name"]).write_bytes(response.content)
        assert problem(http.get(f"/v1/exports/{export['id']}/files/nope.bin"), 404)
        model_url = f"/v1/exports/{export['id']}/files/model.onnx"
        whole = (tmp_path / "model.onnx").read_bytes()
        part = http.get(model_url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == whole[10:20]
        stale = http.get(model_url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == whole
    result = export["result"]
    assert result["max_abs_diff"] <= 1e-4
    assert {"model.onnx", "config.json"} <= {f["name"] for f in result["files"]}

    session = onnxruntime.InferenceSession(
        str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    got = session.run(["logits"], {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        want = thaw.load_model(trained.best)(x).numpy()
    assert got.shape == (5, 10)
    assert float(np.abs(got - want).max()) <= 1e-4


def _thaw(trained: Trained, *args: str) -> subprocess.CompletedProcess[str]:
    return thaw_cli(trained.api.url, *args, key=ALICE, timeout=600)


def test_client_evaluate_predict_and_export(trained: Trained, tmp_path: Path) -> None:
    evaluated = _thaw(trained, "evaluate", trained.job_id, "--dataset", trained.dataset_id)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "confusion matrix (rows: true class, columns: predicted)" in evaluated.stdout
    assert "accuracy " in evaluated.stdout

    png = sorted(trained.test_folder.rglob("*.png"))[:2]
    predicted = _thaw(trained, "predict", trained.job_id, *map(str, png), "--json")
    assert predicted.returncode == 0, predicted.stderr
    rows = json.loads(predicted.stdout)["result"]["predictions"]
    classes = [str(d) for d in range(10)]
    assert [classes.index(r["top"][0]["class"]) for r in rows] == _predicted(trained, png)

    bad = _thaw(trained, "evaluate", trained.job_id, "--checkpoint", "epoch-42")
    assert bad.returncode == 1
    assert "has no checkpoint 'epoch-42'" in bad.stderr

    exported = _thaw(trained, "export", trained.job_id, "--format", "onnx", "-o", str(tmp_path))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "model.onnx").is_file()
    assert "sha256" in exported.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["classes"] == classes and config["inputs"] == ["pixel_values"]
    assert io.BytesIO((tmp_path / "model.onnx").read_bytes()).getbuffer().nbytes > 0


def test_job_page_draws_stored_curves_and_the_heat_map(trained: Trained, page, artifacts) -> None:
    with trained.client() as http:
        created = http.post(
            f"/v1/jobs/{trained.job_id}/evaluations", json={"dataset": {"id": trained.dataset_id}}
        )
        evaluation = _wait(http, created.headers["Location"])
    assert evaluation["status"] == "succeeded", evaluation
    streams: list[str] = []
    page.on(
        "request",
        lambda r: (
            streams.append(r.url) if "text/event-stream" in r.headers.get("accept", "") else None
        ),
    )
    page.add_init_script(f"sessionStorage.setItem('thaw.apiKey', {ALICE!r})")
    page.goto(f"{trained.api.url}/ui/jobs/{trained.job_id}")
    page.locator("body[data-history=loaded]").wait_for()
    page.locator("#accuracy-chart .val-accuracy circle.pt").wait_for()
    assert page.locator("#loss-chart .train-loss circle.pt").count() > 0
    assert page.locator("#loss-chart .val-loss circle.pt").count() == 1
    # A finished job's curves come from its stored events; no event stream is opened.
    assert streams == []

    card = page.locator(f'article[data-evaluation="{evaluation["id"]}"]')
    card.locator("svg.heatmap rect.cell").nth(99).wait_for()
    cells = card.locator("svg.heatmap rect.cell")
    assert cells.count() == 100
    shown = cells.evaluate_all("cs => cs.map(c => Number(c.dataset.count))")
    matrix = evaluation["result"]["confusion_matrix"]
    assert shown == [n for row in matrix for n in row]
    rows = card.locator("table.per-class tbody tr")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.class)") == [str(d) for d in range(10)]
    card.screenshot(path=str(artifacts / "evaluation-heatmap.png"))

    pngs = sorted(trained.test_folder.rglob("*.png"))[:2]
    page.locator("#predict-form input[name=files]").set_input_files([str(p) for p in pngs])
    page.locator("#predict-form button").click()
    page.locator("#predictions tbody tr").nth(1).wait_for()
    first = page.locator("#predictions tbody tr td").nth(1).inner_text()
    classes = [str(d) for d in range(10)]
    assert first.split()[0] == classes[_predicted(trained, pngs[:1])[0]]
    page.screenshot(path=str(artifacts / "job-page-after-training.png"), full_page=True)
