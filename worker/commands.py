"""``thaw worker``, registered into the ``thaw`` command by entry point."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser(
        "worker", help="run one training worker per GPU (or one on the CPU) under a supervisor"
    )
    worker.add_argument(
        "--gpus",
        default="all",
        help="'all' (default: every GPU, or one CPU worker without one), 'none' (one CPU "
        "worker), or ids such as 0,2",
    )
    worker.add_argument(
        "--allow-cpu",
        action="store_true",
        help="train on the CPU where CUDA sees no GPU: with --gpus IDS one CPU worker per id, "
        "pinned alike; with GPUs attached that CUDA cannot use (a driver too old), one CPU "
        "worker instead of an error",
    )
    worker.add_argument(
        "--hostname",
        default=None,
        help="Celery node name NAME@HOST; each worker is named NAME-gpuI@HOST "
        "(default gpuI@<this host>)",
    )
    worker.set_defaults(run=_worker)


def _worker(args: argparse.Namespace) -> int:
    # Imported when the command runs: every `thaw` command starts fast.
    from thaw.settings import get_settings
    from worker.supervisor import (
        GpuSelectionError,
        Supervisor,
        nvidia_devices,
        parse_gpus,
        plan_slots,
        require_usable_gpus,
        visible_gpus,
    )

    try:
        visible = [] if parse_gpus(args.gpus) == [] else visible_gpus()
        require_usable_gpus(args.gpus, args.allow_cpu, visible, nvidia_devices())
        slots = plan_slots(args.gpus, args.allow_cpu, args.hostname, visible)
    except GpuSelectionError as exc:
        print(f"thaw: error: {exc}", file=sys.stderr)
        return 2
    return Supervisor(slots, get_settings()).run()
