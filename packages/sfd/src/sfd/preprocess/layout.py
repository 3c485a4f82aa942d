"""Where each preprocessing step reads and writes, with the authors' file names.

``data/<object>/raw`` holds the input and ``raw/temp`` the intermediate files; the training
inputs go to ``data/<object>/train`` and ``data/<object>`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geomkit.errors import InputError, OutputExistsError


def stem(i: int) -> str:
    """Image stem of instance ``i`` as the original names it (``003_rgb``)."""
    return f"{i:03d}_rgb"


@dataclass(frozen=True)
class Layout:
    """Paths of one object's preprocessing (``root`` = ``data/<object>``)."""

    root: Path
    crop_size: int

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def temp(self) -> Path:
        return self.raw / "temp"

    @property
    def train(self) -> Path:
        return self.root / "train"

    def train_file(self, name: str) -> Path:
        """``train/000_<name>.png``: the training image (``rgb``) and its companions."""
        return self.train / f"000_{name}.png"

    @property
    def raw_rgb(self) -> Path:
        return self.raw / "000_rgb.png"

    @property
    def raw_seg(self) -> Path:
        return self.raw / "000_instance_seg.png"

    def masked(self, i: int) -> Path:
        return self.temp / f"{stem(i)}.png"

    def mask(self, i: int) -> Path:
        return self.temp / f"{i:03d}_mask.png"

    def resized(self, i: int) -> Path:
        return self.temp / "resized" / f"{stem(i)}.png"

    def cropped(self, i: int) -> Path:
        return self.temp / "cropped" / f"{stem(i)}.png"

    def cropped_mask(self, i: int) -> Path:
        return self.temp / "cropped_masks" / f"{i:03d}_mask.png"

    @property
    def centers(self) -> Path:
        return self.temp / f"object_center_crop_size_{self.crop_size}.npy"

    def pair_matches(self, i: int, j: int) -> Path:
        return self.temp / "pairwise_match" / f"{stem(i)}_{stem(j)}_matches.npz"

    @property
    def rotation_dir(self) -> Path:
        return self.temp / "good_rotation_range"

    @property
    def good_pairs(self) -> Path:
        return self.rotation_dir / "good_pair_range.txt"

    @property
    def abs_rotate(self) -> Path:
        return self.rotation_dir / "abs_rotate.txt"

    def rotated(self, i: int) -> Path:
        return self.rotation_dir / f"rot_{i}.png"

    @property
    def sfm_inputs(self) -> Path:
        return self.temp / "sfm_inputs"

    @property
    def final_feats(self) -> Path:
        return self.sfm_inputs / "final_feats.npz"

    @property
    def final_matches(self) -> Path:
        return self.sfm_inputs / "final_matches.npz"

    @property
    def image_pairs(self) -> Path:
        return self.sfm_inputs / "image_pair.txt"

    @property
    def sfm_outputs(self) -> Path:
        return self.temp / "sfm_outputs"

    @property
    def poses(self) -> Path:
        return self.sfm_outputs / "poses.npz"

    @property
    def points_world(self) -> Path:
        return self.root / "points_world.npy"

    @property
    def non_empty(self) -> Path:
        return self.root / "non_empty_indexes.txt"

    @property
    def object_pose(self) -> Path:
        return self.root / "object_pred_pose.json"

    @property
    def scale_matrix(self) -> Path:
        return self.root / "object_scale_matrix.json"

    def transforms(self, split: str) -> Path:
        return self.root / f"transforms_{split}.json"

    def outputs(self, step: int, n: int) -> list[Path]:
        """The files step ``step`` (0-8) writes for ``n`` instances (checked before anything
        runs; step 8 writes its file only when given an Omnidata checkpoint)."""
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        files = {
            0: [self.train_file(x) for x in ("rgb", "instance_seg", "mask")]
            + [self.centers]
            + [f(i) for i in range(n) for f in (self.masked, self.mask, self.resized)]
            + [f(i) for i in range(n) for f in (self.cropped, self.cropped_mask)],
            1: [self.pair_matches(i, j) for i, j in pairs],
            2: [self.good_pairs],
            3: [self.abs_rotate] + [self.rotated(i) for i in range(n)],
            4: [self.final_feats, self.final_matches, self.image_pairs],
            5: [
                self.sfm_outputs / f"{x}.{e}"
                for x in ("cameras", "images", "points3D")
                for e in ("bin", "txt")
            ]
            + [self.poses],  # fmt: skip
            6: [self.points_world, self.non_empty],
            7: [self.object_pose, self.scale_matrix]
            + [self.transforms(s) for s in ("train", "test")],
            8: [self.train_file("normal_pretrain")],
        }
        return files[step]


def require_inputs(paths: list[Path], step: int) -> None:
    """InputError naming the first missing input of ``step`` and the step that makes it."""
    for path in paths:
        if not path.is_file():
            fix = (
                "put the square photo and its instance segmentation there"
                if step == 0
                else "run the earlier steps first (--steps 0,1,...)"
            )
            raise InputError(f"step {step} needs {path}, which is missing: {fix}")


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """OutputExistsError naming an existing output when ``overwrite`` is off."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"{existing[0]}{more} already exist; pass --overwrite to replace them"
        )
