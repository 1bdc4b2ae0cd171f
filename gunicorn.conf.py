"""gunicorn's settings for Tabula CRM, read from the working directory (README, Production).

A worker told to stop (SIGTERM: a deploy, a restart, scaling down) first ends the live screens' streams it
holds, so that it stops at once instead of waiting out its grace period; the browsers reconnect to another
process and catch up on what they missed (``views.live``).
"""

from __future__ import annotations

import signal
from typing import Any

worker_class = "gthread"  # a live screen's stream holds a thread, not a worker
threads = 100


def post_worker_init(worker: Any) -> None:
    stop = signal.getsignal(signal.SIGTERM)

    def end_streams_then_stop(signum: int, frame: Any) -> None:
        from views.live import stop_all

        stop_all()
        if callable(stop):
            stop(signum, frame)

    signal.signal(signal.SIGTERM, end_streams_then_stop)
