"""Synthetic scenes: shapes, camera paths, and every layout read back through geomkit's own
readers and camera converters, with ground-truth surface points projected onto the masks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from geomkit.cameras import from_colmap, from_idr, from_nerf_transforms
from geomkit.io import load_json, load_npz, read_depth_png, read_image, read_mask, read_ply
from geomkit.mesh import contains, is_watertight
from geomkit.synth import FAMILIES, cached_scene, camera_path, generate_scene, make_shape
from geomkit.synth.camera_paths import view_directions
from geomkit.synth.scene import DEPTH_SCALE
from tests.helpers import assert_close

SMALL = {"views": 6, "image_size": (48, 64), "mesh_resolution": 64, "seed": 3}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_shapes_are_watertight_in_the_unit_box_and_match_their_sdf(name):
    shape = make_shape(name, seed=1)
    mesh = shape.mesh(64)
    assert is_watertight(mesh)
    assert mesh.vertices.min() >= -0.5 and mesh.vertices.max() <= 0.5
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (4000, 3))
    sdf = shape.sdf(points)
    far = np.abs(sdf) > 2.0 / 63  # a couple of voxels from the surface
    assert (contains(mesh, points[far]) == (sdf[far] < 0)).mean() > 0.995
    colors = shape.color(points)
    assert colors.shape == (4000, 3) and colors.min() >= 0 and colors.max() <= 1


def test_shape_families_vary_with_the_seed():
    a, b = make_shape("chair", 0).mesh(48), make_shape("chair", 1).mesh(48)
    assert len(a.faces) != len(b.faces) or not np.allclose(a.vertices, b.vertices)


@pytest.mark.parametrize("kind", ["orbit", "hemisphere", "random", "sphere"])
def test_camera_paths_look_at_the_origin(kind):
    cameras = camera_path(kind, 10, (40, 60), distance=2.5, seed=2)
    uv, depth = cameras.project(torch.zeros(1, 3))
    assert_close(uv[:, 0], torch.tensor([[30.0, 20.0]]).expand(10, 2), atol=1e-4)
    assert_close(depth[:, 0], torch.full((10,), 2.5), atol=1e-5)
    assert_close(cameras.camera_center().norm(dim=1), torch.full((10,), 2.5), atol=1e-5)
    if kind == "hemisphere":
        assert (view_directions(kind, 50)[:, 2] > 0).all() and len(view_directions(kind, 50)) == 50


def dilate(mask):
    """One-pixel (3x3) dilation: pixels are sampled at their centres, so a surface point near
    the silhouette may fall in a pixel whose centre the surface just misses."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([padded[r : r + h, c : c + w] for r in range(3) for c in range(3)], axis=0)


def surface_points_on_mask(cameras, points, masks):
    """Share of the in-image projections of surface points that land on (one-pixel dilated)
    mask pixels."""
    uv, _ = cameras.project(torch.as_tensor(points, dtype=cameras.R.dtype)[None])
    on_mask = []
    for i in range(len(cameras)):
        h, w = masks[i].shape
        col = np.floor(uv[i, :, 0].numpy()).astype(int)
        row = np.floor(uv[i, :, 1].numpy()).astype(int)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        on_mask.append(dilate(masks[i])[row[inside], col[inside]])
    return np.concatenate(on_mask).mean()


def depth_pixels_on_surface(cameras, depths, points, tolerance=0.01):
    """Share of covered depth pixels that, unprojected at their centres, lie within
    ``tolerance`` of the ground-truth surface samples."""
    tree = cKDTree(points)
    shares = []
    for i in range(len(cameras)):
        rows, cols = np.nonzero(depths[i] > 0)
        uv = torch.from_numpy(np.stack([cols + 0.5, rows + 0.5], 1)).to(cameras.R.dtype)
        z = torch.from_numpy(depths[i][rows, cols]).to(cameras.R.dtype)
        world = cameras[i].unproject(uv[None], z[None])[0].numpy()
        shares.append(tree.query(world)[0] < tolerance)
    return np.concatenate(shares).mean()


def gt_points(folder):
    return read_ply(folder / "gt_points.ply").points


