"""``thaw``: plan, train, and run the service (api, worker, or both with embedded Redis)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thaw", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="print the trainable table per epoch of a spec")
    plan.add_argument("spec", type=Path)
    plan.add_argument("--detail", action="store_true", help="list every parameter")
    plan.set_defaults(run=_plan)
    return parser


def _load_spec(path: Path) -> Any:
    from pydantic import ValidationError

    from thaw.spec import JobSpec

    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from exc
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise CliError(f"{where}: {first['msg']}") from exc


class CliError(Exception):
    pass


def _fail(message: str) -> int:
    print(f"thaw: error: {message}", file=sys.stderr)
    return 2


def _plan(args: argparse.Namespace) -> int:
    from thaw.errors import ThawError

    try:
        spec = _load_spec(args.spec)
        from thaw.dataset_shape import data_shape
        from thaw.plan import plan_table
        from thaw.resolve import resolve
        from thaw.settings import get_settings

        settings = get_settings()
        resolved = resolve(spec, settings, data_shape(spec.dataset, settings))
        table = plan_table(resolved, detail=args.detail)
    except (CliError, ThawError) as exc:
        return _fail(str(exc))
    json.dump(table, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
