"""onet.fusion: depth maps, TSDF and marching cubes against independent computations, and the
watertight meshes of the real ModelNet chairs.

Run with ``-s`` to see the measured IoU, agreement and timing lines.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from geomkit.cameras import from_opencv, to_opencv
from geomkit.io import read_mesh
from geomkit.mesh import (
    contains,
    contains_with_agreement,
    is_watertight,
    merge_duplicate_vertices,
    normalize_to_unit_box,
    sample_surface,
    signed_volume,
)
from geomkit.structures import TriMesh
from geomkit.synth import make_shape
from onet.fusion import (
    FusionOptions,
    fuse_tsdf,
    fusion_cameras,
    render_fusion_depths,
    tsdf_to_mesh,
    watertight_mesh,
)
from tests.helpers import assert_close

CHAIRS = ("chair_0890", "chair_0891")


def _reference_tsdf(depths, cameras, resolution, truncation):
    """libfusioncpu's fusion_cpu + TsdfFusionFunctor, voxel by voxel and view by view.

    The pixel is C's int(u + 0.5) in OpenCV pixel coordinates, written as floor (equal for
    u >= -0.5; the original also rounds u in (-1, -0.5) onto column 0).
    """
    opencv = to_opencv(cameras.to(dtype=torch.float64))
    K, R, t = opencv.K.numpy(), opencv.R_w2c.numpy(), opencv.t_w2c.numpy()
    depths = depths.numpy()
    n_views, rows, cols = depths.shape
    out = np.empty((resolution,) * 3)
    for i, j, k in np.ndindex(*out.shape):
        p = (np.array([i, j, k]) + 0.5) / resolution - 0.5
        total, valid = 0.0, 0
        for v in range(n_views):
            x, y, z = R[v] @ p + t[v]
            u = math.floor(K[v, 0, 0] * x / z + K[v, 0, 2] + 0.5)
            w = math.floor(K[v, 1, 1] * y / z + K[v, 1, 2] + 0.5)
            if 0 <= u < cols and 0 <= w < rows:
                dist = depths[v, w, u] - z
                if depths[v, w, u] > 0 and dist >= -truncation:
                    total += min(truncation, dist)
                    valid += 1
        out[i, j, k] = total / valid if valid else -truncation
    return out


def _random_cameras(n_views: int, size: int, seed: int):
    """Cameras around the unit cube in general position (no pixel-boundary ties)."""
    rng = np.random.default_rng(seed)
    rotations = Rotation.random(n_views, random_state=seed).as_matrix()
    translations = np.array([0.0, 0.0, 1.3]) + 0.05 * rng.standard_normal((n_views, 3))
    K = np.array([[size * 1.1, 0.0, size / 2 + 0.3], [0.0, size * 1.05, size / 2 - 0.2], [0, 0, 1]])
    return from_opencv(rotations, translations, np.tile(K, (n_views, 1, 1)), (size, size))


def test_fuse_tsdf_matches_voxel_by_voxel_reference():
    cameras = _random_cameras(6, 20, seed=2)
    depths = torch.rand(6, 20, 20, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.9
    truncation = 0.15
    ours = fuse_tsdf(depths, cameras, 10, truncation)
    reference = _reference_tsdf(depths, cameras.to(dtype=torch.float32), 10, truncation)
    assert_close(ours, reference, atol=1e-5, what="TSDF")
    # The test exercises both signs, clamping, occlusion and no-view voxels.
    assert (reference < 0).any() and (reference > 0).any()
    assert (reference == truncation).any() and (reference == -truncation).any()


def test_box_restriction_keeps_signs():
    shape = make_shape("torus")
    scaled, _, _ = normalize_to_unit_box(shape.mesh(48), padding=0.1)
    options = FusionOptions(n_views=30, resolution=40, image_size=160, focal=160.0)
    cameras = fusion_cameras(options)
    depths = render_fusion_depths(scaled, cameras, options)
    box = np.stack([scaled.vertices.min(axis=0), scaled.vertices.max(axis=0)])
    full = fuse_tsdf(depths, cameras, 40, options.truncation)
    boxed = fuse_tsdf(depths, cameras, 40, options.truncation, box)
    assert ((full > 0) == (boxed > 0)).all()
    near = (boxed.abs() < options.truncation).numpy()
    assert_close(boxed.numpy()[near], full.numpy()[near], atol=1e-6, what="TSDF near the surface")


def test_fusion_cameras_look_at_origin_from_distance():
    options = FusionOptions()
    cameras = fusion_cameras(options)
    assert len(cameras) == 100
    centres = cameras.camera_center().double()
    assert_close(centres.norm(dim=1), torch.ones(100), atol=1e-6, what="camera distance")
    uv, depth = cameras.project(torch.zeros(1, 3))
    assert_close(uv[:, 0], torch.full((100, 2), 320.0), atol=1e-3, what="origin pixel")
    assert_close(depth[:, 0], torch.ones(100), atol=1e-6, what="origin depth")
    assert_close(cameras.focal_length, torch.full((100, 2), 640.0), atol=0.0, what="focal")


def test_depth_maps_match_ray_casting_and_grey_erosion():
    """Depth = view z of the first hit (trimesh ray casting), far plane where none, then
    - 1.5 voxels and scipy's 3 x 3 grey erosion."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    sphere.apply_translation([0.05, -0.04, 0.02])
    mesh = TriMesh(sphere.vertices, sphere.faces)
    options = FusionOptions(n_views=3, image_size=40, focal=36.0, resolution=64)
    cameras = fusion_cameras(options)
    ours = render_fusion_depths(mesh, cameras, options).numpy()
    opencv = to_opencv(cameras.to(dtype=torch.float64))
    rows, cols = np.mgrid[0:40, 0:40]
    caster = trimesh.ray.ray_triangle.RayMeshIntersector(sphere)
    for v in range(3):
        K, R, t = (a[v].numpy() for a in (opencv.K, opencv.R_w2c, opencv.t_w2c))
        pixels = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1)
        directions = (np.linalg.inv(K) @ pixels.T).T @ R  # camera rays to world
        origins = np.broadcast_to(-R.T @ t, directions.shape)
        hits, ray_index, _ = caster.intersects_location(origins, directions, multiple_hits=True)
        z = (hits @ R.T + t)[:, 2]
        raw = np.full(cols.size, options.zfar)
        np.minimum.at(raw, ray_index, z)
        expected = ndimage.grey_erosion(raw.reshape(40, 40) - 1.5 / 64, size=(3, 3), mode="reflect")
        assert_close(ours[v], expected, atol=1e-5, what=f"depth map {v}")


