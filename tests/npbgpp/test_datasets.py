"""Readers of the authors' layouts: cameras, images, masks, clouds, splits and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from geomkit.errors import InputError
from geomkit.io import load_npz, read_point_cloud, save_npz, write_ply
from geomkit.structures import PointCloud
from npbgpp.config import CONFIG_DIR
from npbgpp.datasets import build_scene, scene_splits
from npbgpp.synthetic import LAYOUTS, scene_views
from tests.helpers import assert_close, assert_raises_naming
from tests.npbgpp.test_synthetic import scene

# JPEG layouts (scannet images, h3ds images and masks) lose a little to compression.
IMAGE_TOLERANCE = {"dtu": 0.5 / 255, "blender": 1.0 / 255, "colmap": 0.5 / 255}


def config(layout: str, folder: Path, **extra) -> dict:
    return {
        "type": layout,
        "data_root": str(folder.parent),
        "scene_name": folder.name,
        "val_indices": [2],
        "holdout_indices": [5, 7],
        "pc_name": "mvs_pc.ply",
        **extra,
    }


def copy_scene(layout: str, tmp_path: Path) -> Path:
    target = tmp_path / f"{layout}_copy"
    shutil.copytree(scene(layout), target)
    return target


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_cameras_images_masks(layout):
    folder = scene(layout)
    truth = scene_views(folder)
    loaded = build_scene(config(layout, folder))
    assert len(loaded) == len(truth) and loaded.name == folder.name
    # The cameras are the ones rendered (DTU/H3DS through K [R|t] decomposition).
    for field in ("R", "T", "focal_length", "principal_point"):
        assert_close(
            getattr(loaded.cameras, field), getattr(truth.cameras, field), atol=2e-5, what=field
        )
    assert loaded.cameras.image_size.tolist() == [[32, 32]] * len(truth)
    # Surface points project onto the foreground of the true masks (grown by one pixel: at
    # 32 x 32 a silhouette pixel's centre may miss the surface its corner holds).
    points = torch.as_tensor(read_point_cloud(folder / "gt_points.ply").points, dtype=torch.float32)
    uv, depth = loaded.cameras.project(points)
    inside = (uv >= 0).all(-1) & (uv < 32).all(-1)
    pixel = uv.floor().long().clamp(0, 31)
    mask = torch.nn.functional.max_pool2d(torch.as_tensor(truth.mask).float()[:, None], 3, 1, 1)
    on_mask = mask[:, 0][torch.arange(len(truth))[:, None], pixel[..., 1], pixel[..., 0]]
    assert bool(inside.all()) and float(depth.min()) > 1.0
    assert float(on_mask.mean()) > 0.998
    for i in (0, len(truth) - 1):
        expected = torch.as_tensor(np.where(truth.mask[i][..., None], truth.rgb[i], 1.0))
        image = loaded.image(i)
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        if layout in IMAGE_TOLERANCE:
            assert_close(image.permute(1, 2, 0), expected, atol=IMAGE_TOLERANCE[layout] + 1e-6)
        else:
            assert float((image.permute(1, 2, 0) - expected).abs().mean()) < 0.02
        m = loaded.mask(i)
        assert m.shape == (1, 32, 32) and m.dtype == torch.bool
        if loaded.has_mask:
            agree = (m[0] == torch.as_tensor(truth.mask[i])).float().mean()
            assert float(agree) > (1.0 if layout != "h3ds" else 0.99) - 1e-9
        else:
            assert bool(m.all())


def test_splits_and_names():
    dtu = build_scene(config("dtu", scene("dtu")))
    assert dtu.split("val") == [2] and dtu.split("holdout") == [5, 7]
    assert dtu.split("train") == [0, 1, 3, 4, 6, 8, 9] and dtu.split("all") == list(range(10))
    blender = build_scene(config("blender", scene("blender")))
    assert blender.names[:2] == ["train-r_0", "train-r_1"] and blender.names[8] == "val-r_0"
    assert blender.names[-1] == "test-r_2"
    scannet = build_scene(config("scannet", scene("scannet")))
    assert scannet.names == [str(i) for i in range(10)]


def original_config(name: str):
    return OmegaConf.load(CONFIG_DIR / "datasets" / f"{name}.yaml")


def test_split_lists_equal_the_originals():
    dtu = scene_splits(original_config("dtu_one_scene"), 49, "scan118")
    assert dtu["val"] == [5, 15, 25, 35, 45]
    assert dtu["holdout"] == [7, 12, 17, 22, 27, 32, 37, 42, 47]
    assert dtu["train"] == [i for i in range(49) if i not in dtu["val"] + dtu["holdout"]]
    assert len(dtu["train"]) == 35
    h3ds = scene_splits(original_config("h3ds_one_scene"), 32, "5ae021f2805c0854")
    assert h3ds["val"] == [7, 14, 21, 28] and h3ds["holdout"] == [5, 10, 15, 20, 25, 30]
    removed = (5, 7, 10, 14, 15, 20, 21, 25, 28, 30)
    assert h3ds["train"] == [i for i in range(32) if i not in removed]
    nerf = scene_splits(original_config("nerf_blender_one_scene"), 400, "chair")
    assert nerf["train"] == list(range(100))
    assert nerf["val"] == list(range(100, 200, 10)) and nerf["holdout"] == list(range(200, 400))
    colmap = scene_splits(original_config("colmap_one_scene"), 100, "scene")
    assert colmap["val"] == list(range(5, 100, 10))
    assert colmap["holdout"] == list(range(10, 100, 10))
    assert len(colmap["train"]) == 100 - 19
    # ScanNet one scene: holdout = numpy.linspace(10, N - 10, 10, dtype=int), val = holdout - 5.
    # (numpy's int conversion truncates: 10 + 80 k / 9).
    scannet = scene_splits(original_config("scannet_one_scene"), 100, "scene0000_00")
    assert scannet["holdout"] == [10, 18, 27, 36, 45, 54, 63, 72, 81, 90]
    assert scannet["val"] == [5, 13, 22, 31, 40, 49, 58, 67, 76, 85]
    pretrain = scene_splits(original_config("scannet_pretrain"), 95, "scene0002_00")
    assert pretrain["holdout"] == list(range(10, 91, 10)) and pretrain["all"] == list(range(95))


def test_test_scene_reads_its_own_files(tmp_path):
    """The original's NeRF 'hotdog_holdout' read drums' files; here a scene reads its own."""
    root = tmp_path / "nerf"
    shutil.copytree(scene("blender"), root / "hotdog")
    cfg = OmegaConf.merge(original_config("nerf_blender_pretrain"), {"data_root": str(root)})
    cfg.input_indices = None
    cfg.val_indices, cfg.holdout_indices = [8], [11, 12]
    assert list(cfg.test_scenes) == ["hotdog", "ficus", "mic"]
    hotdog = build_scene(cfg, "hotdog")
    assert hotdog.root == root / "hotdog" and hotdog.pc_path == root / "hotdog" / "mvs_pc.ply"


def test_dtu_intrinsics_are_averaged(tmp_path):
    folder = copy_scene("dtu", tmp_path)
    arrays = load_npz(folder / "cameras.npz")
    K4 = np.eye(4)
    K4[0, 0] = K4[1, 1] = 1.1  # view 0's focal length 10% longer, principal point shifted
    K4[0, 2] = 2.0
    arrays["world_mat_0"] = K4 @ arrays["world_mat_0"]
    save_npz(folder / "cameras.npz", **arrays)
    loaded = build_scene(config("dtu", folder))
    truth = scene_views(scene("dtu")).cameras
    f, c = float(truth.focal_length[0, 0]), float(truth.principal_point[0, 0])
    assert_close(loaded.cameras.focal_length[:, 0], torch.full((10,), f * 1.01), rtol=1e-5)
    # c' = 1.1 (c - 0.5) + 2 + 0.5 for view 0; the mean over 10 views.
    expected_c = c + ((1.1 * (c - 0.5) + 2.5) - c) / 10
    assert_close(loaded.cameras.principal_point[:, 0], torch.full((10,), expected_c), atol=1e-4)
    assert float(loaded.cameras.skew.abs().max()) == 0


def test_h3ds_views_file_selects_views(tmp_path):
    folder = copy_scene("h3ds", tmp_path)
    (folder / "views.txt").write_text("1, 3, 4, 8\n")
    loaded = build_scene(config("h3ds", folder, val_indices=[1], holdout_indices=[2]))
    truth = scene_views(scene("h3ds"))
    assert loaded.names == ["0001", "0003", "0004", "0008"]
    assert_close(loaded.cameras.T, truth.cameras.T[[1, 3, 4, 8]], atol=2e-5)
    assert loaded.split("train") == [0, 3]


def test_point_cloud_subsample_and_noise():
    folder = scene("dtu")
    full = torch.as_tensor(read_point_cloud(folder / "mvs_pc.ply").points, dtype=torch.float32)
    loaded = build_scene(config("dtu", folder, n_point=1000))
    expected = full[torch.randperm(3000, generator=torch.Generator().manual_seed(123))[:1000]]
    assert loaded.points.dtype == torch.float32
    assert_close(loaded.points, expected, atol=0)
    noisy = build_scene(config("dtu", folder, noise_sigma=0.01)).points
    assert 0.008 < float((noisy - full).std()) < 0.012


def test_scannet_margin_is_empty():
    loaded = build_scene(config("scannet", scene("scannet"), image_margin=4))
    empty = loaded.empty(3)[0]
    assert empty.shape == (32, 32) and int(empty.sum()) == 32 * 32 - 24 * 24
    assert not bool(empty[4:28, 4:28].any()) and bool(empty[:4].all() and empty[:, 28:].all())
    assert not bool(build_scene(config("dtu", scene("dtu"))).empty(3).any())


# ----------------------------------------------------------------------------- errors


def one_line_error(call, *fragments):
    message = assert_raises_naming(InputError, call, *fragments)
    assert "\n" not in message
    return message


def test_missing_image_is_named(tmp_path):
    folder = copy_scene("dtu", tmp_path)
    (folder / "image" / "000004.png").rename(folder / "image" / "000010.png")
    one_line_error(lambda: build_scene(config("dtu", folder)), "000004.png")
    folder = copy_scene("blender", tmp_path)
    (folder / "val" / "r_1.png").unlink()
    one_line_error(lambda: build_scene(config("blender", folder)), "r_1.png", "missing")


def test_camera_image_count_mismatch(tmp_path):
    folder = copy_scene("scannet", tmp_path)
    shutil.copy(folder / "images" / "0.jpg", folder / "images" / "10.jpg")
    one_line_error(
        lambda: build_scene(config("scannet", folder)), "11 images", "10 cameras", "extrinsics.npy"
    )
    folder = copy_scene("dtu", tmp_path)
    (folder / "image" / "000009.png").unlink()
    one_line_error(lambda: build_scene(config("dtu", folder)), "cameras.npz", "10 cameras", "9")


@pytest.mark.parametrize("bad", ["empty", "nan"])
def test_bad_point_cloud(tmp_path, bad):
    folder = copy_scene("colmap", tmp_path)
    points = np.zeros((0, 3), np.float32) if bad == "empty" else np.array([[0, np.nan, 0]] * 3)
    if bad == "empty":
        write_ply(folder / "mvs_pc.ply", PointCloud(points))
    else:  # geomkit refuses to write NaN; write the PLY by hand
        header = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        header += "property float z\nend_header\n"
        (folder / "mvs_pc.ply").write_text(header + "0 nan 0\n" * 3)
    loaded = build_scene(config("colmap", folder))
    fragment = "no points" if bad == "empty" else "NaN"
    one_line_error(lambda: loaded.points, "mvs_pc.ply", fragment)


def test_missing_point_cloud_says_how_to_make_one(tmp_path):
    folder = copy_scene("dtu", tmp_path)
    (folder / "mvs_pc.ply").unlink()
    loaded = build_scene(config("dtu", folder))
    one_line_error(
        lambda: loaded.points,
        str(folder / "mvs_pc.ply"),
        f"python -m npbgpp.make_point_cloud {folder} --out {folder / 'mvs_pc.ply'}",
    )


def test_holdout_index_out_of_range():
    folder = scene("dtu")
    message = one_line_error(
        lambda: build_scene(config("dtu", folder, holdout_indices=[7, 12, 47])),
        "datasets.holdout_indices",
        "[12, 47]",
        "10 views",
    )
    assert folder.name in message
    one_line_error(
        lambda: build_scene(config("dtu", folder, val_indices=[5], holdout_indices=[5])),
        "both",
    )


def test_missing_scene_folder_and_unknown_type(tmp_path):
    one_line_error(lambda: build_scene(config("dtu", tmp_path / "nope")), "nope", "data_root")
    from geomkit.errors import ConfigError

    with pytest.raises(ConfigError, match="datasets.type"):
        build_scene(config("llff", scene("dtu")))
