"""The RQ worker class used by ``tabula worker``: builds the app once, before forking work horses."""

from __future__ import annotations

from typing import Any

from rq import Worker

from jobs.runtime import worker_app


class TabulaWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        worker_app()
        super().__init__(*args, **kwargs)
