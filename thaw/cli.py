"""``thaw``: plan and train a spec, and talk to a Thaw API (submit, jobs, logs, layers,
download, datasets); the service packages add ``api``, ``worker`` and ``up``.

The library imports neither the API nor the worker: their commands register themselves
under the ``thaw.commands`` entry-point group (see pyproject.toml).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thaw.client.commands import register as register_client_commands

if TYPE_CHECKING:
    from thaw.settings import Settings

COMMANDS_GROUP = "thaw.commands"
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool cut off by `head`


def main(argv: list[str] | None = None) -> int:
    from thaw.cpus import passive_wait

    passive_wait()  # before torch loads OpenMP; the worker processes inherit it
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`thaw jobs get X | head`): end quietly, as a shell tool does,
        # and keep the interpreter's own flush at exit from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thaw", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="print the trainable table per epoch of a spec")
    plan.add_argument("spec", type=Path)
    plan.add_argument("--detail", action="store_true", help="list every parameter")
    plan.add_argument(
        "--classes",
        type=_class_list,
        help="an uploaded dataset's classes (a,b,c), to plan it without reaching the store",
    )
    plan.add_argument(
        "--examples", type=_positive, help="with --classes: its examples (default one a class)"
    )
    plan.set_defaults(run=_plan)

    train = sub.add_parser("train", help="train a spec in this process, without Redis")
    train.add_argument("spec", type=Path)
    train.add_argument("--out", type=Path, required=True, help="run folder (checkpoints)")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: best)")
    train.set_defaults(run=_train)

    register_client_commands(sub)
    for command in entry_points(group=COMMANDS_GROUP):
        command.load()(sub)
    return parser


def _class_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("give distinct, non-empty class names: a,b,c")
    return names


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("give a whole number of at least 1")
    return int(text)


def _load_spec(path: Path, settings: Settings) -> Any:
    from pydantic import ValidationError

    from thaw.errors import InvalidInput
    from thaw.spec import JobSpec, closest_fields, validation_context

    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from exc
    try:
        return JobSpec.model_validate(raw, context=validation_context(settings))
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc.errors(), closest_fields) from exc


class CliError(Exception):
    pass


def _fail(message: str) -> int:
    print(f"thaw: error: {message}", file=sys.stderr)
    return 2


def _plan(args: argparse.Namespace) -> int:
    # Each command imports what it runs when it runs: the client commands never load torch.
    from thaw.errors import ThawError

    if args.examples is not None and args.classes is None:
        return _fail("--examples goes with --classes")
    try:
        from thaw.plan_uploads import plan_uploads
        from thaw.settings import get_settings
        from thaw.submit import plan_spec

        settings = get_settings()
        spec = _load_spec(args.spec, settings)
        uploads = plan_uploads(spec, settings, args.classes, args.examples)
        table = plan_spec(spec, settings, uploads=uploads, detail=args.detail)
    except (CliError, ThawError) as exc:
        return _fail(str(exc))
    json.dump(table, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _train(args: argparse.Namespace) -> int:
    from thaw.errors import ThawError

    try:
        from thaw.cpus import apply_cpu_share
        from thaw.settings import get_settings
        from thaw.training import train
        from thaw.training.console import ConsoleReporter

        settings = get_settings()
        spec = _load_spec(args.spec, settings)
        apply_cpu_share(settings.torch_threads)
        reporter = ConsoleReporter()
        try:
            result = train(spec, args.out, settings, reporter, device=args.device)
        finally:
            reporter.close()
    except (CliError, ThawError) as exc:
        return _fail(str(exc))
    json.dump(
        {
            "status": result.status,
            "epoch": result.epoch,
            "metrics": result.metrics,
            "wall_s": result.wall_s,
            "samples_per_s": result.samples_per_s,
            "stopped_early": result.stopped_early,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
