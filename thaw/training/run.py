"""Train one job: data, model, freeze engine, epochs, validation, checkpoints, resume."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from thaw.caching.inputs import RunInputs, build_inputs
from thaw.checkpoints import capture_rng_state, restore_rng_state
from thaw.checkpoints.commit import raise_fence
from thaw.checkpoints.errors import FencedOut
from thaw.checkpoints.remote import StoreRun, pull_run, raise_store_fence
from thaw.class_weights import class_weight_vector
from thaw.data.shape import DataShape, UploadLookup
from thaw.errors import ThawError
from thaw.freezing.adapters import adapter_record, base_state
from thaw.freezing.engine import FreezeEngine
from thaw.freezing.layer_rows import epoch_entry, live_view
from thaw.freezing.resolve import Resolved, resolve
from thaw.models.registry import library_config as built_library_config
from thaw.settings import Settings
from thaw.spec import JobSpec
from thaw.training.background_commit import BackgroundCommit
from thaw.training.confusion import ConfusionMatrix
from thaw.training.data_source import load_training_data
from thaw.training.device import Placement, choose_placement
from thaw.training.layer_changes import changed_layers
from thaw.training.loaders import default_workers, make_loaders
from thaw.training.loss import TrainingLoss
from thaw.training.memory import OOM_ERRORS, MemoryWatch, OutOfMemory, is_cpu_oom
from thaw.training.observers import observed
from thaw.training.reporter import NullReporter, Reporter, StopReason
from thaw.training.resume import Resumed, restore, save_epoch, save_step, snapshot
from thaw.training.steering import Steering


@dataclass
class TrainResult:
    status: Literal["succeeded", "cancelled", "preempted", "lost"]
    epoch: int
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    resumed_from: int | None = None
    wall_s: float = 0.0
    samples_per_s: float = 0.0
    stopped_early: dict[str, Any] | None = None


def train(
    spec: JobSpec,
    run_dir: Path,
    settings: Settings,
    reporter: Reporter | None = None,
    *,
    uploads: UploadLookup | None = None,
    device: str | None = None,
    tenant: str | None = None,
    remote: StoreRun | None = None,
) -> TrainResult:
    """Run ``spec`` to the end (or until ``reporter.stop_reason()``), resuming from the
    newest checkpoint in ``run_dir`` if there is one. Running out of memory raises
    OutOfMemory (``out_of_memory``), as does host memory growing past
    THAW_MAX_JOB_HOST_MEMORY_BYTES (checked between steps). TensorBoard files go to
    ``run_dir/tensorboard`` and the spec's integrations get the same curves (``tenant``
    picks their credentials). With ``remote``, checkpoints also go to the artifact store,
    and the run resumes from the store's ``last`` when the folder has no copy of it."""
    sinks = observed(reporter or NullReporter(), spec, run_dir, settings, tenant)
    try:
        result = _train_or_oom(spec, run_dir, settings, sinks, uploads, device, remote)
    except FencedOut:
        sinks.close("lost")
        raise
    except Exception:
        sinks.close("failed")
        raise
    except BaseException:
        sinks.close("lost")
        raise
    sinks.close(result.status)
    return result


def _train_or_oom(
    spec: JobSpec,
    run_dir: Path,
    settings: Settings,
    reporter: Reporter,
    uploads: UploadLookup | None,
    device: str | None,
    remote: StoreRun | None = None,
) -> TrainResult:
    watch = MemoryWatch(settings.max_job_host_memory_bytes, spec.hyperparameters.batch_size)
    try:
        with watch:
            return _train(spec, run_dir, settings, reporter, uploads, device, watch, remote)
    except OOM_ERRORS:
        pass
    except RuntimeError as exc:
        if not is_cpu_oom(exc):
            raise
    # Raised outside the handler, so the failed frames (model, optimizer, batches) are free.
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    raise OutOfMemory("training", target, spec.hyperparameters.batch_size)


