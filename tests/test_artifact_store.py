"""The artifact store contract and fenced checkpoint commits, on a local folder and on a real
S3 server (SeaweedFS): the same tests, the same guarantees."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import pytest
import torch
from seaweedfs import SeaweedFS, WeedProcess, weed_server
from support import RESNET_FREEZE

from thaw.artifacts import (
    ArtifactCredentialsRejected,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreUnreachable,
    BucketMissing,
    LocalStore,
    VersionConflict,
    open_store,
)
from thaw.checkpoints import FencedOut, load_model_state, save_checkpoint
from thaw.checkpoints.layout import read_step_meta
from thaw.checkpoints.remote import (
    StoreRun,
    fetch_checkpoint,
    pull_resume,
    raise_store_fence,
    read_store_index,
    run_prefix,
    store_run,
)
from thaw.checkpoints.step import save_step_checkpoint
from thaw.data.shape import upload_cache_dir
from thaw.run_files import clean_scratch
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.store import Dataset
from thaw.training import NullReporter, train
from thaw.upload_cache import cached_upload, held_uploads
from thaw.uploads import upload_key


@pytest.fixture(params=["local", "s3"])
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return open_store(Settings(data_dir=tmp_path / "data"))
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    return open_store(Settings(data_dir=tmp_path / "data", **_s3_settings(server)))


def _s3_settings(server: SeaweedFS, bucket: str | None = None, secret: str | None = None) -> dict:
    return {
        "artifacts_url": f"s3://{bucket or server.bucket}/{server.new_prefix()}/p",
        "artifacts_endpoint": server.endpoint,
        "artifacts_access_key_id": server.access_key,
        "artifacts_secret_access_key": secret or server.secret_key,
    }


def test_conditional_put_is_compare_and_set(artifact_store: ArtifactStore) -> None:
    first = artifact_store.put("a/index.json", b"one", if_absent=True)
    with pytest.raises(VersionConflict):
        artifact_store.put("a/index.json", b"two", if_absent=True)
    second = artifact_store.put("a/index.json", b"two", if_version=first)
    with pytest.raises(VersionConflict):
        artifact_store.put("a/index.json", b"three", if_version=first)
    got = artifact_store.get("a/index.json")
    assert (got.data, got.version) == (b"two", second)
    with pytest.raises(ArtifactNotFound):
        artifact_store.get("a/missing.json")


def test_files_ranges_listing_and_delete(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    (tmp_path / "f.bin").write_bytes(data)
    artifact_store.upload_file("x/y/f.bin", tmp_path / "f.bin")
    artifact_store.put("x/z.txt", b"z")
    assert artifact_store.list("x/") == ["x/y/f.bin", "x/z.txt"]
    assert artifact_store.size("x/y/f.bin") == len(data)
    assert artifact_store.read_range("x/y/f.bin", 10, 19) == data[10:20]
    artifact_store.download_file("x/y/f.bin", tmp_path / "back" / "f.bin")
    assert (tmp_path / "back" / "f.bin").read_bytes() == data
    artifact_store.delete_prefix("x/y/")
    assert artifact_store.list("x/") == ["x/z.txt"]


def _state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {"w": torch.randn(4, 3), "b": torch.randn(3)}


def _save(run_dir: Path, remote: StoreRun, epoch: int, loss: float, token: int | None = None):
    state = _state(epoch)
    save_checkpoint(
        run_dir,
        epoch=epoch,
        step=epoch * 10,
        model_state=state,
        config={"name": "tiny"},
        training_state={"epoch": epoch},
        metrics={"val_loss": loss},
        keep_last=2,
        fence=(lambda: token) if token is not None else None,
        remote=remote,
    )
    return state


def test_checkpoints_round_trip_through_the_store(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    remote = StoreRun(artifact_store, run_prefix("job-1"))
    states = {
        e: _save(tmp_path / "writer", remote, e, loss)
        for e, loss in [(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.8)]
    }
    index, version = read_store_index(artifact_store, remote.prefix)
    assert version is not None
    assert (index.names(), index.best, index.last) == (
        ["epoch-1", "epoch-3", "epoch-4"],
        "epoch-1",
        "epoch-4",
    )
    # A host with no copy rebuilds the folder from the store, bit for bit.
    folder = fetch_checkpoint(artifact_store, remote.prefix, "last", tmp_path / "reader")
    assert folder.name == "epoch-4"
    loaded = load_model_state(folder)
    assert all(torch.equal(loaded[k], states[4][k]) for k in states[4])
    best = fetch_checkpoint(artifact_store, remote.prefix, "best", tmp_path / "reader")
    assert torch.equal(load_model_state(best)["w"], states[1]["w"])
    # epoch-2's blobs went with it: only the listed checkpoints' files remain.
    wanted = {f.sha256 for e in index.entries for f in e.files}
    blobs = {k.rsplit("/", 1)[1] for k in artifact_store.list(f"{remote.prefix}/blobs/")}
    assert blobs == wanted
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert digest in blobs


def test_a_stale_token_commit_is_refused(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    remote = StoreRun(artifact_store, run_prefix("job-2"))
    _save(tmp_path / "old", remote, 1, 0.5, token=1)
    raise_store_fence(artifact_store, remote.prefix, 2)  # a newer claim takes the run over
    before = artifact_store.get(f"{remote.prefix}/index.json")
    with pytest.raises(FencedOut):
        _save(tmp_path / "old", remote, 2, 0.4, token=1)
    assert artifact_store.get(f"{remote.prefix}/index.json").data == before.data
    index, _ = read_store_index(artifact_store, remote.prefix)
    assert (index.names(), index.token) == (["epoch-1"], 2)
    _save(tmp_path / "new", remote, 2, 0.4, token=2)
    index, _ = read_store_index(artifact_store, remote.prefix)
    assert (index.names(), index.last, index.token) == (["epoch-1", "epoch-2"], "epoch-2", 2)


def test_resume_points_go_through_the_store_under_the_fence(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    remote = StoreRun(artifact_store, run_prefix("job-3"))
    _save(tmp_path / "old", remote, 1, 0.5, token=1)
    state = _state(7)

    def step(at: int, weights: dict[str, torch.Tensor]) -> None:
        save_step_checkpoint(
            tmp_path / "old",
            epoch=2,
            batch=at - 10,
            step=at,
            model_state=weights,
            training_state={"epoch": 1, "batch": at - 10},
            fence=lambda: 1,
            remote=remote,
        )

    step(13, state)
    raise_store_fence(artifact_store, remote.prefix, 2)  # a newer claim takes the run over
    with pytest.raises(FencedOut):
        step(15, _state(8))
    # A host with an empty folder gets the resume point the fence let through, bit for bit.
    assert pull_resume(remote, tmp_path / "new", 2) == 13
    assert read_step_meta(tmp_path / "new") == {
        "epoch": 2, "batch": 3, "step": 13, "token": 1, "created_at": ANY_TEXT
    }  # fmt: skip
    loaded = load_model_state(tmp_path / "new" / "resume")
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # The next epoch's checkpoint supersedes the resume point, and its blobs go with it.
    point = read_store_index(artifact_store, remote.prefix)[0].resume
    assert point is not None
    _save(tmp_path / "new", remote, 2, 0.4, token=2)
    index, _ = read_store_index(artifact_store, remote.prefix)
    assert (index.names(), index.resume) == (["epoch-1", "epoch-2"], None)
    wanted = {f.sha256 for e in index.entries for f in e.files}
    blobs = {k.rsplit("/", 1)[1] for k in artifact_store.list(f"{remote.prefix}/blobs/")}
    assert wanted <= blobs  # (the refused writer's uploads stay until the job is deleted)
    assert not {f["sha256"] for f in point["files"]} & blobs


class _AnyText(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    __hash__ = str.__hash__


ANY_TEXT = _AnyText()


def test_a_wrong_secret_is_a_clear_error(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    store = open_store(Settings(**_s3_settings(seaweedfs, secret="not-the-secret")))
    with pytest.raises(ArtifactCredentialsRejected) as caught:
        store.check()
    assert caught.value.code == "artifact_store_credentials"
    assert caught.value.status == 503
    with pytest.raises(ArtifactCredentialsRejected):
        store.put("k", b"v")


def test_a_missing_bucket_is_a_clear_error(seaweedfs: SeaweedFS) -> None:
    store = open_store(Settings(**_s3_settings(seaweedfs, "thaw-no-such-bucket")))
    with pytest.raises(BucketMissing) as caught:
        store.check()
    assert caught.value.code == "artifact_store_bucket_missing"
    assert "thaw-no-such-bucket" in str(caught.value)


def test_an_unreachable_endpoint_is_a_clear_error(seaweedfs: SeaweedFS) -> None:
    settings = _s3_settings(seaweedfs, "thaw-any")
    settings["artifacts_endpoint"] = "http://127.0.0.1:9"  # the discard port: nothing listens
    store = open_store(Settings(artifacts_connect_timeout=1, **settings))
    with pytest.raises(ArtifactStoreUnreachable) as caught:
        store.check()
    assert caught.value.code == "artifact_store_unreachable"
    assert "THAW_ARTIFACTS_ENDPOINT" in str(caught.value)


def test_credentials_come_from_a_file(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {seaweedfs.access_key}\n"
        f"aws_secret_access_key = {seaweedfs.secret_key}\n"
    )
    store = open_store(
        Settings(
            artifacts_url=f"s3://{seaweedfs.bucket}/creds",
            artifacts_endpoint=seaweedfs.endpoint,
            artifacts_credentials_file=creds,
        )
    )
    store.check()
    store.put("k", b"v")
    assert (
        seaweedfs.client().get_object(Bucket=seaweedfs.bucket, Key="creds/k")["Body"].read() == b"v"
    )


def test_the_default_store_is_a_folder_under_data_dir(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path))
    assert isinstance(store, LocalStore)
    store.put("runs/j/checkpoints/index.json", b"{}")
    assert (tmp_path / "artifacts" / "runs" / "j" / "checkpoints" / "index.json").is_file()


class _StopStoreAt(NullReporter):
    """Kills the store's process group (a crashed store host) once training reaches ``step``."""

    def __init__(self, weed: WeedProcess, step: int):
        self.weed, self.step, self.stopped = weed, step, False

    def progress(self, progress: dict) -> None:
        if progress["step"] >= self.step and not self.stopped:
            self.stopped = True
            self.weed.stop()


