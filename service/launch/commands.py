"""``thaw api`` and ``thaw up``, registered into the ``thaw`` command by entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register_api(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default=None, help="default THAW_API_HOST (127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="default THAW_API_PORT (8000)")
    api.set_defaults(run=_api)


def register_up(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="embedded Redis, one worker and the API, in one command")
    up.add_argument("--host", default=None, help="default THAW_API_HOST (127.0.0.1)")
    up.add_argument("--port", type=int, default=None, help="default THAW_API_PORT (8000)")
    up.add_argument("--data-dir", type=Path, default=None)
    up.set_defaults(run=_up)


def _api(args: argparse.Namespace) -> int:
    # Commands import what they run when they run: every `thaw` command starts fast.
    from service.launch.server import UnsafeBind, serve
    from thaw.settings import get_settings

    try:
        serve(args.host, args.port, get_settings())
    except UnsafeBind as exc:
        print(f"thaw: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _up(args: argparse.Namespace) -> int:
    from service.launch.stack import run_stack

    return run_stack(args.host, args.port, args.data_dir)
