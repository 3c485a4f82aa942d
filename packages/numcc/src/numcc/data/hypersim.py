"""Hypersim for NU-MCC: the ground-truth file of a split and the training/evaluation samples.

Hypersim's files (per scene ``ai_XXX_YYY``): ``images/scene_cam_NN_final_preview/frame.FFFF.
tonemap.jpg``, ``images/scene_cam_NN_geometry_hdf5/frame.FFFF.position.hdf5`` (dataset
``dataset``: H x W x 3 world positions in asset units, NaN where nothing), ``_detail/cam_NN/
camera_keyframe_positions.hdf5`` (F, 3) and ``camera_keyframe_orientations.hdf5`` (F, 3, 3, the
camera's axes as columns, looking down -z), ``_detail/metadata_scene.csv`` (its last row's
value: metres per asset unit); the split table ``evermotion_dataset/analysis/
metadata_images_split_scene_v1.csv`` (last column: train / val / test; NU-MCC evaluates on
"test"). Scenes are looked up in ``<root>/<scene>`` and ``<root>/evermotion_dataset/scenes/
<scene>``, both: the original's preparation read the first and its loader the second.

``hypersim_gt_{train,val}.pt`` = {scene: (xyz (N, 3), rgb (N, 3) in [0, 1])}: every frame's
positions and tonemapped colours resized to 112^2 (bilinear), N = frames x 112^2.

A sample: a frame of the scene (random in training; the first otherwise, where the original
drew one at random), a square crop of it (random in training, centred otherwise) resized to
112^2 points and a 224^2 image; everything moved into the camera frame (x right, y down,
z forward), metres; 30k ground-truth points in front of the camera; all divided by the seen
points' mean per-axis standard deviation. Frames with 2000 or fewer finite points are skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from geomkit.errors import InputError

SPLIT_TABLE = "evermotion_dataset/analysis/metadata_images_split_scene_v1.csv"
GT_SPLITS = {"train": "train", "val": "test"}  # file name -> split table name
MIN_SEEN_POINTS = 2000
N_GT = 30000
GT_KEEP = {"train": 0.5, "val": 0.1}  # share of ground-truth points kept on loading


def split_scenes(root: Path, split: str) -> list[str]:
    """Sorted scene names of a split ("train", "val" or "test") in the split table."""
    path = root / SPLIT_TABLE
    if not path.is_file():
        raise InputError(f"Hypersim split table not found: {path} (set --hypersim_path)")
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return sorted({row[0] for row in rows[1:] if row[-1].strip() == split})


def scene_folder(root: Path, scene: str) -> Path:
    for folder in (root / scene, root / "evermotion_dataset" / "scenes" / scene):
        if (folder / "images").is_dir():
            return folder
    raise InputError(
        f"Hypersim scene {scene} not found in {root} or {root}/evermotion_dataset/scenes"
    )


def frames_of(folder: Path) -> list[Path]:
    """The tonemapped frames of a scene, sorted."""
    return sorted(folder.glob("images/scene_cam_*_final_preview/frame.*.tonemap.jpg"))


def read_h5(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise InputError(f"Hypersim file not found: {path}")
    try:
        with h5py.File(path, "r") as handle:
            return torch.from_numpy(np.asarray(handle["dataset"][:], dtype=np.float32))
    except (OSError, KeyError) as err:
        raise InputError(f"{path}: not a Hypersim HDF5 file with a 'dataset' ({err})") from err


def frame_arrays(frame: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) positions and (H, W, 3) colours of a tonemapped frame."""
    position = frame.parent.parent / frame.parent.name.replace("final_preview", "geometry_hdf5")
    xyz = read_h5(position / frame.name.replace(".tonemap.jpg", ".position.hdf5"))
    with Image.open(frame) as image:
        rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    if xyz.shape != rgb.shape:
        raise InputError(
            f"{frame}: image {tuple(rgb.shape)} and positions {tuple(xyz.shape)} differ"
        )
    return xyz, rgb


def resize_hwc(array: torch.Tensor, size: int) -> torch.Tensor:
    chw = array.permute(2, 0, 1)[None]
    return F.interpolate(chw, size=(size, size), mode="bilinear", align_corners=False)[0].permute(
        1, 2, 0
    )