class _RestartOnOutage(logging.Handler):
    """Brings the store back on its ports and data once a call found it down."""

    def __init__(self, weed: WeedProcess):
        super().__init__()
        self.weed = weed
        self.thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.thread is None and "trying again" in record.getMessage():
            self.thread = threading.Thread(target=self.weed.start)
            self.thread.start()


def test_an_outage_of_the_store_is_ridden_out_for_a_bounded_time(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "base_model": {"source": "torchvision", "name": "resnet18"},
            "dataset": {"synthetic": {"num_classes": 3, "num_examples": 40}},
            "freeze": RESNET_FREEZE,
            "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32, "num_workers": 0},
            "checkpointing": {"every_epochs": 1, "keep_last": 5},
        }
    )
    with weed_server(tmp_path / "weed") as weed:
        settings = Settings(data_dir=tmp_path / "data", **_s3_settings(weed.server))
        remote = store_run(settings, "job-4", outage_seconds=120)
        assert remote is not None
        restart = _RestartOnOutage(weed)
        logger = logging.getLogger("thaw.artifacts.s3")
        logger.addHandler(restart)
        try:
            done = train(spec, tmp_path / "run", settings, _StopStoreAt(weed, 2), remote=remote)
        finally:
            logger.removeHandler(restart)
            if restart.thread is not None:
                restart.thread.join()
        assert restart.thread is not None  # the epoch-1 commit met the store down
        assert done.status == "succeeded"
        index, _ = read_store_index(remote.store, remote.prefix)
        assert (index.names(), index.last) == (["epoch-1", "epoch-2"], "epoch-2")
        fetched = fetch_checkpoint(remote.store, remote.prefix, "last", tmp_path / "reader")
        local = load_model_state(tmp_path / "run" / "checkpoints" / "epoch-2")
        assert all(torch.equal(v, load_model_state(fetched)[k]) for k, v in local.items())
        # A job that moves to another worker leaves nothing on this one: the store has it all.
        assert clean_scratch(tmp_path / "run", moved=True, store_backed=True) == ["run"]
        assert not (tmp_path / "run").exists()

        # Past the bound a call fails with the store's code (a job fails with it).
        weed.stop()
        brief = store_run(settings, "job-4", outage_seconds=1)
        assert brief is not None
        with pytest.raises(ArtifactStoreUnreachable) as caught:
            read_store_index(brief.store, brief.prefix)
        assert caught.value.code == "artifact_store_unreachable"
        assert weed.server.endpoint in str(caught.value)


