"""The ``thaw`` client commands: submit, jobs, logs, layers, download, datasets, metrics,
webhooks, and evaluate, predict and export of a trained checkpoint.

Each talks to the API over HTTP (``--api-url``/``THAW_API_URL``, ``--api-key``/
``THAW_API_KEY``). A problem response prints as ``title: detail`` and exits 1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thaw.client.render import (
    deliveries_table,
    epoch_layers,
    evaluation_text,
    event_line,
    jobs_table,
    layer_map,
    metrics_text,
    predictions_text,
    webhooks_table,
)
from thaw.job_status import JobStatus

EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_ERROR = 1


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help="the API's base URL (THAW_API_URL; default localhost)")
    common.add_argument("--api-key", help="an API key (THAW_API_KEY)")

    submit = sub.add_parser("submit", parents=[common], help="submit a job spec to the API")
    submit.add_argument("spec", type=Path, help="a job spec (JSON file)")
    submit.add_argument("--follow", action="store_true", help="show progress until it ends")
    submit.add_argument("--idempotency-key", help="repeat a submit safely")
    submit.set_defaults(run=_client_command(_submit))

    jobs = sub.add_parser("jobs", help="list, read or cancel jobs")
    jobs_sub = jobs.add_subparsers(required=True, metavar="ACTION")
    listing = jobs_sub.add_parser("list", parents=[common], help="jobs, newest first")
    listing.add_argument("--status", choices=[s.value for s in JobStatus])
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="the API's JSON")
    listing.set_defaults(run=_client_command(_jobs_list))
    for action, handler, what in (
        ("get", _jobs_get, "a job as JSON"),
        ("cancel", _jobs_cancel, "cancel a job"),
    ):
        parser = jobs_sub.add_parser(action, parents=[common], help=what)
        parser.add_argument("job")
        parser.set_defaults(run=_client_command(handler))

    logs = sub.add_parser("logs", parents=[common], help="a job's events")
    logs.add_argument("job")
    logs.add_argument("--follow", action="store_true", help="stream until the job ends")
    logs.add_argument("--debug", action="store_true", help="include progress (debug) events")
    logs.set_defaults(run=_client_command(_logs))

    layers = sub.add_parser("layers", parents=[common], help="trainable layers by epoch")
    layers.add_argument("job")
    layers.add_argument("--epoch", type=int, help="every layer of one epoch")
    layers.add_argument("--json", action="store_true", help="the API's JSON")
    layers.set_defaults(run=_client_command(_layers))

    download = sub.add_parser(
        "download", parents=[common], help="a checkpoint's files, resumed and sha256-checked"
    )
    download.add_argument("job")
    download.add_argument("checkpoint", nargs="?", default="best", help="best, last or epoch-K")
    download.add_argument("-o", "--out", type=Path, required=True, help="folder for the files")
    download.add_argument(
        "--with-resume-state", action="store_true", help="also the optimizer state file"
    )
    download.set_defaults(run=_client_command(_download))

    evaluate = sub.add_parser(
        "evaluate", parents=[common], help="per-class scores and confusion matrix of a checkpoint"
    )
    evaluate.add_argument("job")
    evaluate.add_argument("--checkpoint", default="best", help="best, last or epoch-K")
    evaluate.add_argument(
        "--dataset", help="an uploaded dataset's id (default: the job's validation part)"
    )
    evaluate.add_argument("--json", action="store_true", help="the API's JSON")
    evaluate.set_defaults(run=_client_command(_evaluate))

    predict = sub.add_parser("predict", parents=[common], help="top classes for images or texts")
    predict.add_argument("job")
    predict.add_argument("files", nargs="*", type=Path, help="image files")
    predict.add_argument("--text", action="append", help="a text to classify (repeatable)")
    predict.add_argument("--checkpoint", default="best", help="best, last or epoch-K")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="the API's JSON")
    predict.set_defaults(run=_client_command(_predict))

    export = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX")
    export.add_argument("job")
    export.add_argument("--format", default="onnx", choices=["onnx"])
    export.add_argument("--checkpoint", default="best", help="best, last or epoch-K")
    export.add_argument("-o", "--out", type=Path, required=True, help="folder for the files")
    export.set_defaults(run=_client_command(_export))

    datasets = sub.add_parser("datasets", help="upload datasets")
    datasets_sub = datasets.add_subparsers(required=True, metavar="ACTION")
    upload = datasets_sub.add_parser(
        "upload", parents=[common], help="a .zip/.tar.gz image folder or a .csv/.jsonl file"
    )
    upload.add_argument("file", type=Path)
    upload.add_argument("--name")
    upload.set_defaults(run=_client_command(_datasets_upload))

    metrics = sub.add_parser("metrics", parents=[common], help="a job's curves as JSON or CSV")
    metrics.add_argument("job")
    metrics.add_argument("--format", choices=["json", "csv"], default="csv")
    metrics.add_argument("-o", "--out", type=Path, help="write to this file (default: stdout)")
    metrics.set_defaults(run=_client_command(_metrics))

    webhooks = sub.add_parser("webhooks", help="signed webhooks on job events")
    webhooks_sub = webhooks.add_subparsers(required=True, metavar="ACTION")
    add = webhooks_sub.add_parser(
        "add", parents=[common], help="register a URL; prints its signing secret once"
    )
    add.add_argument("url")
    add.add_argument(
        "--events", help="comma-separated, such as job.succeeded,job.failed (default: all)"
    )
    add.add_argument("--description", default="")
    add.set_defaults(run=_client_command(_webhooks_add))
    listing = webhooks_sub.add_parser("list", parents=[common], help="this key's webhooks")
    listing.add_argument("--json", action="store_true", help="the API's JSON")
    listing.set_defaults(run=_client_command(_webhooks_list))
    remove = webhooks_sub.add_parser("rm", parents=[common], help="delete a webhook")
    remove.add_argument("webhook")
    remove.set_defaults(run=_client_command(_webhooks_rm))
    sent = webhooks_sub.add_parser(
        "deliveries", parents=[common], help="a webhook's deliveries, newest first"
    )
    sent.add_argument("webhook")
    sent.add_argument("--limit", type=int, default=20)
    sent.add_argument("--json", action="store_true", help="the API's JSON")
    sent.set_defaults(run=_client_command(_webhooks_deliveries))


Handler = Callable[[Any, argparse.Namespace], int]


def _client_command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        # httpx loads when a client command runs, not for `thaw --help` or `thaw plan`.
        import httpx

        from thaw.client.api import ThawClient
        from thaw.client.download import ChecksumMismatch, UnsafeFileName
        from thaw.client.errors import ApiError

        try:
            with ThawClient(args.api_url, args.api_key) as client:
                try:
                    return handler(client, args)
                except httpx.TransportError as exc:
                    return _error(f"cannot reach the API at {client.api_url}: {exc}")
        except ApiError as exc:
            return _error(str(exc))
        except (ChecksumMismatch, UnsafeFileName, _InputError) as exc:
            return _error(str(exc))

    return run


class _InputError(Exception):
    pass


def _error(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_ERROR


def _print_json(body: Any) -> None:
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _read_spec(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise _InputError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise _InputError(f"{path} is not JSON: {exc}") from exc


def _submit(client: Any, args: argparse.Namespace) -> int:
    job = client.submit(_read_spec(args.spec), idempotency_key=args.idempotency_key)
    print(job["id"], flush=True)
    if not args.follow:
        return 0
    return _follow(client, job["id"])


def _follow(client: Any, job_id: str) -> int:
    """A progress bar fed by the event stream; the exit code says how the job ended."""
    from tqdm import tqdm

    with tqdm(total=None, unit="step", dynamic_ncols=True, file=sys.stderr) as bar:
        for event in client.follow(job_id):
            data = event.get("data", {})
            kind = event["type"]
            if kind == "progress":
                bar.total = data.get("total_steps") or bar.total
                bar.n = data.get("step", bar.n)
                shown = {"epoch": f"{data.get('epoch')}/{data.get('epochs')}"}
                if "loss" in data:
                    shown["loss"] = f"{data['loss']:.4g}"
                if "cache_fill" in data:
                    shown["caching"] = f"{data['cache_fill']['done']}/{data['cache_fill']['total']}"
                bar.set_postfix(shown, refresh=False)
                bar.refresh()
            elif kind == "metrics":
                bar.write(f"epoch {data.get('epoch')}: {_metrics_text(data)}", file=sys.stderr)
            elif kind == "phase":
                bar.write(
                    f"phase {data['phase']} at step {data['step']}: "
                    f"{data['thawed_count']} params thawed, {data['frozen_count']} frozen",
                    file=sys.stderr,
                )
            elif kind == "checkpoint":
                bar.write(f"checkpoint {data.get('name', '')} saved", file=sys.stderr)
            elif kind == "status":
                bar.write(f"status {data.get('status')}", file=sys.stderr)
    job = client.get_job(job_id)
    print(f"{job['id']} {job['status']}")
    if job["status"] == "failed":
        error = job.get("error") or {}
        print(f"{error.get('code', 'failed')}: {error.get('message', '')}", file=sys.stderr)
        return EXIT_FAILED
    if job["status"] == "cancelled":
        return EXIT_CANCELLED
    return 0 if job["status"] == "succeeded" else EXIT_FAILED


def _metrics_text(data: dict[str, Any]) -> str:

    return metrics_text(data)


def _jobs_list(client: Any, args: argparse.Namespace) -> int:

    page = client.list_jobs(status=args.status, limit=args.limit)
    if args.json:
        _print_json(page)
    else:
        print(jobs_table(page["data"]))
    return 0


def _jobs_get(client: Any, args: argparse.Namespace) -> int:
    _print_json(client.get_job(args.job))
    return 0


def _jobs_cancel(client: Any, args: argparse.Namespace) -> int:
    job = client.cancel_job(args.job)
    pending = job["cancel_requested"] and job["status"] == "running"
    print(f"{job['id']} {job['status']}{' (stops at its next step)' if pending else ''}")
    return 0


def _logs(client: Any, args: argparse.Namespace) -> int:

    events = client.follow(args.job) if args.follow else client.events(args.job)
    for event in events:
        if event["level"] == "debug" and not args.debug:
            continue
        print(event_line(event), flush=True)
    return 0


def _layers(client: Any, args: argparse.Namespace) -> int:

    status = client.layers(args.job, epoch=args.epoch)
    if args.json:
        _print_json(status)
    elif args.epoch is not None:
        print(epoch_layers(status))
    else:
        print(layer_map(status))
    return 0


def _download(client: Any, args: argparse.Namespace) -> int:
    files = client.download(
        args.job, args.checkpoint, args.out, with_resume_state=args.with_resume_state
    )
    for f in files:
        how = "up to date" if f.fetched == 0 else f"{f.fetched} bytes fetched"
        if f.fetched and f.resumed_from:
            how += f", resumed at byte {f.resumed_from}"
        print(f"{f.path}  {f.size} bytes  sha256 {f.sha256} ok ({how})")
    return 0


def _datasets_upload(client: Any, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise _InputError(f"cannot read {args.file}: not a file")
    _print_json(client.upload_dataset(args.file, name=args.name))
    return 0


def _evaluate(client: Any, args: argparse.Namespace) -> int:

    task = client.wait_task(client.evaluate(args.job, args.checkpoint, args.dataset))
    if args.json:
        _print_json(task)
    if task["status"] != "succeeded":
        error = task.get("error") or {}
        return _error(f"evaluation {task['id']} {task['status']}: {error.get('message', '')}")
    if not args.json:
        print(f"{task['id']} on {task['checkpoint']}")
        print(evaluation_text(task["result"]))
    return 0


def _predict(client: Any, args: argparse.Namespace) -> int:

    if bool(args.files) == bool(args.text):
        raise _InputError("give image files or --text, not both and not neither")
    for path in args.files:
        if not path.is_file():
            raise _InputError(f"cannot read {path}: not a file")
    task = client.predict(
        args.job,
        texts=args.text,
        files=args.files or None,
        checkpoint=args.checkpoint,
        top_k=args.top_k,
    )
    if args.json:
        _print_json(task)
    else:
        print(predictions_text(task["result"]["predictions"]))
    return 0


def _export(client: Any, args: argparse.Namespace) -> int:
    task = client.wait_task(client.export(args.job, args.checkpoint, args.format))
    if task["status"] != "succeeded":
        error = task.get("error") or {}
        return _error(f"export {task['id']} {task['status']}: {error.get('message', '')}")
    print(f"{task['id']} of {task['checkpoint']}: max |onnxruntime - PyTorch| "
          f"{task['result']['max_abs_diff']:.3g}")  # fmt: skip
    for f in client.download_export(task, args.out):
        print(f"{f.path}  {f.size} bytes  sha256 {f.sha256} ok")
    return 0


def _metrics(client: Any, args: argparse.Namespace) -> int:
    text = client.metrics(args.job, args.format)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text)
    except OSError as exc:
        raise _InputError(f"cannot write {args.out}: {exc.strerror}") from exc
    print(f"{args.out}  {len(text.encode())} bytes")
    return 0


def _webhooks_add(client: Any, args: argparse.Namespace) -> int:
    events = [e.strip() for e in args.events.split(",") if e.strip()] if args.events else None
    hook = client.add_webhook(args.url, events, args.description)
    _print_json(hook)
    print("keep the secret: it is not shown again", file=sys.stderr)
    return 0


def _webhooks_list(client: Any, args: argparse.Namespace) -> int:

    hooks = client.list_webhooks()
    if args.json:
        _print_json({"data": hooks, "has_more": False})
    else:
        print(webhooks_table(hooks))
    return 0


def _webhooks_rm(client: Any, args: argparse.Namespace) -> int:
    client.delete_webhook(args.webhook)
    print(f"{args.webhook} deleted")
    return 0


def _webhooks_deliveries(client: Any, args: argparse.Namespace) -> int:

    page = client.deliveries(args.webhook, limit=args.limit)
    if args.json:
        _print_json(page)
    else:
        print(deliveries_table(page["data"]))
    return 0
