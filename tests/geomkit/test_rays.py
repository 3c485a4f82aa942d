"""geomkit.rays against hand-derived values, numpy and the original NeRF ray formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from geomkit.cameras import from_nerf_transforms, from_opencv
from geomkit.rays import (
    pixel_grid,
    pixel_rays,
    ray_aabb_intersection,
    ray_sphere_intersection,
    sample_pdf,
    sample_stratified,
)
from tests.helpers import assert_close

F64 = torch.float64


def _cameras(n: int = 3, distortion: bool = True, dtype=F64):
    R = torch.from_numpy(Rotation.random(n, random_state=0).as_matrix())
    t = torch.tensor([[0.1, -0.2, 6.0]], dtype=F64).repeat(n, 1)
    K = torch.tensor([[300.0, 0.0, 79.5], [0.0, 310.0, 59.5], [0.0, 0.0, 1.0]], dtype=F64)
    dist = (
        torch.tensor([[0.08, -0.03, 1e-3, -5e-4]], dtype=F64).repeat(n, 1) if distortion else None
    )
    return from_opencv(R, t, K.repeat(n, 1, 1), (120, 160), dist).to(dtype=dtype)


def _distance_to_rays(points, origins, directions):
    """Distance from each point to the line o + t d (numpy, directions any norm)."""
    d = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    offset = points - origins
    return np.linalg.norm(offset - (offset * d).sum(-1, keepdims=True) * d, axis=-1)


def test_pixel_grid_is_row_major_with_offset():
    grid = pixel_grid(2, 3)
    expected = [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5]]
    assert_close(grid, expected, atol=0.0)
    assert_close(pixel_grid(2, 3, pixel_offset=0.0)[4], [1.0, 1.0], atol=0.0)
    assert pixel_grid(4, 5, dtype=F64).shape == (20, 2) and pixel_grid(1, 1, dtype=F64).dtype == F64


@pytest.mark.parametrize("distortion", [False, True])
def test_rays_through_projected_points_pass_through_them(distortion):
    cameras = _cameras(distortion=distortion)
    points = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (200, 3)))
    uv, depth = cameras.project(points)
    rays = pixel_rays(cameras, uv)
    assert_close(rays.directions.norm(dim=-1), np.ones((3, 200)), atol=1e-12, what="unit")
    distance = _distance_to_rays(
        points.numpy()[None], rays.origins.numpy(), rays.directions.numpy()
    )
    assert_close(distance, np.zeros((3, 200)), atol=1e-5, what="point-ray distance")
    # Un-normalised directions have view z = 1, so the point is at t = depth.
    raw = pixel_rays(cameras, uv, normalize=False)
    assert_close(
        raw.origins + depth[..., None] * raw.directions, points.expand(3, -1, -1), atol=1e-6
    )


def test_full_grid_rays_and_centre_ray():
    cameras = _cameras(n=2, distortion=False)
    rays = pixel_rays(cameras)
    assert rays.origins.shape == (2, 120 * 160, 3) and rays.directions.shape == (2, 120 * 160, 3)
    assert_close(rays.origins[:, 0], cameras.camera_center(), atol=1e-12, what="origins")
    # The principal point is the centre of the image (OpenCV 79.5, 59.5 -> ours 80, 60), which
    # with pixel_offset=0 is grid entry (row 60, col 80): its ray is the optical axis.
    centre_rays = pixel_rays(cameras, pixel_offset=0.0).directions[:, 60 * 160 + 80]
    optical_axis = cameras.R[:, :, 2]  # view +Z in world coordinates: third column of R
    assert_close(centre_rays, optical_axis, atol=1e-12, what="optical axis")


def test_pixel_offset_zero_reproduces_original_nerf_rays():
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("xyz", [20.0, -35.0, 80.0], degrees=True).as_matrix()
    c2w[:3, 3] = [0.5, -1.0, 3.0]
    meta = {
        "camera_angle_x": 0.69,
        "frames": [{"file_path": "r_0", "transform_matrix": c2w.tolist()}],
    }
    H, W = 6, 8
    cameras, _ = from_nerf_transforms(meta, image_size=(H, W), dtype=F64)
    focal = 0.5 * W / math.tan(0.5 * 0.69)
    # NeRF get_rays: i = column, j = row (integers), dirs = ((i - W/2)/f, -(j - H/2)/f, -1).
    j, i = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    dirs = np.stack([(i - 0.5 * W) / focal, -(j - 0.5 * H) / focal, -np.ones_like(i)], -1)
    expected = (dirs.reshape(-1, 3) @ c2w[:3, :3].T)[None]
    rays = pixel_rays(cameras, pixel_offset=0.0, normalize=False)
    assert_close(rays.directions, expected, atol=1e-12, what="directions")
    assert_close(rays.origins, np.broadcast_to(c2w[:3, 3], (1, H * W, 3)), atol=1e-12)


def test_pixel_rays_need_one_image_size_for_the_full_grid():
    cameras = _cameras(n=2)
    cameras.image_size[1] = torch.tensor([100, 100])
    with pytest.raises(ValueError, match="same image_size"):
        pixel_rays(cameras)


def test_ray_sphere_intersection_hand_values():
    origins = torch.tensor(
        [[0, 0, -5], [0, 0, -5], [0, 0, 0], [0, 2, -5], [0, 0, 5], [0, 1, -5], [3, 0, -5]],
        dtype=F64,
    )
    directions = torch.tensor(
        [[0, 0, 1], [0, 0, 2], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=F64
    )
    near, far, hit = ray_sphere_intersection(origins, directions, 1.0)
    # straight through; twice as long a direction halves t; from the centre; miss; sphere
    # behind the ray; tangent; centred on (3, 0, 0) below.
    assert hit.tolist() == [True, True, True, False, False, True, False]
    assert_close(near, [4.0, 2.0, -1.0, 0.0, 0.0, 5.0, 0.0], atol=1e-12, what="near")
    assert_close(far, [6.0, 3.0, 1.0, 0.0, 0.0, 5.0, 0.0], atol=1e-12, what="far")
    near, far, hit = ray_sphere_intersection(
        origins[6], directions[6], 2.0, torch.tensor([3.0, 0, 0], dtype=F64)
    )
    assert bool(hit) and float(near) == 3.0 and float(far) == 7.0
    near, _, _ = ray_sphere_intersection(origins[2], directions[2], 1.0, clamp_near=True)
    assert float(near) == 0.0


def test_ray_sphere_intersection_matches_the_quadratic_formula():
    rng = np.random.default_rng(1)
    origins = rng.normal(size=(500, 3)) * 3
    directions = rng.normal(size=(500, 3))
    radius = 2.0
    a = (directions**2).sum(-1)
    b = 2 * (origins * directions).sum(-1)
    c = (origins**2).sum(-1) - radius**2
    disc = b * b - 4 * a * c
    near, far, hit = ray_sphere_intersection(
        torch.from_numpy(origins), torch.from_numpy(directions), radius
    )
    real = disc >= 0
    root = np.sqrt(np.where(real, disc, 0))
    t_far = (-b + root) / (2 * a)
    assert hit.tolist() == (real & (t_far >= 0)).tolist()
    h = hit.numpy()
    assert_close(near[h], ((-b - root) / (2 * a))[h], atol=1e-9, what="near")
    assert_close(far[h], t_far[h], atol=1e-9, what="far")


def test_ray_aabb_intersection_hand_values():
    box_min = torch.tensor([-1.0, -1.0, -1.0], dtype=F64)
    box_max = torch.tensor([1.0, 2.0, 1.0], dtype=F64)
    origins = torch.tensor(
        [[-5, 0, 0], [-5, 0, 0], [0, 0, 0], [-5, 3, 0], [5, 0, 0], [-5, -5, 0], [-5, 1, 1]],
        dtype=F64,
    )
    directions = torch.tensor(
        [[1, 0, 0], [2, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=F64
    )
    near, far, hit = ray_aabb_intersection(origins, directions, box_min, box_max)
    # along x; faster; from inside along y; parallel above the box; box behind; diagonal (enters
    # through the corner x = -1, y = -1 at t = 4, leaves through x = 1 at t = 6); on an edge.
    assert hit.tolist() == [True, True, True, False, False, True, True]
    assert_close(near, [4.0, 2.0, -1.0, 0.0, 0.0, 4.0, 4.0], atol=1e-12, what="near")
    assert_close(far, [6.0, 3.0, 2.0, 0.0, 0.0, 6.0, 6.0], atol=1e-12, what="far")
    near, far, _ = ray_aabb_intersection(
        origins[2], directions[2], box_min, box_max, clamp_near=True
    )
    assert float(near) == 0.0 and float(far) == 2.0


def test_ray_aabb_matches_dense_sampling():
    rng = np.random.default_rng(2)
    origins = rng.uniform(-3, 3, (300, 3))
    directions = rng.normal(size=(300, 3))
    directions[:50, 0] = 0.0  # parallel to the x slabs
    box_min, box_max = np.array([-1.0, -0.5, -2.0]), np.array([1.0, 1.5, 0.5])
    near, far, hit = ray_aabb_intersection(
        torch.from_numpy(origins),
        torch.from_numpy(directions),
        torch.from_numpy(box_min),
        torch.from_numpy(box_max),
    )
    t = np.linspace(0, 20, 20001)
    samples = origins[:, None] + t[None, :, None] * directions[:, None]
    inside = ((samples >= box_min) & (samples <= box_max)).all(-1)
    assert hit.tolist() == inside.any(1).tolist()
    h = inside.any(1)
    first = np.where(h, t[inside.argmax(1)], 0)
    last = np.where(h, t[len(t) - 1 - inside[:, ::-1].argmax(1)], 0)
    clamped, far_clamped, _ = ray_aabb_intersection(
        torch.from_numpy(origins),
        torch.from_numpy(directions),
        torch.from_numpy(box_min),
        torch.from_numpy(box_max),
        clamp_near=True,
    )
    assert_close(clamped[h], first[h], atol=2e-3, what="near")
    assert_close(far_clamped[h], last[h], atol=2e-3, what="far")
    assert_close(far, far_clamped, atol=0, what="far unchanged by clamp")
    assert bool((near[hit] <= clamped[hit]).all())


def test_sample_stratified_midpoints_and_jitter():
    near = torch.tensor([1.0, 2.0], dtype=F64)
    far = torch.tensor([3.0, 6.0], dtype=F64)
    t = sample_stratified(near, far, 4)
    assert_close(t, [[1.25, 1.75, 2.25, 2.75], [2.5, 3.5, 4.5, 5.5]], atol=1e-12, what="midpoints")
    jittered = sample_stratified(
        near, far, 4, perturb=True, generator=torch.Generator().manual_seed(0)
    )
    edges = torch.stack([torch.linspace(1, 3, 5, dtype=F64), torch.linspace(2, 6, 5, dtype=F64)])
    assert bool(((jittered >= edges[:, :-1]) & (jittered <= edges[:, 1:])).all()), "outside its bin"
    assert not torch.equal(jittered, t)
    assert sample_stratified(0.5, 1.5, 3).shape == (3,)


def test_sample_stratified_inverse_depth():
    t = sample_stratified(
        torch.tensor(1.0, dtype=F64), torch.tensor(4.0, dtype=F64), 3, inverse_depth=True
    )
    # Bins equal in disparity 1/t from 1 to 1/4: midpoints at 1 - 0.75 * (1, 3, 5) / 6.
    expected = 1.0 / (1.0 - 0.75 * np.array([1, 3, 5]) / 6)
    assert_close(t, expected, atol=1e-12)


def test_sample_pdf_one_hot_lands_in_its_bin():
    bins = torch.linspace(0.0, 8.0, 9, dtype=F64).repeat(3, 1)
    weights = torch.zeros(3, 8, dtype=F64)
    weights[0, 2] = weights[1, 5] = weights[2, 7] = 1.0
    samples = sample_pdf(bins, weights, 64, generator=torch.Generator().manual_seed(0))
    lows = torch.tensor([[2.0], [5.0], [7.0]], dtype=F64)
    assert bool(((samples >= lows) & (samples <= lows + 1)).all()), samples
    deterministic = sample_pdf(bins, weights, 16, deterministic=True)
    # NeRF's quantiles linspace(0, 1): the first maps to bins[0]; the last to the empty bins
    # after the hot one (at bins[-1] only when the hot bin is the last).
    inner = deterministic[:, 1:-1]
    assert bool(((inner >= lows) & (inner <= lows + 1)).all()), deterministic
    assert_close(deterministic[:, 0], np.zeros(3), atol=1e-12)


def test_sample_pdf_uniform_weights_give_uniform_quantiles():
    bins = torch.linspace(2.0, 6.0, 11, dtype=F64)[None]
    samples = sample_pdf(bins, torch.ones(1, 10, dtype=F64), 9, deterministic=True)
    assert_close(samples, np.linspace(2.0, 6.0, 9)[None], atol=1e-12)


def test_sample_pdf_matches_numpy_inverse_cdf():
    rng = np.random.default_rng(3)
    bins = np.sort(rng.uniform(0, 10, (4, 17)), axis=1)
    weights = rng.uniform(0, 1, (4, 16))
    samples = sample_pdf(torch.from_numpy(bins), torch.from_numpy(weights), 33, deterministic=True)
    for i in range(4):
        w = weights[i] + 1e-5
        cdf = np.concatenate([[0.0], np.cumsum(w / w.sum())])
        expected = np.interp(np.linspace(0, 1, 33), cdf, bins[i])
        assert_close(samples[i], expected, atol=1e-9, what=f"ray {i}")
