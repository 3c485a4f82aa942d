"""Generated scenes are written in the authors' layouts with exact cameras and a surface cloud."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from geomkit.cameras import to_opencv
from geomkit.errors import OutputExistsError
from geomkit.io import load_npz, read_image, read_point_cloud
from npbgpp.synthetic import LAYOUTS, cached_scene, scene_views, write_scene
from tests.helpers import assert_close

# Tiny scenes shared by the npbgpp dataset tests (cached on disk after the first run).
SETTINGS = {"views": 10, "image_size": (32, 32), "mesh_resolution": 64, "n_points": 3000}
BLENDER = {**SETTINGS, "views": 8, "test_views": 3}


def scene(layout: str, **overrides):
    settings = BLENDER if layout == "blender" else SETTINGS
    return cached_scene(layout, **{**settings, **overrides})


EXPECTED_FILES = {
    "dtu": ["cameras.npz", "image/000000.png", "image/000009.png", "mask/000.png", "mask/009.png"],
    "scannet": ["intrinsics.npy", "extrinsics.npy", "images/0.jpg", "images/9.jpg", "full.ply"],
    "h3ds": ["cameras.npz", "views.txt", "image/img_0000.jpg", "mask/mask_0009.jpg"],
    "blender": [
        "transforms_train.json",
        "transforms_val.json",
        "transforms_test.json",
        "train/r_7.png",
        "val/r_2.png",
        "test/r_2.png",
    ],
    "colmap": ["sparse/cameras.bin", "sparse/images.bin", "images/0000.png", "images/0009.png"],
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_files_and_surface_cloud(layout):
    folder = scene(layout)
    for name in EXPECTED_FILES[layout] + ["mvs_pc.ply", "gt_mesh.ply", "scene.json"]:
        assert (folder / name).is_file(), name
    points = read_point_cloud(folder / "mvs_pc.ply").points
    assert points.shape == (3000, 3)
    # Sampled from the true surface: every point within the object's box, none at the origin.
    assert np.abs(points).max() <= 0.5 and np.linalg.norm(points, axis=1).min() > 0.05


def test_scannet_files_hold_npbg_layout():
    folder = scene("scannet")
    intrinsics = np.load(folder / "intrinsics.npy", allow_pickle=True).item()
    assert set(intrinsics) == {"height", "width", "K"} and intrinsics["height"] == 32
    extrinsics = np.load(folder / "extrinsics.npy")
    views = scene_views(folder)
    R, t, K = to_opencv(views.cameras.to(dtype=torch.float64))
    assert extrinsics.shape == (10, 4, 4)
    assert_close(extrinsics[:, :3, :3], R.numpy(), atol=1e-12)
    assert_close(extrinsics[:, :3, 3], t.numpy(), atol=1e-12)
    assert_close(intrinsics["K"][:2, 2], [15.5, 15.5], atol=0)  # centre: (W - 1) / 2
    assert_close(intrinsics["K"][0, 0], float(K[0, 0, 0]), atol=1e-9)
    # Every surface point is beyond NPBG++'s near plane (view depth 1) in every camera.
    points = torch.as_tensor(read_point_cloud(folder / "full.ply").points, dtype=torch.float64)
    depth = (points @ R.transpose(1, 2) + t[:, None])[..., 2]
    assert float(depth.min()) > 1.1
    assert pickle.loads(pickle.dumps(intrinsics))["width"] == 32


def test_blender_splits_are_distinct_views_with_alpha():
    folder = scene("blender")
    metas = {
        s: json.loads((folder / f"transforms_{s}.json").read_text())
        for s in ("train", "val", "test")
    }
    assert [len(m["frames"]) for m in metas.values()] == [8, 3, 3]
    val = np.array([f["transform_matrix"] for f in metas["val"]["frames"]])
    test = np.array([f["transform_matrix"] for f in metas["test"]["frames"]])
    assert np.abs(val - test).max() > 0.1  # val and test are different cameras
    assert set(metas["train"]) == {"camera_angle_x", "frames"}
    rgb, alpha = read_image(folder / "train/r_0.png", with_alpha=True)
    views = scene_views(folder)
    assert_close(alpha, views.mask[0].astype(np.float32), atol=0)
    assert_close(rgb[views.mask[0]], views.rgb[0][views.mask[0]], atol=0.5 / 255 + 1e-6)


def test_dtu_world_mats_project_like_the_cameras():
    folder = scene("dtu")
    views = scene_views(folder)
    arrays = load_npz(folder / "cameras.npz")
    points = torch.tensor([[0.1, -0.05, 0.2], [-0.15, 0.1, -0.3]], dtype=torch.float64)
    uv, _ = views.cameras.to(dtype=torch.float64)[3].project(points)
    P = arrays["world_mat_3"][:3]
    projected = np.c_[points.numpy(), np.ones(2)] @ P.T
    assert_close(projected[:, :2] / projected[:, 2:] + 0.5, uv[0].numpy(), atol=1e-9)


def test_h3ds_views_file_lists_every_view():
    folder = scene("h3ds")
    assert (folder / "views.txt").read_text().split() == [str(i) for i in range(10)]
    assert sorted(load_npz(folder / "cameras.npz")) == sorted(f"world_mat_{i}" for i in range(10))


def test_write_scene_refuses_to_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        write_scene(tmp_path, "dtu", views=2, image_size=(8, 8), mesh_resolution=32)
    assert (tmp_path / "keep.txt").read_text() == "x"
    with pytest.raises(ValueError, match="layout"):
        write_scene(tmp_path / "new", "llff")


def test_cached_scene_is_reused():
    first = scene("colmap")
    assert scene("colmap") == first and first.name.startswith("npbgpp-colmap-")
    assert scene("colmap", seed=1) != first
