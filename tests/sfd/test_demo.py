"""sfd.demo end to end with a few iterations: on a generated pile, and on a given data folder
(copied, never written; points_world.npy rebuilt when absent, as for the authors' sample)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from geomkit.errors import OutputExistsError, run_main
from sfd import demo

QUICK = ["--geo_iters", "2", "--vis_iters", "1", "--mat_iters", "1", "--mesh_resolution", "24",
         "--texture_size", "512"]  # fmt: skip


def assert_page(out: Path) -> dict:
    page = (out / "index.html").read_text()
    images = [part.split("'")[0] for part in page.split("<img src='")[1:]]
    assert len(images) == 6, images  # input, segmentation, Geo and Mat plots, lights, texture
    assert all((out / image).is_file() for image in images)
    links = [part.split("'")[0] for part in page.split("<a href='")[1:]]
    assert any(link.endswith("mesh_textured.obj") for link in links)
    assert all((out / link).is_file() for link in links)
    summary = json.loads((out / "summary.json").read_text())
    assert all(math.isfinite(value) for value in summary["numbers"].values())
    return summary


@pytest.mark.slow  # 17 s; the data-folder test below runs the same stages and page in make test
def test_demo_on_a_generated_pile(tmp_path):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--instances", "3", "--resolution", "32", *QUICK]) == 0
    assert "3 boxes" in assert_page(out)["ran"]
    with pytest.raises(OutputExistsError):
        demo.main(["--out", str(out), *QUICK])


def test_demo_on_a_data_folder_rebuilds_points_world_in_its_copy(small_pile, tmp_path):
    source = tmp_path / "chairs"
    shutil.copytree(small_pile, source)
    (source / "points_world.npy").unlink()
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    out = tmp_path / "demo"
    assert demo.main(["--data", str(source), "--out", str(out), *QUICK]) == 0
    assert "the data folder chairs" in assert_page(out)["ran"]
    assert (out / "data" / "chairs" / "points_world.npy").is_file()
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before


def test_demo_refuses_a_missing_data_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(demo.main, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "no such folder" in capsys.readouterr().err
