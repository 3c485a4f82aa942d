"""cocoinr.data.SceneDataset on a generated VolSDF scene (48x64, 6 views)."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
import torch

from cocoinr.data import SceneDataset
from geomkit.errors import ConfigError, InputError
from geomkit.io import read_image, read_mask, save_npz, write_image
from geomkit.synth.generate import cached_scene
from tests.helpers import assert_close

H, W, VIEWS = 48, 64, 6


@pytest.fixture(scope="module")
def source_scene():
    return cached_scene(shape="sphere", views=VIEWS, layout="volsdf", image_size=(H, W))


@pytest.fixture
def scene(source_scene, tmp_path):
    """A writable copy: the data folder is tmp_path, the scene 'scan1'."""
    shutil.copytree(source_scene, tmp_path / "scan1")
    return tmp_path / "scan1"


def _cameras(scene) -> dict:
    with np.load(scene / "cameras.npz") as archive:
        return dict(archive)


def _original_rays(world_mat, scale_mat, uv):
    """The original's rays: decompose P, lift integer (col, row) with inv(K), pose to world."""
    K, R, centre_h = cv2.decomposeProjectionMatrix((world_mat @ scale_mat)[:3, :4])[:3]
    K = K / K[2, 2]
    pose = np.eye(4)
    pose[:3, :3] = R.T
    pose[:3, 3] = centre_h[:3, 0] / centre_h[3, 0]
    lifted = np.linalg.inv(K) @ np.concatenate([uv.T, np.ones((1, len(uv)))])
    world = (pose @ np.concatenate([lifted, np.ones((1, len(uv)))]))[:3].T
    directions = world - pose[:3, 3]
    return pose[:3, 3], directions / np.linalg.norm(directions, axis=1, keepdims=True)


def test_reads_images_masks_and_cameras(scene):
    data = SceneDataset(scene.parent, "scan1")
    assert data.n_images == VIEWS and data.image_size == (H, W)
    assert data.images.shape == (VIEWS, H * W, 3) and data.images.dtype == torch.float32
    files = sorted((scene / "image").iterdir())
    assert_close(data.images[3], read_image(files[3]).reshape(-1, 3), what="image 3")
    masks = sorted((scene / "mask").iterdir())
    assert data.masks.dtype == torch.bool
    assert torch.equal(data.masks[2], torch.from_numpy(read_mask(masks[2]).reshape(-1)))
    assert len(data.cameras) == VIEWS and data.cameras.image_size.tolist() == [[H, W]] * VIEWS
    assert_close(data.scale_mat, _cameras(scene)["scale_mat_0"], what="scale_mat")
    assert data.train_idx == list(range(VIEWS)) and data.test_idx == []


