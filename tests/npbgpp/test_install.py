"""``pip install ./shared ./packages/npbgpp`` in a fresh venv: every module imports and the demo
(the authors' train_net commands on a generated scene in the DTU layout) runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from ..helpers import fresh_venv, import_every_module


@pytest.mark.slow
def test_fresh_venv_install_runs_the_demo(tmp_path):
    python = fresh_venv(tmp_path / "venv", "shared", "packages/npbgpp")
    import_every_module(python, "npbgpp", tmp_path)
    out = tmp_path / "demo"
    command = [str(python), "-m", "npbgpp.demo", "--out", str(out), "--steps", "4", "--size",
               "32", "--frames", "2"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "index.html").is_file()
    assert json.loads((out / "summary.json").read_text())["numbers"]
