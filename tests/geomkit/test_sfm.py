"""geomkit.sfm: matches verified by known poses, triangulation on a generated textured scene
(points on the true surface, sub-pixel reprojection), depth-map fusion and plane sweep."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pykdtree.kdtree import KDTree

from geomkit.cameras import from_colmap, from_opengl_c2w
from geomkit.errors import InputError
from geomkit.io import read_depth_png, read_image, read_ply
from geomkit.sfm import (
    SiftOptions,
    proximity_pairs,
    sampson_distance,
    triangulate_known_poses,
)
from geomkit.sfm.densify import PlaneSweepOptions, densify_plane_sweep, scale_cameras
from geomkit.sfm.features import relative_pose
from geomkit.sfm.fusion import FusedCloud, fuse_depth_maps, voxel_downsample
from geomkit.synth import cached_scene, look_at_c2w_opengl

# A box (seed 1 draws the checkerboard texture SIFT needs) seen by 16 cameras on an orbit at
# 1.4 units, 192 px: neighbouring views 22.5 degrees apart. The object spans about one unit.
SCENE = dict(
    shape="box",
    views=16,
    layout="colmap",
    image_size=(192, 192),
    cameras="orbit",
    camera_distance=1.4,
    seed=1,
)


@pytest.fixture(scope="module")
def scene():
    folder = cached_scene(**SCENE)
    cameras, names = from_colmap(folder / "sparse" / "0", dtype=torch.float64)
    gt = read_ply(folder / "gt_points.ply").points.astype(np.float64)
    return folder, cameras, [folder / "images" / name for name in names], gt


@pytest.fixture(scope="module")
def sparse(scene, tmp_path_factory):
    _, cameras, paths, _ = scene
    workdir = tmp_path_factory.mktemp("sfm")
    return triangulate_known_poses(cameras, paths, workdir, sift=SiftOptions(peak_threshold=0.002))


def distances_to(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return KDTree(reference).query(np.ascontiguousarray(points, dtype=np.float64))[0]


def test_triangulated_points_lie_on_the_true_surface(scene, sparse):
    *_, gt = scene
    # Measured: 85 points, median 3.0e-3, mean reprojection 0.45 px, all 16 images used.
    assert sparse.report["num_points"] == len(sparse) >= 40
    assert np.median(distances_to(sparse.points, gt)) < 0.01
    assert np.percentile(distances_to(sparse.points, gt), 90) < 0.02
    assert sparse.report["mean_reprojection_error_px"] < 1.0
    assert sparse.report["images_used"] >= 12
    assert sparse.report["images_given"] == 16
    assert sparse.points.shape == (len(sparse), 3) and sparse.colors.shape == (len(sparse), 3)
    assert sparse.track_length.min() >= 2
    assert np.isclose(sparse.reprojection_error.mean(), sparse.report["mean_reprojection_error_px"])


def test_every_point_is_in_front_of_and_inside_two_views(scene, sparse):
    """Checked with geomkit's cameras, independently of COLMAP's frame handling."""
    _, cameras, _, _ = scene
    uv, z = cameras.project(torch.from_numpy(sparse.points))
    assert bool((z > 0).all())
    inside = (uv >= 0).all(-1) & (uv < 192).all(-1)
    assert int(inside.sum(0).min()) >= 2  # every point lies in at least two images


def _two_cameras():
    eyes = np.array([[2.0, 0.0, 0.5], [1.5, 1.3, 0.2]])
    c2w = torch.from_numpy(look_at_c2w_opengl(eyes))
    return from_opengl_c2w(
        c2w,
        torch.tensor([[100.0, 100.0]] * 2, dtype=torch.float64),
        torch.tensor([[64.0, 48.0]] * 2, dtype=torch.float64),
        torch.tensor([[96, 128]] * 2),
    )


def test_sampson_distance_is_zero_on_true_matches_and_the_offset_off_the_epipolar_line():
    cameras = _two_cameras()
    points = torch.tensor(
        [[0.1, -0.2, 0.3], [-0.3, 0.2, 0.0], [0.0, 0.0, -0.2]], dtype=torch.float64
    )
    view = cameras.world_to_view(points)
    xy = (view[..., :2] * -1 / view[..., 2:]).numpy()  # normalised OpenCV coordinates
    R, t = relative_pose(cameras, 0, 1)
    assert np.abs(sampson_distance(xy[0], xy[1], R, t)).max() < 1e-12
    # Move the second point by d perpendicular to its epipolar line: the Sampson distance (the
    # first-order smallest correction of BOTH points) is d |l2| / sqrt(|l1|^2 + |l2|^2), with
    # l2 = E x1 and l1 = E^T x2 restricted to their first two entries.
    u = t / np.linalg.norm(t)
    E = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]]) @ R
    h1 = np.concatenate([xy[0], np.ones((3, 1))], 1)
    h2 = np.concatenate([xy[1], np.ones((3, 1))], 1)
    l2 = np.linalg.norm((h1 @ E.T)[:, :2], axis=1)
    l1 = np.linalg.norm((h2 @ E)[:, :2], axis=1)
    normal = (h1 @ E.T)[:, :2] / l2[:, None]
    d = 1e-4
    error = sampson_distance(xy[0], xy[1] + d * normal, R, t)
    np.testing.assert_allclose(error, d * l2 / np.sqrt(l1**2 + l2**2), rtol=1e-3)


def test_proximity_pairs_on_an_orbit_are_the_neighbours():
    n = 10
    angles = 2 * math.pi * np.arange(n) / n
    eyes = np.stack([2 * np.cos(angles), 2 * np.sin(angles), np.zeros(n)], 1)
    c2w = torch.from_numpy(look_at_c2w_opengl(eyes))
    cameras = from_opengl_c2w(
        c2w,
        torch.full((n, 2), 50.0, dtype=torch.float64),
        torch.full((n, 2), 32.0, dtype=torch.float64),
        torch.tensor([[64, 64]] * n),
    )
    pairs = {tuple(p) for p in proximity_pairs(cameras, 2).tolist()}
    assert pairs == {(i, i + 1) for i in range(n - 1)} | {(0, n - 1)}


def _depths(folder, names):
    scale = json.loads((folder / "scene.json").read_text())["depth_scale"]
    return np.stack([read_depth_png(folder / "depths" / name, scale) for name in names])


def test_fused_depth_maps_land_on_the_true_surface(scene):
    folder, cameras, paths, gt = scene
    names = [p.name for p in paths[:6]]
    depths = _depths(folder, names)
    images = np.stack([read_image(p) for p in paths[:6]])
    fused = fuse_depth_maps(depths, cameras[:6], images, min_consistent_views=1, stride=2)
    dist = distances_to(fused.points, gt)
    # Depth PNGs are quantised to 1 mm; the mesh is marching cubes at 128^3.
    assert len(fused) > 5000
    assert np.median(dist) < 0.003 and dist.max() < 0.015
    assert fused.colors.shape == (len(fused), 3) and fused.num_consistent.min() >= 1


def test_consistency_check_removes_a_wrong_depth_region(scene):
    folder, cameras, paths, gt = scene
    names = [p.name for p in paths[:4]]
    depths = _depths(folder, names)
    depths[0, 60:120, 60:120] *= 1.3  # a floater seen by one view only
    loose = fuse_depth_maps(depths, cameras[:4], min_consistent_views=0, stride=2)
    checked = fuse_depth_maps(depths, cameras[:4], min_consistent_views=1, stride=2)
    assert distances_to(loose.points, gt).max() > 0.1
    assert distances_to(checked.points, gt).max() < 0.015


def test_voxel_downsample_averages_points_and_colours_per_cell():
    points = np.array([[0.01, 0.01, 0.01], [0.03, 0.02, 0.04], [0.51, 0.0, 0.0], [-0.02, 0, 0]])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    cloud = voxel_downsample(FusedCloud(points, colors, np.array([1, 3, 2, 0])), 0.1)
    order = np.lexsort(cloud.points.T[::-1])
    expected = np.array([[-0.02, 0, 0], [0.02, 0.015, 0.025], [0.51, 0, 0]])
    np.testing.assert_allclose(cloud.points[order], expected, atol=1e-15)
    np.testing.assert_allclose(cloud.colors[order], [[1, 1, 1], [0.5, 0.5, 0], [0, 0, 1]])
    np.testing.assert_array_equal(cloud.num_consistent[order], [0, 3, 2])


def test_fusion_rejects_mismatched_inputs(scene):
    _, cameras, _, _ = scene
    with pytest.raises(InputError, match="depth maps"):
        fuse_depth_maps(np.ones((3, 192, 192)), cameras[:2])
    with pytest.raises(InputError, match="dimensions"):
        fuse_depth_maps(np.ones((192, 192)), cameras[:1])


def test_scaled_cameras_project_to_scaled_pixels(scene):
    _, cameras, _, gt = scene
    small = scale_cameras(cameras[:3], (96, 96))
    uv, _ = cameras[:3].project(torch.from_numpy(gt[:50]))
    uv_small, _ = small.project(torch.from_numpy(gt[:50]))
    torch.testing.assert_close(uv_small, uv / 2, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_plane_sweep_densification_lies_on_the_surface(scene, sparse):
    _, cameras, paths, gt = scene
    options = PlaneSweepOptions(max_size=96, num_depths=32)
    dense = densify_plane_sweep(cameras, paths, sparse.points, options)
    # Measured at 96 px, 32 planes: 48k points, median 6.3e-3, 69% of gt within 1e-2.
    assert len(dense) > 10 * len(sparse)
    assert np.median(distances_to(dense.points, gt)) < 0.012
    assert (distances_to(gt, dense.points) < 0.01).mean() > 0.5
