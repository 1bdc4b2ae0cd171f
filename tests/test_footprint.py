"""What every process pays for: a web or worker process that never runs a report does not load pandas and
numpy (about 60 MB of resident memory each; a conversion job's peak RSS is the app's own, bench/README)."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import os, sys
from app import create_app
create_app(dict(os.environ))
print(sorted(m for m in ("pandas", "numpy") if m in sys.modules))
"""


def test_creating_the_app_loads_neither_pandas_nor_numpy(env) -> None:  # noqa: ANN001
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
