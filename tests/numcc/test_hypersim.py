"""Hypersim ground truth and samples on a tiny scene laid out like Hypersim's files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from geomkit.errors import OutputExistsError
from numcc import prepare_hypersim
from numcc.data.hypersim import HypersimDataset

H, W = 60, 80
SCALE = 0.5  # metres per asset unit


def write_h5(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle["dataset"] = array


def write_scene(folder, camera_z: float) -> None:
    """A wall at world z = 0 seen by one camera at (0, 0, camera_z) looking down -z (identity
    orientation), two frames; positions in asset units."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    wall = np.stack([(u - W / 2) / 10, (H / 2 - v) / 10, np.zeros_like(u)], -1)
    for frame in range(2):
        name = f"frame.{frame:04d}"
        write_h5(folder / "images" / "scene_cam_00_geometry_hdf5" / f"{name}.position.hdf5", wall)
        image = folder / "images" / "scene_cam_00_final_preview" / f"{name}.tonemap.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(image)
    write_h5(
        folder / "_detail" / "cam_00" / "camera_keyframe_positions.hdf5",
        np.array([[0, 0, camera_z]] * 2, np.float32),
    )
    write_h5(
        folder / "_detail" / "cam_00" / "camera_keyframe_orientations.hdf5",
        np.stack([np.eye(3, dtype=np.float32)] * 2),
    )
    (folder / "_detail" / "metadata_scene.csv").write_text(
        f"parameter_name,parameter_value\nmeters_per_asset_unit,{SCALE}\n"
    )


@pytest.fixture(scope="module")
def hypersim(tmp_path_factory):
    root = tmp_path_factory.mktemp("hypersim")
    table = root / "evermotion_dataset" / "analysis" / "metadata_images_split_scene_v1.csv"
    table.parent.mkdir(parents=True)
    table.write_text(
        "scene_name,camera_name,frame_id,split_partition_name\nai_001_001,cam_00,0,train\nai_002_001,cam_00,0,test\n"
    )
    write_scene(root / "ai_001_001", 4.0)  # the preparation script's layout
    write_scene(root / "evermotion_dataset" / "scenes" / "ai_002_001", 6.0)  # the loader's
    assert prepare_hypersim.main(["--hypersim_path", str(root), "--out", str(root)]) == 0
    return root


def test_ground_truth_files(hypersim):
    gt = torch.load(hypersim / "hypersim_gt_val.pt", weights_only=True)
    assert list(gt) == ["ai_002_001"]
    xyz, rgb = gt["ai_002_001"]
    assert xyz.shape == (2 * 112 * 112, 3) and torch.allclose(
        rgb, torch.full_like(rgb, 120 / 255), atol=0.01
    )
    with pytest.raises(OutputExistsError):  # the CLI prints it as one line, exit 2
        prepare_hypersim.main(["--hypersim_path", str(hypersim), "--out", str(hypersim)])


def test_samples_are_in_the_camera_frame(hypersim):
    dataset = HypersimDataset(hypersim, hypersim / "hypersim_gt_val.pt", train=False)
    sample = dataset[0]
    seen, gt = sample["seen_xyz"], sample["gt_xyz"]
    assert seen.shape == (112, 112, 3) and sample["seen_rgb"].shape == (3, 224, 224)
    assert gt.shape == (30000, 3) and (gt[:, 2] > 0).all()
    # The wall is 6 asset units = 3 m in front: z constant; scaled by the seen points' std.
    assert seen[..., 2].std() < 1e-5 and torch.allclose(gt[:, 2], seen[0, 0, 2].expand(30000))
    finite = seen.reshape(-1, 3)
    assert finite.std(dim=0).mean() == pytest.approx(1.0, abs=1e-4)
    # Image right is +x and image top is -y (x right, y down).
    assert seen[56, -1, 0] > seen[56, 0, 0] and seen[0, 56, 1] < seen[-1, 56, 1]
    assert sample["name"] == ("ai_002_001", "frame.0000.tonemap.jpg")