def test_rays_match_the_original_formula(scene):
    arrays = _cameras(scene)
    skew = np.eye(4)
    skew[0, 1] = 0.05  # K gets a skew (and a shifted cx): the original keeps it
    for i in range(VIEWS):
        arrays[f"world_mat_{i}"] = skew @ arrays[f"world_mat_{i}"]
    save_npz(scene / "cameras.npz", **arrays)
    data = SceneDataset(scene.parent, "scan1")
    assert float(data.cameras.skew.abs().min()) > 1.0
    pixels = torch.tensor([0, W - 1, W, 17 * W + 40, H * W - 1])
    for view in (0, 4):
        origins, directions = data.rays(view, pixels)
        uv = np.stack([pixels.numpy() % W, pixels.numpy() // W], 1).astype(np.float64)
        centre, expected = _original_rays(
            arrays[f"world_mat_{view}"], arrays[f"scale_mat_{view}"], uv
        )
        assert origins.shape == directions.shape == (5, 3)
        assert_close(directions, expected, atol=1e-5, what=f"directions of view {view}")
        assert_close(origins, np.broadcast_to(centre, (5, 3)), atol=1e-5, what="origins")
    all_origins, all_directions = data.rays(4)
    assert all_directions.shape == (H * W, 3)
    assert_close(all_directions[pixels], directions, atol=1e-7, what="pixels=None order")


def test_rays_hit_the_object_where_the_mask_is(scene):
    data = SceneDataset(scene.parent, "scan1")
    inside = data.masks[1].nonzero()[:, 0]
    origins, directions = data.rays(1, inside)
    # The scale_mat maps the unit sphere onto the object's bounding sphere (x 1.1).
    closest = origins - (origins * directions).sum(-1, keepdim=True) * directions
    assert float(closest.norm(dim=-1).max()) < 1.0


def test_rgb_and_reproducible_pixel_samples(scene):
    data = SceneDataset(scene.parent, "scan1")
    first = data.sample_pixels(2, 100, torch.Generator().manual_seed(7))
    again = data.sample_pixels(2, 100, torch.Generator().manual_seed(7))
    other = data.sample_pixels(2, 100, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.dtype == torch.long and len(first.unique()) == 100
    assert int(first.min()) >= 0 and int(first.max()) < H * W
    image = read_image(sorted((scene / "image").iterdir())[2])
    rows, cols = first // W, first % W
    assert_close(data.rgb(2, first), image[rows.numpy(), cols.numpy()], what="rgb")
    with pytest.raises(ValueError, match="cannot sample"):
        data.sample_pixels(2, H * W + 1)
    with pytest.raises(ValueError, match=r"pixel indices must lie in \[0, 3072\)"):
        data.rgb(0, torch.tensor([H * W]))


def test_split_file_and_explicit_views(scene, tmp_path):
    split = tmp_path / "toy.toml"
    split.write_text(
        "[scenes.scan1]\nviews = 6\n[scenes.scan1.default_views_configs]\n3 = [4, 1, 3]\n"
    )
    data = SceneDataset(scene.parent, "scan1", split_file=split, num_views=3)
    assert data.train_idx == [1, 3, 4] and data.test_idx == [0, 2, 5]
    data = SceneDataset(scene.parent, "scan1", split_file=split, num_views=3, train_views=[5, 0])
    assert data.train_idx == [0, 5] and data.test_idx == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="split_file and num_views together"):
        SceneDataset(scene.parent, "scan1", split_file=split)
    with pytest.raises(InputError, match=r"train_views holds index 6 but the scene has 6 images"):
        SceneDataset(scene.parent, "scan1", train_views=[6])


def test_img_res(scene):
    assert SceneDataset(scene.parent, "scan1", img_res=[H, W]).image_size == (H, W)
    message = r"images are 48x64 \(HxW\) but img_res is 64x48 \(HxW\); set img_res = \[48, 64\]"
    with pytest.raises(InputError, match=message):
        SceneDataset(scene.parent, "scan1", img_res=(W, H))


def test_rgba_is_cut_to_rgb_and_masks_are_optional(scene):
    path = sorted((scene / "image").iterdir())[0]
    rgb = read_image(path)
    write_image(path, np.concatenate([rgb, np.zeros((H, W, 1))], axis=2))
    shutil.rmtree(scene / "mask")
    data = SceneDataset(scene.parent, "scan1")
    assert data.masks is None
    assert_close(data.images[0], rgb.reshape(-1, 3), what="RGB of an RGBA image")


def test_missing_scene_images_and_cameras(scene):
    with pytest.raises(InputError, match="scene folder not found: .*scan9"):
        SceneDataset(scene.parent, "scan9")
    (scene / "cameras.npz").unlink()
    with pytest.raises(InputError, match="cameras file not found: .*scan1/cameras.npz"):
        SceneDataset(scene.parent, "scan1")
    for path in (scene / "image").iterdir():
        path.rename(path.with_suffix(".txt"))
    with pytest.raises(InputError, match=r"scan1/image: no images"):
        SceneDataset(scene.parent, "scan1")


def test_corrupt_and_mismatched_images_are_named(scene):
    files = sorted((scene / "image").iterdir())
    write_image(files[4], np.zeros((H, W + 1, 3)))
    with pytest.raises(InputError, match=r"000004.png: image is 48x65 \(HxW\) but 000000.png is"):
        SceneDataset(scene.parent, "scan1")
    files[3].write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match=r"000003.png: cannot decode the image"):
        SceneDataset(scene.parent, "scan1")


def test_missing_world_mat_names_the_count(scene):
    arrays = _cameras(scene)
    del arrays["world_mat_5"]
    save_npz(scene / "cameras.npz", **arrays)
    message = r"cameras.npz has world_mat_0..world_mat_4 for 6 images; missing world_mat_5"
    with pytest.raises(InputError, match=message):
        SceneDataset(scene.parent, "scan1")


def test_singular_or_bad_matrices_name_view_and_file(scene):
    arrays = _cameras(scene)
    arrays["world_mat_2"][:, 0] = 0.0
    save_npz(scene / "cameras.npz", **arrays)
    with pytest.raises(InputError, match=r"scan1/cameras.npz: world_mat 2 .* singular"):
        SceneDataset(scene.parent, "scan1")
    arrays["scale_mat_3"] = np.eye(3)
    save_npz(scene / "cameras.npz", **arrays)
    with pytest.raises(InputError, match=r"cameras.npz: scale_mat_3 has shape \(3, 3\)"):
        SceneDataset(scene.parent, "scan1")


def test_differing_scale_mats_warn(scene, caplog):
    arrays = _cameras(scene)
    arrays["scale_mat_1"] = arrays["scale_mat_1"] * 1.01
    save_npz(scene / "cameras.npz", **arrays)
    with caplog.at_level(logging.WARNING, logger="cocoinr.data"):
        SceneDataset(scene.parent, "scan1")
    assert "scale_mat_i differ between views" in caplog.text


def test_mask_count_mismatch(scene):
    sorted((scene / "mask").iterdir())[0].unlink()
    with pytest.raises(InputError, match="scan1/mask: 5 masks for 6 images"):
        SceneDataset(scene.parent, "scan1")
