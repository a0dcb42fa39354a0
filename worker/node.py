"""One Celery worker node: what ``thaw worker``'s supervisor runs for each GPU."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.node", description=__doc__)
    parser.add_argument("--hostname", required=True, help="Celery node name, NAME@HOST")
    args = parser.parse_args(argv)
    from thaw.cpus import passive_wait

    passive_wait()  # before torch loads OpenMP
    from thaw.settings import get_settings
    from worker.celery_app import start_worker  # Celery loads after --help

    return start_worker(args.hostname, get_settings())


if __name__ == "__main__":
    sys.exit(main())
