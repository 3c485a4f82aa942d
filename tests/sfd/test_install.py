"""``pip install ./shared './packages/sfd[normals]'`` in a fresh venv: every module imports and
the demo (a generated pile -> Geo, Vis, Mat -> eval and exports) runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from ..helpers import fresh_venv, import_every_module
from .test_demo import QUICK


@pytest.mark.slow
def test_fresh_venv_install_runs_the_demo(tmp_path):
    python = fresh_venv(tmp_path / "venv", "shared", "packages/sfd[normals]")
    import_every_module(python, "sfd", tmp_path)
    out = tmp_path / "demo"
    command = [str(python), "-m", "sfd.demo", "--out", str(out), "--instances", "3",
               "--resolution", "32", *QUICK]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "index.html").is_file()
    assert json.loads((out / "summary.json").read_text())["numbers"]["mask IoU"] >= 0