def test_nerf_layout_round_trip(tmp_path):
    out = generate_scene(tmp_path / "nerf", "torus", layout="nerf", test_views=2, **SMALL)
    meta = load_json(out / "transforms_train.json", required_keys=("camera_angle_x", "frames"))
    cameras, paths = from_nerf_transforms(meta)
    expected = camera_path("hemisphere", 6, (48, 64), seed=3)
    assert_close(cameras.R, expected.R, atol=1e-5)
    assert_close(cameras.T, expected.T, atol=1e-5)
    assert_close(cameras.focal_length, expected.focal_length, atol=1e-4)
    # camera_angle_x alone (the original NeRF loader) gives the same focal length.
    blender, _ = from_nerf_transforms(
        {"camera_angle_x": meta["camera_angle_x"], "frames": meta["frames"]}, image_size=(48, 64)
    )
    assert_close(blender.focal_length, cameras.focal_length, atol=1e-4)
    masks, depths = [], []
    for path in paths:
        rgb, alpha = read_image(out / f"{path}.png", with_alpha=True)
        masks.append(alpha > 0.5)
        depths.append(read_depth_png(out / f"{path}_depth.png", DEPTH_SCALE))
    assert surface_points_on_mask(cameras, gt_points(out), masks) > 0.999
    assert depth_pixels_on_surface(cameras, depths, gt_points(out)) > 0.999
    test_meta = load_json(out / "transforms_test.json")
    assert len(test_meta["frames"]) == 2 and (out / "val" / "r_1.png").exists()


def test_volsdf_layout_round_trip(tmp_path):
    out = generate_scene(tmp_path / "volsdf", "chair", layout="volsdf", **SMALL)
    arrays = load_npz(out / "cameras.npz")
    world = np.stack([arrays[f"world_mat_{i}"] for i in range(6)])
    scale = np.stack([arrays[f"scale_mat_{i}"] for i in range(6)])
    cameras = from_idr(torch.from_numpy(world), torch.from_numpy(scale), (48, 64))
    # The cameras live in the normalised frame: map the ground truth there first.
    points = gt_points(out).astype(np.float64)
    normalised = (points - scale[0, :3, 3]) / scale[0, 0, 0]
    assert np.linalg.norm(normalised, axis=1).max() < 1.0
    masks = [read_mask(out / "mask" / f"{i:03d}.png") for i in range(6)]
    depths = [read_depth_png(out / "depth" / f"{i:06d}.png", DEPTH_SCALE) for i in range(6)]
    assert surface_points_on_mask(cameras, normalised, masks) > 0.999
    assert (
        depth_pixels_on_surface(
            cameras,
            [d / scale[0, 0, 0] for d in depths],
            normalised,
            tolerance=0.01 / scale[0, 0, 0],
        )
        > 0.999
    )
    assert read_image(out / "image" / "000005.png").shape == (48, 64, 3)


@pytest.mark.parametrize("model", ["sparse/0", "sparse_txt/0"])
def test_colmap_layout_round_trip(tmp_path, model):
    out = generate_scene(tmp_path / "colmap", "snowman", layout="colmap", **SMALL)
    cameras, names = from_colmap(out / model, dtype=torch.float64)
    assert names == [f"{i:04d}.png" for i in range(6)]
    masks = [read_mask(out / "masks" / name) for name in names]
    depths = [read_depth_png(out / "depths" / name, DEPTH_SCALE) for name in names]
    assert surface_points_on_mask(cameras, gt_points(out), masks) > 0.999
    assert depth_pixels_on_surface(cameras, depths, gt_points(out)) > 0.999


def test_cache_is_deterministic_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMKIT_SYNTH_CACHE", str(tmp_path / "cache"))
    settings = {
        "shape": "box",
        "views": 2,
        "layout": "colmap",
        "image_size": (32, 32),
        "mesh_resolution": 32,
    }
    first = cached_scene(**settings)
    again = cached_scene(**settings)
    assert first == again
    fresh = generate_scene(tmp_path / "fresh", **settings)
    for name in ("images/0001.png", "gt_mesh.ply", "sparse/0/images.bin"):
        assert (first / name).read_bytes() == (fresh / name).read_bytes(), name


def test_cli_writes_and_refuses_to_overwrite(tmp_path):
    command = [
        sys.executable,
        "-m",
        "geomkit.synth",
        "--shape",
        "sphere",
        "--views",
        "3",
        "--format",
        "nerf",
        "--out",
        str(tmp_path / "s"),
        "--size",
        "32",
    ]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "s" / "transforms_train.json").exists()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    bad = subprocess.run([*command[:4], "teapot", *command[5:]], capture_output=True, text=True)
    assert bad.returncode == 2 and "teapot" in bad.stderr