def test_tsdf_to_mesh_places_vertices_at_voxel_centres():
    resolution, radius = 32, 0.3
    centres = (np.arange(resolution) + 0.5) / resolution - 0.5
    p = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1)
    truncation = 10 / resolution
    tsdf = np.clip(
        np.linalg.norm(p - [0.05, 0.0, -0.03], axis=-1) - radius, -truncation, truncation
    )
    mesh = tsdf_to_mesh(torch.as_tensor(tsdf, dtype=torch.float32))
    radii = np.linalg.norm(mesh.vertices - [0.05, 0.0, -0.03], axis=1)
    # A half-voxel offset would move every vertex by up to 0.87 voxel.
    assert_close(radii, np.full_like(radii, radius), atol=0.05 / resolution, what="radius")
    assert is_watertight(mesh)
    assert_close(signed_volume(mesh), 4 / 3 * np.pi * radius**3, rtol=0.01, what="volume")


def test_open_mesh_becomes_watertight_and_matches_its_sdf():
    shape = make_shape("torus")
    full = shape.mesh(64)
    keep = np.random.default_rng(0).random(len(full.faces)) > 0.05
    holed = TriMesh(full.vertices, full.faces[keep])
    assert not is_watertight(holed)
    fused = watertight_mesh(holed, FusionOptions(resolution=64))
    assert is_watertight(fused)
    points = np.random.default_rng(1).random((50_000, 3)) - 0.5
    truth = shape.sdf(points) < 0
    occupied = contains(fused, points)
    iou = (truth & occupied).sum() / (truth | occupied).sum()
    print(f"\ntorus with 5% of its faces removed, fused at 64^3: IoU vs its SDF {iou:.3f}")
    assert iou >= 0.88


