"""Smoke tests of the NPBG++ render benchmark (tools/bench/bm_npbgpp.py) on a small scene."""

from __future__ import annotations

import pytest
import torch

from npbgpp.models.projection import ndc_intrinsics, project_points
from tools.bench import bm_npbgpp


def _ndc(points: torch.Tensor) -> torch.Tensor:
    cam = bm_npbgpp.camera("cpu")
    fcl, prp = ndc_intrinsics(cam)
    return project_points(points[None], cam.R, cam.T, fcl, prp)


def test_scene_is_in_front_of_the_near_plane():
    points, descriptors, valid = bm_npbgpp.scene(5000, "cpu")
    assert points.shape == (5000, 3) and descriptors.shape == (5000, 8) and bool(valid.all())
    assert float(points.abs().max()) <= 0.5
    depth = _ndc(points)[0, :, 2]
    # the cube's depths lie within DISTANCE -+ half its diagonal, all beyond NPBG++'s near plane
    half_diagonal = 0.5 * 3**0.5
    assert float(depth.min()) >= bm_npbgpp.DISTANCE - half_diagonal - 1e-5
    assert float(depth.max()) <= bm_npbgpp.DISTANCE + half_diagonal + 1e-5
    assert float(depth.min()) > 1.0


def test_columns_are_the_two_rasterizers_on_one_renderer():
    renderer, rasterizers = bm_npbgpp.renderers("cpu", align=False)
    assert tuple(rasterizers) == bm_npbgpp.COLUMNS
    ours, theirs = rasterizers.values()
    assert renderer.rasterizer is ours
    assert type(ours).__name__ == "NearestScatterRasterizer"
    assert type(theirs).__name__ == "ScatterReduceRasterizer"
    assert ours.scales == theirs.scales == (1.0, 0.5, 0.25, 0.125, 0.0625)
    assert ours.near == theirs.near == 1.0
    assert renderer.refiner.__class__.__name__ == "RefinerUnetV2"


def test_check_equal_catches_a_difference():
    points, descriptors, valid = bm_npbgpp.scene(3000, "cpu")
    _, rasterizers = bm_npbgpp.renderers("cpu", align=False)
    ndc = _ndc(points)
    bm_npbgpp.check_equal(rasterizers, ndc, descriptors, valid, bm_npbgpp.IMAGE_SIZE)
    rasterizers[bm_npbgpp.COLUMNS[1]].bg_feature.fill_(1.0)  # 3000 points leave pixels empty
    with pytest.raises(SystemExit, match="differ at scale 0"):
        bm_npbgpp.check_equal(rasterizers, ndc, descriptors, valid, bm_npbgpp.IMAGE_SIZE)


def test_raster_case_times_both_columns():
    times = bm_npbgpp.raster_case("cpu", 3000, repeats=1)
    assert set(times) == set(bm_npbgpp.COLUMNS)
    assert all(0 < t < 60 for t in times.values())


def test_cuda_absent_measures_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    table = bm_npbgpp.run("cuda", quick=True)
    assert table.rows == []
    assert table.title.endswith("cuda")
