"""Training crops keep the projection consistent; items, sources and batches as specified."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geomkit.io import read_point_cloud
from npbgpp.datasets import ViewSceneWrapper, build_scene, collate_items
from npbgpp.datasets.view_wrapper import crop_camera, shift_candidates
from npbgpp.synthetic import cached_scene
from tests.helpers import assert_close

ITEM_KEYS = {"image", "mask", "empty", "camera", "index"}


def dtu48():
    folder = cached_scene("dtu", views=10, image_size=(48, 48), mesh_resolution=64, n_points=3000)
    cfg = {
        "type": "dtu",
        "data_root": str(folder.parent),
        "val_indices": [2],
        "holdout_indices": [5, 7],
    }
    return build_scene(cfg, folder.name), folder


def sample(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """(C, M) bilinear samples of (C, H, W) at (M, 2) corner-origin pixel positions."""
    _, height, width = image.shape
    grid = torch.stack((2 * uv[:, 0] / width - 1, 2 * uv[:, 1] / height - 1), -1)
    return F.grid_sample(image[None], grid[None, None], align_corners=False)[0, :, 0]


def test_crop_shows_what_its_camera_sees():
    scene, _ = dtu48()
    wrapper = ViewSceneWrapper(
        scene,
        "train",
        image_size=24,
        random_zoom=(0.5, 2.0),
        random_shift=True,
        num_samples=12,
        generator=torch.Generator().manual_seed(0),
    )
    zooms, any_outside = [], False
    for k in range(12):
        item = wrapper[k]
        full = scene.cameras[item["index"]]
        crop = item["camera"]
        assert crop.image_size.tolist() == [[24, 24]] and item["image"].shape == (3, 24, 24)
        zoom = float(crop.focal_length[0, 0] / full.focal_length[0, 0])
        zooms.append(zoom)
        # World points on the rays of the crop's pixel centres, seen by the full camera.
        rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
        centres = torch.stack((cols.flatten() + 0.5, rows.flatten() + 0.5), -1)
        world = crop.unproject(centres, torch.full((576,), 2.0))
        uv, _ = full.project(world)
        expected = sample(torch.cat([scene.image(item["index"]), torch.ones(1, 48, 48)]), uv[0])
        inside = expected[3] > 0.999  # away from the image border
        got = item["image"].reshape(3, -1)
        assert_close(got[:, inside], expected[:3, inside], atol=1e-5, what=f"item {k}")
        # Pixels with no source data are empty (DTU: unless foreground), and black.
        outside = expected[3] < 0.5
        any_outside |= bool(outside.any())
        assert bool(item["empty"].flatten()[outside].all())
        assert bool((item["image"].reshape(3, -1)[:, outside] == 0).all())
    assert 0.5 <= min(zooms) and max(zooms) <= 2.0 and max(zooms) - min(zooms) > 0.5
    assert any_outside, "no crop reached beyond the image: the empty check never ran"


def test_crop_keeps_surface_points_on_the_mask():
    scene, folder = dtu48()
    wrapper = ViewSceneWrapper(
        scene,
        "train",
        image_size=(24, 32),
        random_shift=True,
        num_samples=6,
        generator=torch.Generator().manual_seed(1),
    )
    points = torch.as_tensor(read_point_cloud(folder / "gt_points.ply").points[::20])
    for k in range(6):
        item = wrapper[k]
        uv, _ = item["camera"].project(points.float())
        inside = ((uv[0] >= 0) & (uv[0] < torch.tensor([32.0, 24.0]))).all(-1)
        assert int(inside.sum()) > 50  # the crop is centred on the object
        mask = F.max_pool2d(item["mask"].float()[None], 3, 1, 1)[0, 0]
        pixel = uv[0][inside].floor().long()
        assert float(mask[pixel[:, 1], pixel[:, 0]].mean()) > 0.99


def test_shift_candidates_follow_the_original_rule():
    mask = torch.zeros(40, 48, dtype=torch.bool)
    mask[16, 24] = mask[0, 0] = mask[32, 40] = True  # on the 8-pixel grid
    mask[17, 25] = True  # off the grid: never a centre
    rows, cols = shift_candidates(mask, (16, 16))
    # Crop centres must keep the crop inside: rows 8..31, cols 8..39; the grid pixels (0, 0)
    # and (32, 40) fail, the four extreme centres stay.
    pairs = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert pairs == [(8, 8), (8, 39), (16, 24), (31, 8), (31, 39)]


def test_crop_camera_formula():
    scene, _ = dtu48()
    full = scene.cameras[3]
    crop = crop_camera(full, (20.5, 30.5), (16, 24), zoom=1.5)
    assert_close(crop.focal_length, full.focal_length * 1.5, rtol=1e-6)
    expected = torch.tensor([[12.0, 8.0]]) + 1.5 * (
        full.principal_point - torch.tensor([[20.5, 30.5]])
    )
    assert_close(crop.principal_point, expected, atol=1e-5)
    assert crop.image_size.tolist() == [[16, 24]] and torch.equal(crop.R, full.R)


def test_sources_are_full_input_views_never_the_target():
    scene, _ = dtu48()
    wrapper = ViewSceneWrapper(
        scene,
        "train",
        image_size=24,
        random_shift=True,
        num_samples=14,
        selection_count=3,
        generator=torch.Generator().manual_seed(2),
    )
    assert len(wrapper) == 14 and wrapper.inputs == [0, 1, 3, 4, 6, 8, 9]
    seen_targets = set()
    for k in range(14):
        item = wrapper[k]
        assert set(item) == ITEM_KEYS | {"sources"} and len(item["sources"]) == 3
        seen_targets.add(item["index"])
        indices = [s["index"] for s in item["sources"]]
        assert item["index"] not in indices and len(set(indices)) == 3
        assert set(indices) <= set(wrapper.inputs)
        for source in item["sources"]:
            assert set(source) == ITEM_KEYS and source["image"].shape == (3, 48, 48)
            assert torch.equal(source["image"], scene.image(source["index"]))
            assert_close(source["camera"].T, scene.cameras.T[[source["index"]]], atol=0)
    assert seen_targets == set(wrapper.inputs)


def test_val_and_test_items_are_full_views():
    scene, _ = dtu48()
    val = ViewSceneWrapper(scene, "val")
    test = ViewSceneWrapper(scene, "test", selection_count=3)
    assert len(val) == 1 and len(test) == 2
    item = test[1]
    assert set(item) == ITEM_KEYS and item["index"] == 7
    assert torch.equal(item["image"], scene.image(7)) and torch.equal(item["mask"], scene.mask(7))
    assert torch.equal(item["empty"], torch.zeros(1, 48, 48, dtype=torch.bool))
    assert_close(item["camera"].focal_length, scene.cameras.focal_length[[7]], atol=0)


def test_scannet_margin_and_no_mask_in_items():
    folder = cached_scene(
        "scannet", views=10, image_size=(32, 32), mesh_resolution=64, n_points=3000
    )
    cfg = {
        "type": "scannet",
        "data_root": str(folder.parent),
        "val_indices": [2],
        "holdout_indices": [5, 7],
        "image_margin": 4,
        "pc_name": "full.ply",
    }
    scene = build_scene(cfg, folder.name)
    item = ViewSceneWrapper(scene, "test")[0]
    assert int(item["empty"].sum()) == 32 * 32 - 24 * 24 and bool(item["mask"].all())
    # An uncropped training item keeps the margin; a centre crop of 24 loses it exactly.
    train = ViewSceneWrapper(scene, "train", image_size=24, num_samples=1)
    crop = train[0]
    assert not bool(crop["empty"].any()) and bool(crop["mask"].all())
    assert_close(crop["image"], scene.image(0)[:, 4:28, 4:28], atol=1e-6)


def test_collate_items_batches_targets_and_sources():
    scene, _ = dtu48()
    wrapper = ViewSceneWrapper(
        scene,
        "train",
        image_size=24,
        random_shift=True,
        num_samples=2,
        selection_count=2,
        generator=torch.Generator().manual_seed(3),
    )
    items = [wrapper[0], wrapper[1]]
    batch = collate_items(items)
    assert batch["image"].shape == (2, 3, 24, 24) and batch["mask"].shape == (2, 1, 24, 24)
    assert batch["empty"].dtype == torch.bool and len(batch["camera"]) == 2
    assert batch["index"].tolist() == [items[0]["index"], items[1]["index"]]
    assert batch["num_sources"] == 2
    sources = batch["sources"]
    assert sources["image"].shape == (4, 3, 48, 48) and len(sources["camera"]) == 4
    expected = [s["index"] for it in items for s in it["sources"]]
    assert sources["index"].tolist() == expected  # item-major
    assert_close(batch["camera"].focal_length[1], items[1]["camera"].focal_length[0], atol=0)
