"""Container health of ``thaw worker``: every worker node this host registered answers a
Celery ping (remote control runs beside training, so a busy node still answers).

``python -m worker.healthcheck``: exit 0 when healthy, 1 with the reason otherwise."""

from __future__ import annotations

import socket
import sys

from thaw.settings import get_settings
from thaw.store import WorkerRegistry, connect
from worker.celery_app import configure

PING_TIMEOUT_S = 10.0


def unhealthy_reason() -> str | None:
    host = socket.gethostname()
    settings = get_settings()
    app = configure(settings)
    client = connect(settings.redis_url)
    try:
        live = WorkerRegistry(client).live()
    finally:
        client.close()
    names = sorted(str(i["name"]) for _, i in live if i.get("host") == host and i.get("name"))
    if not names:
        return f"no worker on {host} has a live heartbeat"
    replies = app.control.ping(destination=names, timeout=PING_TIMEOUT_S) or []
    missing = sorted(set(names) - {name for reply in replies for name in reply})
    return f"no ping reply from {', '.join(missing)}" if missing else None


def main() -> int:
    reason = unhealthy_reason()
    if reason:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
