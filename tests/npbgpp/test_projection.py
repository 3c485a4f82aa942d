"""NPBG++'s NDC against geomkit's Cameras.project, its pixel mapping, and its z-buffer
visibility against hand-made configurations and NPBG++'s scatter 'min' algorithm."""

from __future__ import annotations

import math

import pytest
import torch

from geomkit.cameras import Cameras
from npbgpp.models.projection import (
    compute_visibility,
    inside_ndc_bounds,
    ndc_bounds,
    ndc_intrinsics,
    npbgpp_pixel_coordinates,
    project_cameras,
    project_points,
)


def _random_rotations(n: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    return q * torch.linalg.det(q).sign()[:, None, None]


def _cameras(size=(48, 64), n=3, seed=0) -> Cameras:
    g = torch.Generator().manual_seed(seed)
    H, W = size
    return Cameras(
        R=_random_rotations(n, g),
        T=torch.randn(n, 3, generator=g, dtype=torch.float64) + torch.tensor([0, 0, 6.0]),
        focal_length=50 + 20 * torch.rand(n, 2, generator=g, dtype=torch.float64),
        principal_point=torch.tensor([W / 2, H / 2], dtype=torch.float64)
        + 5 * torch.randn(n, 2, generator=g, dtype=torch.float64),
        image_size=torch.tensor([[H, W]] * n),
    )


@pytest.mark.parametrize("size", [(48, 64), (64, 40), (31, 31)])
def test_ndc_projection_equals_cameras_project_mapped_to_npbgpp_ndc(size):
    cameras = _cameras(size, seed=size[0])
    g = torch.Generator().manual_seed(1)
    points = torch.randn(200, 3, generator=g, dtype=torch.float64)
    uv, depth = cameras.project(points)
    H, W = size
    m = min(size)
    # pixel-centre coordinates are uv - 0.5; NPBG++: x_ndc = -(u_c - (W - 1) / 2) * 2 / (m - 1)
    expected_x = -(uv[..., 0] - 0.5 - (W - 1) / 2) * 2 / (m - 1)
    expected_y = -(uv[..., 1] - 0.5 - (H - 1) / 2) * 2 / (m - 1)
    ndc = project_cameras(points, cameras)
    in_front = depth > 1
    assert in_front.float().mean() > 0.5
    # NPBG++ divides by z + 1e-7: relative 1e-7 / z
    torch.testing.assert_close(ndc[..., 0][in_front], expected_x[in_front], atol=1e-6, rtol=0)
    torch.testing.assert_close(ndc[..., 1][in_front], expected_y[in_front], atol=1e-6, rtol=0)
    torch.testing.assert_close(ndc[..., 2], depth, atol=0, rtol=0)


def test_known_point_and_intrinsics_formula():
    # identity pose, f = 100, principal point at the image centre: the axis goes to ndc (0, 0)
    cameras = Cameras(
        R=torch.eye(3)[None].double(),
        T=torch.zeros(1, 3, dtype=torch.float64),
        focal_length=torch.tensor([[100.0, 100.0]], dtype=torch.float64),
        principal_point=torch.tensor([[32.0, 24.0]], dtype=torch.float64),
        image_size=torch.tensor([[48, 64]]),
    )
    fcl, prp = ndc_intrinsics(cameras)
    torch.testing.assert_close(fcl, torch.tensor([[200 / 47, 200 / 47]], dtype=torch.float64))
    torch.testing.assert_close(prp, torch.zeros(1, 2, dtype=torch.float64))
    # view +X is LEFT: X = -1 at Z = 5 is 20 px right of the centre; +Y up: Y = 1 is 20 px up
    points = torch.tensor([[0.0, 0.0, 5.0], [-1.0, 1.0, 5.0]], dtype=torch.float64)
    ndc = project_points(points, cameras.R, cameras.T, fcl, prp)
    torch.testing.assert_close(ndc[0, 0], torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(
        ndc[0, 1], torch.tensor([-40 / 47, 40 / 47, 5.0], dtype=torch.float64), atol=1e-6, rtol=0
    )
    xy = npbgpp_pixel_coordinates(ndc, (48, 64))
    # centre of the 64 x 48 image is (31.5, 23.5) in pixel-centre coordinates: floor(32 - 1e-6)
    assert xy[0, 0].floor().tolist() == [31.0, 23.0]
    assert xy[0, 1].floor().tolist() == [51.0, 3.0]  # 31.5 + 20 and 23.5 - 20, rounded down


def test_shifted_principal_point_sign():
    cameras = _cameras((40, 60), n=1)
    fcl, prp = ndc_intrinsics(cameras)
    cx = cameras.principal_point[0, 0] - 0.5
    torch.testing.assert_close(prp[0, 0], -(cx - 29.5) * 2 / 39)


def test_ndc_bounds_and_inside():
    assert ndc_bounds((48, 64)) == (64 / 48, 1.0)
    assert ndc_bounds((64, 48)) == (1.0, 64 / 48)
    assert ndc_bounds((32, 32)) == (1.0, 1.0)
    ndc = torch.tensor([[[1.33, 1.0, 2], [1.34, 0, 2], [0, -1.0, 2], [0, -1.01, 2]]])
    assert inside_ndc_bounds(ndc, (48, 64)).tolist() == [[True, False, True, False]]


def test_pixel_mapping_edges_and_rounding():
    size = (5, 9)  # s = 2, x_scr = 4 - 2 x_ndc, y_scr = 2 - 2 y_ndc
    ndc = torch.tensor(
        [
            [
                [1.0, 1.0, 2.0],  # x_scr = 2, y_scr = 0: (row 0, col 2)
                [-1.0, -1.0, 2.0],  # (row 4, col 6)
                [1.75, 0.0, 2.0],  # x_scr = 0.5 exactly: NPBG++ rounds half DOWN -> col 0
                [1.5, 0.0, 2.0],  # x_scr = 1.0 -> col 1
                [2.2, 0.0, 2.0],  # x_scr = -0.4: trunc(0.1) = 0 -> col 0
                [2.3, 0.0, 2.0],  # x_scr = -0.6: trunc(-0.1) = 0 (C truncation) -> col 0
                [2.8, 0.0, 2.0],  # x_scr = -1.6: trunc(-1.1) = -1 -> dropped
            ]
        ],
        dtype=torch.float64,
    )
    xy = npbgpp_pixel_coordinates(ndc, size)
    cols = xy[0, :, 0].floor()
    assert cols[:6].tolist() == [2.0, 6.0, 0.0, 1.0, 0.0, 0.0]
    assert xy[0, :6, 1].floor().tolist() == [0.0, 4.0, 2.0, 2.0, 2.0, 2.0]
    assert torch.isnan(xy[0, 6]).all()
    bounded = npbgpp_pixel_coordinates(ndc, size, bounds_size=size)  # bound_x = 9 / 5 = 1.8
    assert torch.isnan(bounded[0, :, 0]).tolist() == [False] * 4 + [True] * 3


def _ndc_at_pixel(col: float, row: float, z: float, size) -> list[float]:
    """NDC of the centre of pixel (row, col) of an image of ``size``."""
    h, w = size
    s = (min(size) - 1) / 2
    return [((w - 1) / 2 - col) / s, ((h - 1) / 2 - row) / s, z]


def test_visibility_hand_made():
    size = (8, 8)
    pts = [
        _ndc_at_pixel(3, 3, 2.0, size),  # 0 nearest of its pixel: visible
        _ndc_at_pixel(3, 3, 3.0, size),  # 1 behind point 0: occluded
        _ndc_at_pixel(5, 1, 0.5, size),  # 2 in front of the near plane z = 1: invisible
        _ndc_at_pixel(6, 6, 4.0, size),  # 3 tie with 4 at the minimum: both visible (z == min)
        _ndc_at_pixel(6, 6, 4.0, size),  # 4
        _ndc_at_pixel(6, 6, 5.0, size),  # 5 behind the tie
        [1.2, 0.0, 2.0],  # 6 outside the NDC bounds: invisible
        _ndc_at_pixel(1, 6, 1.0, size),  # 7 exactly on the near plane: invisible (strict)
        _ndc_at_pixel(1, 6, 7.0, size),  # 8 behind 7, which does not count: visible
        _ndc_at_pixel(5, 1, 9.0, size),  # 9 behind the culled point 2: visible
    ]
    ndc = torch.tensor([pts], dtype=torch.float32)
    visible = compute_visibility(ndc, size)
    expected = [True, False, False, True, True, False, False, False, True, True]
    assert visible[0].tolist() == expected
    # near is configurable: with near 0.25 point 2 hides point 9 and 7 hides 8
    visible = compute_visibility(ndc, size, near=0.25)
    assert visible[0, [2, 7, 8, 9]].tolist() == [True, True, False, False]


def test_visibility_at_half_scale_merges_pixels():
    size = (8, 8)
    # pixels (2, 2) and (3, 3) of the 8x8 image fall in one pixel of the 4x4 one
    near_pt = _ndc_at_pixel(2, 2, 2.0, size)
    far_pt = _ndc_at_pixel(3, 3, 3.0, size)
    ndc = torch.tensor([[near_pt, far_pt]])
    assert compute_visibility(ndc, size, scale=1.0)[0].tolist() == [True, True]
    xy = npbgpp_pixel_coordinates(ndc, (4, 4))
    assert xy[0, 0].floor().tolist() == xy[0, 1].floor().tolist()
    assert compute_visibility(ndc, size, scale=0.5)[0].tolist() == [True, False]


def _npbgpp_visibility(ndc, size, scale, near=1.0):
    """compute_one_scale_visibility (variant 1) as the original writes it, scatter 'amin'."""
    H, W = size
    bx, by = ndc_bounds(size)
    valid = (
        (ndc[..., 2] > near)
        & (ndc[..., 0].abs() <= bx)  # the original's -b <= x <= b
        & (ndc[..., 1].abs() <= by)
    )
    h, w = int(scale * H), int(scale * W)
    s = (min(h, w) - 1) / 2
    sx = (-(s * ndc[..., 0] + (-(w - 1) / 2)) - 1e-6 + 0.5).long()
    sy = (-(s * ndc[..., 1] + (-(h - 1) / 2)) - 1e-6 + 0.5).long()
    pid = sy * w + sx
    out = ~((0 <= sx) & (sx < w) & (0 <= sy) & (sy < h))
    pid = torch.where(out | ~valid, h * w, pid)
    buf = torch.full((ndc.shape[0], h * w + 1), math.inf, dtype=ndc.dtype)
    buf.scatter_reduce_(1, pid, ndc[..., 2], "amin", include_self=True)
    closest = buf.gather(1, pid)
    return (ndc[..., 2] == closest) & valid & (pid < h * w)


@pytest.mark.parametrize("size,scale", [((37, 53), 1.0), ((64, 48), 0.5), ((30, 30), 0.25)])
def test_visibility_equals_npbgpp_scatter_min(size, scale):
    g = torch.Generator().manual_seed(size[0])
    n, p = 2, 4000
    xy = (torch.rand(n, p, 2, generator=g) * 2 - 1) * 1.6
    z = 0.5 + torch.randint(0, 10, (n, p, 1), generator=g) * 0.25  # many exact ties
    ndc = torch.cat((xy, z), dim=2)
    got = compute_visibility(ndc, size, scale=scale)
    expected = _npbgpp_visibility(ndc, size, scale)
    assert got.sum() > 100
    assert torch.equal(got, expected)


def test_skew_is_rejected():
    cameras = _cameras(n=1)
    cameras.skew = torch.ones(1, dtype=torch.float64)
    with pytest.raises(ValueError, match="skew"):
        ndc_intrinsics(cameras)