def _csv_upload(store: ArtifactStore, tmp_path: Path, rows: int) -> Dataset:
    content = b"text,label\n" + b"".join(f"row {i},{'ab'[i % 2]}\n".encode() for i in range(rows))
    sha = hashlib.sha256(content).hexdigest()
    (tmp_path / f"{sha}.csv").write_bytes(content)
    key = upload_key("default", sha)
    store.upload_file(key, tmp_path / f"{sha}.csv")
    return Dataset(
        id=f"ds_{sha[:24]}", tenant="default", name="d", format="csv", num_examples=rows,
        classes=["a", "b"], class_counts={"a": rows // 2, "b": rows // 2},
        size_bytes=len(content), sha256=sha, created_at="", path="data.csv",
        extra={"object": key, "kind": "csv", "filename": "d.csv"},
    )  # fmt: skip


def test_uploads_are_cached_read_through_within_a_bound(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    first, second = (_csv_upload(artifact_store, tmp_path, n) for n in (40, 60))
    bound = max(first.size_bytes, second.size_bytes)  # room for one of them
    settings = Settings(data_dir=tmp_path / "worker", dataset_cache_bytes=bound)
    root = upload_cache_dir(settings)

    def cached() -> list[str]:
        return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))

    path = cached_upload(artifact_store, first.extra["object"], first, settings) / first.path
    assert path.read_text().startswith("text,label\nrow 0,a\n")
    assert cached() == [first.sha256]
    cached_upload(artifact_store, second.extra["object"], second, settings)
    assert cached() == [second.sha256]  # the least recently used one went
    again = cached_upload(artifact_store, first.extra["object"], first, settings)
    assert (again / first.path).read_bytes() == (tmp_path / f"{first.sha256}.csv").read_bytes()
    assert cached() == [first.sha256]


def test_an_upload_a_job_holds_is_not_evicted_under_it(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    first, second = (_csv_upload(artifact_store, tmp_path, n) for n in (40, 60))
    settings = Settings(
        data_dir=tmp_path / "worker", dataset_cache_bytes=max(first.size_bytes, second.size_bytes)
    )
    root = upload_cache_dir(settings)

    def cached() -> list[str]:
        return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))

    with held_uploads():  # a job training on the first upload
        path = cached_upload(artifact_store, first.extra["object"], first, settings) / first.path
        errors: list[BaseException] = []

        def other_job() -> None:
            try:
                with held_uploads():
                    cached_upload(artifact_store, second.extra["object"], second, settings)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_job)
        thread.start()
        thread.join(timeout=60)
        assert not errors
        assert cached() == sorted([first.sha256, second.sha256])  # over the bound, for now
        assert path.read_text().startswith("text,label\nrow 0,a\n")
    # Neither is held now: the next fill evicts the least recently used one.
    cached_upload(artifact_store, second.extra["object"], second, settings)
    assert cached() == [second.sha256]