def _train(
    spec: JobSpec,
    run_dir: Path,
    settings: Settings,
    reporter: Reporter | None,
    uploads: UploadLookup | None,
    device: str | None,
    watch: MemoryWatch,
    remote: StoreRun | None = None,
) -> TrainResult:
    reporter = reporter or NullReporter()
    hp = spec.hyperparameters
    _seed_everything(hp.seed)
    data = load_training_data(spec, settings, uploads)
    shape = DataShape(list(data.classes), len(data.train))
    resolved = resolve(spec, settings, shape, meta=False)
    built = resolved.built
    base = {k: v.detach().to("cpu", copy=True) for k, v in built.model.state_dict().items()}
    if resolved.adapters is not None:  # compared with merged checkpoints, by base names
        base = base_state(base, resolved.adapters)

    placement = choose_placement(hp.precision, built.convolutional, device)
    model = built.model.to(placement.device)
    if placement.channels_last:
        model.to(memory_format=torch.channels_last)
    # Fused optimizer kernels: on a CPU, AdamW over resnet18's layer4 steps 6x faster.
    engine = FreezeEngine.from_resolved(resolved, fused=placement.device.type in FUSED_DEVICES)
    run = _Run(spec, resolved, engine, placement, reporter, settings, run_dir, base)
    run.watch = watch
    run.remote = remote
    watch.check()
    weight = class_weight_vector(hp, data.classes, data.train.labels)
    run.loss_fn = TrainingLoss(hp, weight, placement.device)
    run.num_train = len(data.train)

    # Claim the run folder before reading its resume point: no older claim publishes after.
    token = reporter.fence()
    raise_fence(run_dir, token)
    if remote is not None:
        raise_store_fence(remote.store, remote.prefix, token)
        pull_run(remote, run_dir, token)
    resumed = restore(run_dir, engine, placement.device, spec.fingerprint(), resolved.adapters)
    if resumed is not None and resumed.batch:
        reporter.log(
            "info",
            f"resumed from step {resumed.step} (epoch {resumed.epoch + 1}, batch "
            f"{resumed.batch}, phase {engine.phase})",
        )
    elif resumed is not None:
        reporter.log("info", f"resumed from epoch {resumed.epoch} (phase {engine.phase})")
    run.inputs = build_inputs(spec, resolved, data, settings, run_dir, placement, reporter.log)
    train_set, val_set, collate_fn = run.inputs.datasets()
    train_loader, val_loader, sampler = make_loaders(
        train_set,
        val_set,
        batch_size=hp.batch_size,
        seed=hp.seed,
        placement=placement,
        workers=run.inputs.workers(default_workers(placement, hp.num_workers)),
        collate_fn=collate_fn,
        persistent=run.inputs.persistent_workers(),
    )
    try:
        return run.loop(train_loader, val_loader, sampler, resumed)
    finally:
        run.commits.abandon()
        run.inputs.close()


FUSED_DEVICES = ("cpu", "cuda")