def prepare_gt(root: str | Path, split: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The ground truth of a split ("train" or "val"): per scene every frame at 112^2."""
    root = Path(root)
    gt = {}
    for scene in split_scenes(root, GT_SPLITS[split]):
        arrays = [frame_arrays(f) for f in frames_of(scene_folder(root, scene))]
        if not arrays:
            raise InputError(f"Hypersim scene {scene} has no tonemapped frames")
        xyz = torch.cat([resize_hwc(x, 112).reshape(-1, 3) for x, _ in arrays])
        rgb = torch.cat([resize_hwc(c, 112).reshape(-1, 3) for _, c in arrays])
        gt[scene] = (xyz, rgb)
    return gt


def camera_file(frame: Path, name: str) -> Path:
    camera = "cam_" + frame.parent.name.split("_")[2]
    return frame.parent.parent.parent / "_detail" / camera / name


def metres_per_unit(frame: Path) -> float:
    path = frame.parent.parent.parent / "_detail" / "metadata_scene.csv"
    if not path.is_file():
        raise InputError(f"Hypersim scene metadata not found: {path}")
    rows = [row for row in csv.reader(path.read_text().splitlines()) if row]
    return float(rows[-1][1])


def to_camera(frame: Path, *points: torch.Tensor) -> list[torch.Tensor]:
    """World points (..., 3) of the frame's scene in its camera frame (x right, y down,
    z forward, the original's sign flips), in metres."""
    index = int(frame.name.split(".")[1])
    position = read_h5(camera_file(frame, "camera_keyframe_positions.hdf5"))[index]
    rotation = -read_h5(camera_file(frame, "camera_keyframe_orientations.hdf5"))[index]
    scale = metres_per_unit(frame)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    return [((p - position) @ rotation) * scale * flip for p in points]


def square_crop(xyz: torch.Tensor, rgb: torch.Tensor, rng: np.random.Generator | None):
    """A square crop (random when rng is given, centred otherwise): 112^2 points, 224^2 image."""
    height, width = xyz.shape[:2]
    side = min(height, width)
    if rng is None:
        top, left = (height - side) // 2, (width - side) // 2
    else:
        top, left = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
    window = (slice(top, top + side), slice(left, left + side))
    return resize_hwc(xyz[window], 112), resize_hwc(rgb[window], 224)


class HypersimDataset(torch.utils.data.Dataset):
    """Scenes of a split with the ground truth of ``hypersim_gt_<split>.pt`` (see the module
    docstring). A sample: seen_xyz (112, 112, 3), seen_rgb (3, 224, 224), gt_xyz (30000, 3),
    gt_rgb (30000, 3), its index, name (scene, frame file)."""

    def __init__(
        self, root, gt_file, train: bool, epoch_len_multiplier: float = 1.0, seed: int = 0
    ):
        self.root, self.train, self.seed, self.epoch = Path(root), train, seed, 0
        split = "train" if train else "val"
        if not Path(gt_file).is_file():
            raise InputError(f"{gt_file} not found: run python -m numcc.prepare_hypersim first")
        gt = torch.load(gt_file, weights_only=True)
        rng = np.random.default_rng(seed)
        self.gt = {}
        for scene, (xyz, rgb) in gt.items():
            good = torch.isfinite(xyz).all(1) & torch.isfinite(rgb).all(1)
            good &= torch.from_numpy(rng.random(len(xyz)) < GT_KEEP[split])
            self.gt[scene] = (xyz[good], rgb[good])
        self.scenes = split_scenes(self.root, GT_SPLITS[split])
        missing = sorted(set(self.scenes) - set(self.gt))
        if missing:
            raise InputError(f"{gt_file} has no ground truth for scenes {missing[:3]} of the split")
        self.frames = {s: frames_of(scene_folder(self.root, s)) for s in self.scenes}
        self.length = int(len(self.scenes) * epoch_len_multiplier)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        scene = self.scenes[index % len(self.scenes)]
        frames = self.frames[scene]
        order = rng.permutation(len(frames)) if self.train else range(len(frames))
        for i in order:
            sample = self.sample(scene, frames[i], rng)
            if sample is not None:
                return {**sample, "index": index}
        raise InputError(
            f"Hypersim scene {scene}: no frame with more than {MIN_SEEN_POINTS} points"
        )

    def sample(self, scene: str, frame: Path, rng: np.random.Generator) -> dict | None:
        xyz, rgb = square_crop(*frame_arrays(frame), rng if self.train else None)
        if int(torch.isfinite(xyz).all(-1).sum()) <= MIN_SEEN_POINTS:
            return None
        seen, gt_xyz = to_camera(frame, xyz, self.gt[scene][0])
        in_front = gt_xyz[:, 2] > 0
        if int(in_front.sum()) < 1000:
            return None
        gt_xyz, gt_rgb = gt_xyz[in_front], self.gt[scene][1][in_front]
        chosen = rng.choice(len(gt_xyz), N_GT, replace=len(gt_xyz) < N_GT)
        finite = seen[torch.isfinite(seen).all(-1)]
        std = finite.std(dim=0).mean()
        return {
            "seen_xyz": seen / std,
            "seen_rgb": rgb.permute(2, 0, 1),
            "gt_xyz": gt_xyz[chosen] / std,
            "gt_rgb": gt_rgb[chosen],
            "name": (scene, frame.name),
        }
