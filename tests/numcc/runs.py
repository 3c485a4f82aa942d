"""``python -m numcc.main`` in a subprocess, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from ..helpers import REPO


def numcc_main(
    cwd, *argv: str, timeout: float = 300, threads: str | None = "1"
) -> subprocess.CompletedProcess:
    """Run numcc.main in ``cwd`` (OMP_NUM_THREADS=threads unless None)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    return subprocess.run(
        [sys.executable, "-m", "numcc.main", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