class _Run:
    def __init__(
        self,
        spec: JobSpec,
        resolved: Resolved,
        engine: FreezeEngine,
        placement: Placement,
        reporter: Reporter,
        settings: Settings,
        run_dir: Path,
        base: dict[str, torch.Tensor],
    ):
        self.spec = spec
        self.resolved = resolved
        self.engine = engine
        self.model: nn.Module = engine.model
        self.placement = placement
        self.reporter = reporter
        self.settings = settings
        self.run_dir = run_dir
        self.base = base
        self.hp = spec.hyperparameters
        self.scaler = torch.amp.GradScaler(enabled=placement.use_scaler)
        self.params = list(engine.index.params.values())
        self._last_report = 0.0
        self.inputs = RunInputs(None, placement)
        self._samples = 0
        self._epoch_rng: dict[str, Any] = {}
        self._last_progress: dict[str, Any] = {}
        self.commits = BackgroundCommit()
        self.watch: MemoryWatch | None = None
        self.steering = Steering(spec.checkpointing, resolved.timeline)
        self.loss_fn = TrainingLoss(self.hp, None, placement.device)
        self.num_train = 0
        self._batches_per_epoch = 1
        self._epoch_loss = [0.0, 0]
        self.remote: StoreRun | None = None

    def loop(self, train_loader, val_loader, sampler, resumed: Resumed | None) -> TrainResult:
        timeline = self.resolved.timeline
        total = timeline.total_steps
        start_epoch = resumed.epoch + 1 if resumed else 1
        step = resumed.step if resumed else 0
        metrics: dict[str, float] = dict(resumed.metrics) if resumed else {}
        started = time.monotonic()
        start_step = step
        if resumed is not None and resumed.steering:
            self.steering.load_state_dict(resumed.steering)
            if resumed.batch:
                self._epoch_loss = list(resumed.steering.get("epoch_loss", [0.0, 0]))
        if resumed is not None and self.steering.stopped is not None:
            # The run stopped early at its newest checkpoint; nothing is left to train.
            return self._stopped_early(self.steering.stopped, resumed, step, metrics, started)
        accumulate = self.hp.grad_accumulation_steps
        self._batches_per_epoch = len(train_loader)
        for epoch in range(start_epoch, timeline.epochs + 1):
            sampler.set_epoch(epoch)
            self._enter_phases(step)
            self.reporter.layers(epoch, self._layer_entry(epoch))
            self.inputs.begin_epoch(epoch, self._fill_progress(epoch, step, total))
            self.model.train()
            skip = resumed.batch if resumed is not None and epoch == start_epoch else 0
            if not skip:
                self._epoch_loss = [0.0, 0]
            for batch, (inputs, labels) in enumerate(
                self._batches(train_loader, sampler, skip, resumed), start=skip
            ):
                if self.watch is not None:
                    self.watch.check()
                if batch % accumulate == 0:
                    stop = self.reporter.stop_reason()
                    if stop is not None:
                        status = self._stop(stop, epoch, batch, step, metrics)
                        return self._result(status, epoch, step, metrics, resumed, started)
                    self._enter_phases(step)
                loss = self._backward(inputs, labels, batch)
                self._samples += len(labels)
                check_diverged(loss, epoch, step + 1)
                self._epoch_loss[0] += float(loss) * len(labels)
                self._epoch_loss[1] += len(labels)
                if (batch + 1) % accumulate and batch + 1 < self._batches_per_epoch:
                    continue
                self._optimizer_step()
                step += 1
                self._maybe_progress(epoch, step, total, start_step, started, loss)
                self._maybe_step_checkpoint(epoch, batch + 1, step, metrics)
                self.commits.poll()
            metrics = self._validate(val_loader)
            if "val_loss" in metrics:
                check_diverged(metrics["val_loss"], epoch, step, "validation loss")
            if self._epoch_loss[1]:
                metrics["train_loss"] = self._epoch_loss[0] / self._epoch_loss[1]
            metrics["epoch"] = epoch
            self.reporter.metrics(epoch, metrics)
            self._progress(epoch, step, total, start_step, started)
            decision = self.steering.after_epoch(epoch, self.engine.phase, metrics)
            if decision.plateau_phase is not None:
                self.reporter.plateau(
                    {
                        "phase": decision.plateau_phase,
                        "epoch": epoch + 1,
                        "step": step,
                        "monitor": self.steering.monitor,
                        "value": metrics[self.steering.monitor],
                    }
                )
            every = self.spec.checkpointing.every_epochs
            stop_early = decision.stop
            if epoch % every == 0 or epoch == timeline.epochs or stop_early is not None:
                self._checkpoint(epoch, step, metrics)
            if stop_early is not None:
                self.commits.wait()
                return self._stopped_early(stop_early, resumed, step, metrics, started)
        self.commits.wait()
        return self._result("succeeded", timeline.epochs, step, metrics, resumed, started)

    def _stopped_early(
        self,
        info: dict[str, Any],
        resumed: Resumed | None,
        step: int,
        metrics: dict[str, float],
        started: float,
    ) -> TrainResult:
        self.reporter.stopped_early(info)
        result = self._result("succeeded", int(info["epoch"]), step, metrics, resumed, started)
        result.stopped_early = info
        return result

    def _steering_state(self) -> dict[str, Any]:
        return {**self.steering.state_dict(), "epoch_loss": list(self._epoch_loss)}

    def _batches(
        self, loader: Any, sampler: Any, skip: int, resumed: Resumed | None
    ) -> Iterator[Any]:
        """The epoch's batches from number ``skip`` on. Resuming mid-epoch re-creates the
        iterator from the epoch's starting random state (the same order and worker seeds),
        skips what was trained, then restores the random state of the saved step."""
        if skip and resumed is not None and resumed.epoch_rng is not None:
            restore_rng_state(resumed.epoch_rng)
        self._epoch_rng = capture_rng_state()
        iterator = self.inputs.batches(loader, sampler, "train")
        for _ in range(skip):
            next(iterator)
        if skip and resumed is not None and resumed.step_rng is not None:
            restore_rng_state(resumed.step_rng)
        return iterator

    def _stop(
        self, reason: StopReason, epoch: int, batch: int, step: int, metrics: dict[str, float]
    ) -> str:
        """What a stop before the next step leaves behind: a preempted run saves a step
        checkpoint (when it is inside an epoch) for the worker that takes the job over."""
        if reason == "lost":
            self.commits.abandon()
            return "lost"
        if reason == "preempt" and batch > 0:
            self._step_checkpoint(epoch, batch, step, metrics)
        self.commits.wait()
        return "cancelled" if reason == "cancel" else "preempted"

    def _maybe_step_checkpoint(
        self, epoch: int, batch: int, step: int, metrics: dict[str, float]
    ) -> None:
        every = self.spec.checkpointing.every_steps
        if every and step % every == 0 and batch < self._batches_per_epoch:
            self._step_checkpoint(epoch, batch, step, metrics)

    def _step_checkpoint(
        self, epoch: int, batch: int, step: int, metrics: dict[str, float]
    ) -> None:
        """Snapshot now, write and commit in the background (after the previous save)."""
        self.commits.wait()
        snap = snapshot(
            self.engine,
            epoch=epoch,
            step=step,
            fingerprint=self.spec.fingerprint(),
            metrics=metrics,
            batch=batch,
            epoch_rng=self._epoch_rng,
            steering=self._steering_state(),
        )
        self.commits.submit(
            lambda: save_step(
                self.run_dir,
                snap,
                epoch=epoch,
                batch=batch,
                step=step,
                fence=self.reporter.fence,
                reserve_bytes=self.settings.disk_reserve_bytes,
                remote=self.remote,
            ),
            lambda _: self.reporter.log(
                "info", f"step checkpoint at step {step} (epoch {epoch}, batch {batch})"
            ),
        )

    def _result(
        self,
        status: str,
        epoch: int,
        step: int,
        metrics: dict[str, float],
        resumed: Resumed | None,
        started: float,
    ) -> TrainResult:
        wall = time.monotonic() - started
        rate = self._samples / wall if wall > 0 else 0.0
        if status == "succeeded":
            self.reporter.progress(
                {**self._last_progress, "wall_s": round(wall, 3), "samples_per_s": round(rate, 2)}
            )
        return TrainResult(
            status, epoch, step, metrics, _epoch_of(resumed), round(wall, 3), round(rate, 2)
        )

    def _fill_progress(self, epoch: int, step: int, total: int) -> Callable[[int, int], bool]:
        """Progress of a feature-cache fill before the epoch's first step, as progress
        events (``cache_fill``: samples done and in all); the fill stops early when the run
        is asked to stop, and the loop's first stop check then ends the run."""

        def report(done: int, samples: int) -> bool:
            if self.reporter.stop_reason() is not None:
                return False
            now = time.monotonic()
            if done < samples and now - self._last_report < self.settings.progress_interval_seconds:
                return True
            self._last_report = now
            self.reporter.progress(
                {
                    "epoch": epoch,
                    "epochs": self.resolved.timeline.epochs,
                    "step": step,
                    "total_steps": total,
                    "fraction": round(step / total, 4) if total else 1.0,
                    "phase": self.engine.phase,
                    "samples_per_s": 0.0,
                    "cache_fill": {"done": done, "total": samples},
                }
            )
            return True

        return report

    def _enter_phases(self, step: int) -> None:
        if self.engine.due(step):
            self.commits.wait()  # the save in flight shares the frozen parameters it thaws
        for change in self.engine.advance(step):
            self.reporter.phase(change.phase, change.step, change.thawed, change.frozen)

    def _backward(self, inputs: Any, labels: torch.Tensor, batch: int) -> torch.Tensor:
        """One batch's forward and backward; its gradient adds to the optimizer step's,
        weighted by its share of that step's samples."""
        share = len(labels) / self._step_samples(batch)
        inputs, labels = (
            self.inputs.to_device(inputs),
            labels.to(self.placement.device, non_blocking=True),
        )
        with self.placement.autocast():
            loss = self.loss_fn(self.inputs.forward(self.model, inputs), labels)
        self.scaler.scale(loss if share == 1.0 else loss * share).backward()
        return loss.detach()

    def _step_samples(self, batch: int) -> int:
        """Samples in the optimizer step that batch number ``batch`` belongs to."""
        k, size = self.hp.grad_accumulation_steps, self.hp.batch_size
        batches = self._batches_per_epoch
        first = batch - batch % k
        last = min(first + k, batches)
        samples = (last - first) * size
        if last == batches:
            samples -= batches * size - self.num_train
        return max(samples, 1)

    def _optimizer_step(self) -> None:
        self.engine.before_step()
        if self.hp.grad_clip_norm is not None:
            self.scaler.unscale_(self.engine.optimizer)
            trainable = [p for p in self.params if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(trainable, self.hp.grad_clip_norm)
        self.scaler.step(self.engine.optimizer)
        self.scaler.update()
        self.engine.after_step()
        self.engine.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def _validate(self, loader) -> dict[str, float]:
        self.model.eval()
        total_loss, count = 0.0, 0
        confusion = ConfusionMatrix(self.resolved.built.num_classes)
        for inputs, labels in self.inputs.batches(loader, None, "val"):
            if self.watch is not None:
                self.watch.check()
            labels = labels.to(self.placement.device, non_blocking=True)
            with self.placement.autocast():
                logits = self.inputs.forward(self.model, self.inputs.to_device(inputs))
            total_loss += nn.functional.cross_entropy(
                logits.float(), labels, reduction="sum"
            ).item()
            confusion.update(logits.argmax(dim=1), labels)
            count += labels.numel()
        self.model.train()
        if count == 0:
            return {}
        return {
            "val_loss": total_loss / count,
            "val_accuracy": confusion.accuracy(),
            "val_f1_macro": confusion.f1_macro(),
        }

    def _layer_entry(self, epoch: int) -> dict[str, Any]:
        view = live_view(self.engine, self.resolved.thawed_in[self.engine.phase])
        return epoch_entry(
            self.engine.index, view, epoch=epoch, phase=self.engine.phase, detail=True
        )

    def _checkpoint(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        """Snapshot now, write and commit in the background (after the previous save); the
        checkpoint event and the epoch's layer status follow the commit."""
        config = {
            **self.resolved.built.config(),
            **adapter_record(self.spec, self.resolved.adapters),
            "spec_fingerprint": self.spec.fingerprint(),
        }
        self.commits.wait()
        snap = snapshot(
            self.engine,
            epoch=epoch,
            step=step,
            fingerprint=self.spec.fingerprint(),
            metrics=metrics,
            adapters=self.resolved.adapters,
            saved_modules=self.resolved.saved_modules,
            steering=self._steering_state(),
        )
        entry = self._layer_entry(epoch)
        library_config = built_library_config(self.resolved.built)

        def commit() -> tuple[dict[str, Any], set[str]]:
            info = save_epoch(
                self.run_dir,
                snap,
                epoch=epoch,
                step=step,
                config=config,
                metrics=metrics,
                keep_last=self.spec.checkpointing.keep_last,
                library_config=library_config,
                fence=self.reporter.fence,
                reserve_bytes=self.settings.disk_reserve_bytes,
                monitor=self.steering.monitor,
                mode=self.steering.mode,
                remote=self.remote,
            )
            return info, changed_layers(snap.model_state, self.base)

        def committed(result: tuple[dict[str, Any], set[str]]) -> None:
            info, changed = result
            self.reporter.checkpoint(info)
            self.reporter.layers(epoch, _mark_changed(entry, changed))

        self.commits.submit(commit, committed)

    def _maybe_progress(self, epoch, step, total, start_step, started, loss) -> None:
        now = time.monotonic()
        if now - self._last_report >= self.settings.progress_interval_seconds:
            self._progress(epoch, step, total, start_step, started, loss=float(loss))

    def _progress(self, epoch, step, total, start_step, started, *, loss=None) -> None:
        now = time.monotonic()
        self._last_report = now
        elapsed = max(now - started, 1e-9)
        done = step - start_step
        rate = done / elapsed
        samples = rate * self.hp.batch_size
        progress: dict[str, Any] = {
            "epoch": epoch,
            "epochs": self.resolved.timeline.epochs,
            "step": step,
            "total_steps": total,
            "fraction": round(step / total, 4) if total else 1.0,
            "phase": self.engine.phase,
            "samples_per_s": round(samples, 2),
            "eta_s": round((total - step) / rate, 1) if rate > 0 else None,
        }
        if loss is not None and math.isfinite(loss):
            progress["loss"] = round(loss, 6)
        progress["lr"] = [float(g["lr"]) for g in self.engine.optimizer.param_groups]
        self._last_progress = progress
        self.reporter.progress(progress)


class Diverged(ThawError):
    """The training loss became NaN or infinite; the run stops at that step."""

    status = 422
    code = "diverged"


def check_diverged(
    loss: torch.Tensor | float, epoch: int, step: int, what: str = "training loss"
) -> None:
    """Fail the run at the first step whose loss is not a finite number."""
    value = float(loss)
    if not math.isfinite(value):
        raise Diverged(
            f"the {what} became {value} at step {step} (epoch {epoch}); "
            "lower the learning rate, set hyperparameters.grad_clip_norm, or check the data"
        )


def _mark_changed(entry: dict[str, Any], changed: set[str]) -> dict[str, Any]:
    for row in entry["layers"]:
        row["changed"] = row["name"] in changed
    return entry


def _epoch_of(resumed: Resumed | None) -> int | None:
    return resumed.epoch if resumed else None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
