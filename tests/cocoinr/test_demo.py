"""cocoinr.demo end to end (a few iterations): the page, its images, the mesh and the numbers;
and the same from a fresh venv with only ``pip install ./shared ./packages/cocoinr``."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from cocoinr import demo
from geomkit.errors import OutputExistsError

from ..helpers import fresh_venv, import_every_module

QUICK = ["--iter", "8", "--size", "24", "--resolution", "32"]


def assert_demo_output(out: Path) -> None:
    page = (out / "index.html").read_text()
    images = [part.split("'")[0] for part in page.split("<img src='")[1:]]
    assert len(images) == 3 * 8  # ground truth, render and normals of the 8 held-out views
    assert all((out / image).is_file() for image in images)
    assert "plotly" in page.lower()
    summary = json.loads((out / "summary.json").read_text())
    assert all(math.isfinite(value) for value in summary["numbers"].values())
    (metrics,) = out.glob("exps/*/plots/*/metrics.json")
    mesh = json.loads(metrics.read_text())["mesh"]
    assert Path(mesh["mesh"]).is_file() and mesh["faces"] > 0


def test_demo_writes_its_page(tmp_path):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), *QUICK]) == 0
    assert_demo_output(out)
    with pytest.raises(OutputExistsError):  # an existing demo is not overwritten
        demo.main(["--out", str(out), *QUICK])


@pytest.mark.slow
def test_fresh_venv_install_runs_the_commands(tmp_path):
    python = fresh_venv(tmp_path / "venv", "shared", "packages/cocoinr")
    import_every_module(python, "cocoinr", tmp_path)
    out = tmp_path / "demo"
    command = [str(python), "-m", "cocoinr.demo", "--out", str(out), *QUICK]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_demo_output(out)