def _single_sided(mesh: TriMesh) -> TriMesh:
    """The mesh with vertices welded and each repeated face kept once (chair_0890 stores every
    face twice, once per side, which makes every inside-test parity even)."""
    welded = merge_duplicate_vertices(mesh)
    _, first = np.unique(np.sort(welded.faces, axis=1), axis=0, return_index=True)
    return TriMesh(welded.vertices, welded.faces[np.sort(first)])


def _occupancy_scores(occupied: np.ndarray, truth) -> dict:
    """IoU and recall of ``occupied`` against ``truth.inside`` where ``truth.agree``."""
    agree, inside = truth.agree, truth.inside
    both = (occupied & inside & agree).sum()
    return {
        "iou": float(both / max(((occupied | inside) & agree).sum(), 1)),
        "agree": float(agree.mean()),
        "recall": float(both / max((inside & agree).sum(), 1)),
    }


def _chair_numbers(mesh: TriMesh, fused: TriMesh, n_points: int = 100_000) -> dict:
    """Scores of the fused mesh's occupancy against the original's inside test on uniform points
    of the unit cube where the original's up and down rays agree, as it is and single-sided;
    and the 99th percentile distance of fused-only points to the original surface."""
    normalized, loc, scale = normalize_to_unit_box(mesh)
    fused_normalized = TriMesh((fused.vertices - loc) / scale, fused.faces)
    points = np.random.default_rng(0).random((n_points, 3)) - 0.5
    occupied = contains(fused_normalized, points)
    truth = contains_with_agreement(_single_sided(normalized), points)
    surface, _ = sample_surface(normalized, 400_000, seed=0)
    distance, _ = cKDTree(surface).query(points[occupied & ~truth.inside & truth.agree])
    return {
        "original": _occupancy_scores(occupied, contains_with_agreement(normalized, points)),
        "single_sided": _occupancy_scores(occupied, truth),
        "extra_p99": float(np.quantile(distance, 0.99)) if len(distance) else 0.0,
    }


def _check_chair(shared_data, name: str, resolution: int, iou_floor: float, shell: float):
    mesh = read_mesh(shared_data / "onet" / "meshes" / f"{name}.off")
    start = time.perf_counter()
    fused = watertight_mesh(mesh, FusionOptions(resolution=resolution))
    seconds = time.perf_counter() - start
    assert is_watertight(fused)
    numbers = _chair_numbers(mesh, fused)
    original, single = numbers["original"], numbers["single_sided"]
    print(
        f"\n{name} at {resolution}^3 ({seconds:.1f} s, {len(fused.faces)} faces): "
        f"IoU {original['iou']:.3f} (agree {original['agree']:.3f}); without double-sided "
        f"faces IoU {single['iou']:.3f} (agree {single['agree']:.3f}, recall "
        f"{single['recall']:.4f}); fused-only points within {numbers['extra_p99']:.4f} "
        "of the surface (99%)"
    )
    # The fusion thickens (depth offset, erosion, averaging behind thin parts), so the fused
    # mesh holds the original's inside and adds a thin shell.
    assert single["recall"] >= 0.99
    assert numbers["extra_p99"] <= shell
    assert single["iou"] >= iou_floor


@pytest.mark.realdata
@pytest.mark.parametrize("name", CHAIRS)
def test_real_chairs_fused_at_128(shared_data, name):
    _check_chair(shared_data, name, 128, iou_floor=0.45, shell=0.02)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", CHAIRS)
def test_real_chairs_fused_at_256(shared_data, name):
    _check_chair(shared_data, name, 256, iou_floor=0.5, shell=0.015)
