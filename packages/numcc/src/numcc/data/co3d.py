"""CO3D v2 read from its released files, without implicitron: the frames NU-MCC and MCC train
and evaluate on, processed as implicitron's JsonIndexDataset does for them.

Per frame: the foreground box of the mask (threshold 0.4, lowered by 0.05 until a pixel passes)
grown by ``box_crop_context`` 0.3, clamped to the image and rounded; image, mask and depth
cropped to it and scaled by one factor to fit ``image_size`` (800), padded right and below
(image bilinear, mask and depth nearest); the camera moved with the crop and the scale. The
seen points: depth resized to ``xyz_size``^2 (bilinear), one ray per pixel centre of the crop
camera, point = camera centre + depth x direction (z-depth), in the CO3D world frame; pixels
with no depth or a resized mask <= 0.5 are invalid (inf). The layout is in
:mod:`geomkit.synth.layouts.co3d`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from geomkit.errors import InputError
from geomkit.io import read_ply

BOX_CROP_CONTEXT = 0.3
BOX_CROP_MASK_THR = 0.4
IMAGE_SIZE = 800


@dataclass
class NdcCamera:
    """PyTorch3D world-to-view R (3, 3) (row vectors), T (3,) and isotropic NDC intrinsics."""

    R: torch.Tensor
    T: torch.Tensor
    focal: torch.Tensor
    principal: torch.Tensor

    @classmethod
    def from_viewpoint(cls, viewpoint: dict, source: str) -> NdcCamera:
        if viewpoint.get("intrinsics_format", "ndc_isotropic") != "ndc_isotropic":
            raise InputError(
                f"{source}: intrinsics_format {viewpoint['intrinsics_format']!r} is not "
                "ndc_isotropic (the CO3D v2 format)"
            )
        values = [
            torch.tensor(viewpoint[k], dtype=torch.float64)
            for k in ("R", "T", "focal_length", "principal_point")
        ]
        return cls(*values)

    def to_pixels(self, size_wh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = size_wh / 2
        return self.focal * half.min(), half - self.principal * half.min()

    def set_pixels(self, focal_px, principal_px, size_wh: torch.Tensor) -> None:
        half = size_wh / 2
        self.focal, self.principal = focal_px / half.min(), (half - principal_px) / half.min()

    def unproject(self, ndc_xy: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """World points of NDC pixel positions (..., 2) at z-depths (...)."""
        view_xy = (ndc_xy - self.principal) / self.focal * depth[..., None]
        view = torch.cat([view_xy, depth[..., None]], dim=-1)
        return (view - self.T) @ self.R.transpose(0, 1)


def read_jgz(path: Path) -> list:
    if not path.is_file():
        raise InputError(f"CO3D annotation file not found: {path}")
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as err:
        raise InputError(f"{path} is not gzipped JSON: {err}") from err


def read_image_chw(path: Path, what: str) -> torch.Tensor:
    """(C, H, W) float in [0, 1] (RGB images, single-channel masks)."""
    if not path.is_file():
        raise InputError(f"CO3D {what} not found: {path}")
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB") if what == "image" else image)
    return torch.from_numpy(np.atleast_3d(array).transpose(2, 0, 1).astype(np.float32) / 255.0)


def read_depth(path: Path, scale_adjustment: float) -> torch.Tensor:
    """(1, H, W) metric depth: the PNG's 16 bits as float16, times scale_adjustment; 0 where
    not finite."""
    if not path.is_file():
        raise InputError(f"CO3D depth map not found: {path}")
    with Image.open(path) as image:
        bits = np.array(image, dtype=np.uint16)
    depth = bits.view(np.float16).astype(np.float32) * scale_adjustment
    depth[~np.isfinite(depth)] = 0.0
    return torch.from_numpy(depth)[None]


def mask_box(mask: torch.Tensor, threshold: float = BOX_CROP_MASK_THR) -> tuple[int, ...]:
    """(x0, y0, w, h) of the pixels above threshold, lowered until more than one passes."""
    while True:
        chosen = mask[0] > threshold
        if chosen.sum() > 1 or threshold <= 0:
            break
        threshold -= 0.05
    if chosen.sum() <= 1:
        return 0, 0, mask.shape[-1], mask.shape[-2]
    cols, rows = chosen.any(0).nonzero()[:, 0], chosen.any(1).nonzero()[:, 0]
    x0, y0 = int(cols[0]), int(rows[0])
    return x0, y0, int(cols[-1]) + 1 - x0, int(rows[-1]) + 1 - y0


def crop_box(box: tuple[int, ...], size_hw: tuple[int, int], context: float, source: str):
    """The box grown by ``context``, clamped to the image and rounded: (x0, y0, x1, y1)."""
    x0, y0, w, h = (float(v) for v in box)
    x0, y0, w, h = x0 - w * context / 2, y0 - h * context / 2, w * (1 + context), h * (1 + context)
    if w <= 1 or h <= 1:
        raise InputError(f"{source}: the mask's bounding box holds no pixels")
    w, h = max(w, 2.0), max(h, 2.0)
    height, width = size_hw
    clamp = [min(max(x0, 0), width), min(max(y0, 0), height)]
    clamp += [min(max(x0 + w, 0), width), min(max(y0 + h, 0), height)]
    return tuple(int(torch.tensor(v).round()) for v in clamp)


def fit(image: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Scale (C, H, W) by one factor into size x size, padded with zeros right and below."""
    scale = min(size / image.shape[-2], size / image.shape[-1])
    options = {"align_corners": False} if mode == "bilinear" else {}
    resized = F.interpolate(
        image[None], scale_factor=scale, mode=mode, recompute_scale_factor=True, **options
    )[0]
    out = image.new_zeros(image.shape[0], size, size)
    out[:, : resized.shape[1], : resized.shape[2]] = resized
    return out


@dataclass
class Frame:
    """A frame cropped and fitted to size x size: image (3, S, S), mask (1, S, S), depth
    (1, S, S) metric z, camera for the S x S image."""

    image: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    camera: NdcCamera


def load_frame(
    root: Path, entry: dict, size: int = IMAGE_SIZE, context: float = BOX_CROP_CONTEXT
) -> Frame:
    """One frame annotation's image, mask, depth and camera, box-cropped and fitted."""
    source = f"{root / entry['image']['path']}"
    image = read_image_chw(root / entry["image"]["path"], "image")
    mask = read_image_chw(root / entry["mask"]["path"], "mask")[:1]
    depth = read_depth(root / entry["depth"]["path"], entry["depth"]["scale_adjustment"])
    size_hw = tuple(entry["image"]["size"])
    for name, array in (("image", image), ("mask", mask)):
        if tuple(array.shape[-2:]) != size_hw:
            raise InputError(
                f"{root / entry[name]['path']}: {name} is {tuple(array.shape[-2:])}, the "
                f"annotation says {size_hw}"
            )
    camera = NdcCamera.from_viewpoint(entry["viewpoint"], source)
    x0, y0, x1, y1 = crop_box(mask_box(mask), size_hw, context, source)
    image, mask = image[:, y0:y1, x0:x1], mask[:, y0:y1, x0:x1]
    rows, cols = depth_window((x0, y0, x1, y1), depth.shape[-2:], size_hw)
    depth = depth[:, rows, cols]
    full_wh = torch.tensor(size_hw[::-1], dtype=torch.float64)
    focal_px, principal_px = camera.to_pixels(full_wh)
    crop_wh = torch.tensor([x1 - x0, y1 - y0], dtype=torch.float64)
    camera.set_pixels(focal_px, principal_px - torch.tensor([x0, y0]), crop_wh)
    focal_px, principal_px = camera.to_pixels(crop_wh)
    scale = min(size / crop_wh[0], size / crop_wh[1])
    camera.set_pixels(focal_px * scale, principal_px * scale, torch.full((2,), float(size)))
    return Frame(
        fit(image, size, "bilinear"),
        fit(mask, size, "nearest"),
        fit(depth, size, "nearest"),
        camera,
    )


def depth_window(box, depth_hw, image_hw) -> tuple[slice, slice]:
    """The crop box in depth-map pixels (the depth map may be smaller than the image)."""
    ratio = (depth_hw[0] / image_hw[0] + depth_hw[1] / image_hw[1]) / 2
    x0, y0, x1, y1 = (int(torch.tensor(v * ratio).long()) for v in box)
    x0, x1 = min(max(x0, 0), depth_hw[1]), min(max(x1, 0), depth_hw[1])
    y0, y1 = min(max(y0, 0), depth_hw[0]), min(max(y1, 0), depth_hw[0])
    return slice(y0, y1), slice(x0, x1)


def ndc_pixel_grid(size: int) -> torch.Tensor:
    """(size, size, 2) NDC (x, y) of pixel centres, PyTorch3D's: +x left, +y up."""
    axis = torch.linspace(1 - 1 / size, -1 + 1 / size, size, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y], dim=-1)


def seen_points(frame: Frame, xyz_size: int = 112, mask_thr: float = 0.5) -> torch.Tensor:
    """(xyz_size, xyz_size, 3) float32 world points of the frame's depth, inf where invalid."""
    depth = F.interpolate(
        frame.depth[None], size=(xyz_size, xyz_size), mode="bilinear", align_corners=False
    )[0, 0]
    mask = F.interpolate(
        frame.mask[None], size=(xyz_size, xyz_size), mode="bilinear", align_corners=False
    )[0, 0]
    points = frame.camera.unproject(ndc_pixel_grid(xyz_size), depth.double()).float()
    points[~((depth > 0) & (mask > mask_thr))] = float("inf")
    return points


def load_point_cloud(path: Path, n_points: int, rng: np.random.Generator):
    """(n_points, 3) points and colours of a sequence's pointcloud.ply: a random subset when
    larger, padded with random repeats when smaller (as the original)."""
    if not path.is_file():
        raise InputError(f"CO3D sequence point cloud not found: {path}")
    cloud = read_ply(path)
    if cloud.colors is None or len(cloud) == 0:
        raise InputError(f"{path}: the point cloud needs points with colours (red, green, blue)")
    if len(cloud) >= n_points:
        chosen = rng.choice(len(cloud), n_points, replace=False)
    else:
        chosen = np.concatenate(
            [np.arange(len(cloud)), rng.integers(len(cloud), size=n_points - len(cloud))]
        )
    points = torch.from_numpy(np.asarray(cloud.points, dtype=np.float32)[chosen])
    return points, torch.from_numpy(np.asarray(cloud.colors, dtype=np.float32)[chosen])


# The ten categories held out of training by --holdout_categories (the original's list).
HOLDOUT_CATEGORIES = frozenset(
    {
        "apple",
        "baseballglove",
        "cup",
        "ball",
        "toyplane",
        "handbag",
        "book",
        "carrot",
        "suitcase",
        "bowl",
    }
)
FRAME_CHOICES = ("crc32", "python_hash")


def eval_frame_index(sequence: str, n_frames: int, choice: str = "crc32") -> int:
    """The frame evaluated of a sequence. "crc32": the same on every run and machine;
    "python_hash": the original's ``hash(sequence) % n``, which repeats only under a fixed
    PYTHONHASHSEED (the authors' commands set PYTHONHASHSEED=0)."""
    if choice == "python_hash":
        return hash(sequence) % n_frames
    if choice == "crc32":
        return zlib.crc32(sequence.encode("utf-8")) % n_frames
    raise ValueError(f"frame choice must be one of {FRAME_CHOICES}, got {choice!r}")


def co3d_categories(root: Path, one_class: str = "") -> list[str]:
    """Category folders of a CO3D root (all of them, or just ``one_class``)."""
    if not root.is_dir():
        raise InputError(f"CO3D folder not found: {root} (set --co3d_path)")
    found = sorted(p.name for p in root.iterdir() if (p / "frame_annotations.jgz").is_file())
    if one_class:
        if one_class not in found:
            raise InputError(
                f"--one_class {one_class!r}: no {root / one_class / 'frame_annotations.jgz'}"
            )
        return [one_class]
    if not found:
        raise InputError(f"{root} holds no CO3D category (no */frame_annotations.jgz)")
    return found


class Co3dCategory:
    """One category's frames of a split of a set list, grouped by sequence in list order."""

    def __init__(self, root: Path, category: str, split: str, subset: str = "fewview_dev"):
        self.root, self.category = root, category
        frames = {
            (f["sequence_name"], f["frame_number"]): f
            for f in read_jgz(root / category / "frame_annotations.jgz")
        }
        sequences = {
            s["sequence_name"]: s for s in read_jgz(root / category / "sequence_annotations.jgz")
        }
        path = root / category / "set_lists" / f"set_lists_{subset}.json"
        if not path.is_file():
            raise InputError(f"CO3D set list not found: {path}")
        try:
            listed = json.loads(path.read_text())[split]
        except (ValueError, KeyError) as err:
            raise InputError(f"{path}: no {split!r} list ({err})") from err
        self.frames: dict[str, list[dict]] = {}
        for sequence, number, _ in listed:
            if (sequence, number) not in frames:
                raise InputError(
                    f"{path}: frame {number} of {sequence} is not in frame_annotations.jgz"
                )
            self.frames.setdefault(sequence, []).append(frames[sequence, number])
        self.point_clouds = {}
        for sequence in self.frames:
            entry = sequences.get(sequence, {}).get("point_cloud")
            relative = entry["path"] if entry else f"{category}/{sequence}/pointcloud.ply"
            self.point_clouds[sequence] = root / relative
        missing = [p for p in self.point_clouds.values() if not p.is_file()]
        if missing:
            raise InputError(
                f"CO3D sequence point cloud not found: {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )


class CO3DV2Dataset(torch.utils.data.Dataset):
    """(category, sequence) examples of a CO3D v2 split: a random frame of the sequence in
    training, a fixed one (:func:`eval_frame_index`) otherwise.

    A sample: seen_xyz (S, S, 3) with inf where invalid, seen_rgb (3, 800, 800) in [0, 1],
    gt_xyz (n_gt, 3), gt_rgb (n_gt, 3), its index, and name (category, sequence,
    frame_number); with ``xyz_size_hr`` also seen_xyz_hr, the denser map of --hr.
    Randomness comes from a generator seeded by (seed, epoch, index).
    """

    def __init__(
        self,
        root: str | Path,
        train: bool,
        categories: list[str],
        subset: str = "fewview_dev",
        xyz_size: int = 112,
        n_gt: int = 20000,
        epoch_len_multiplier: float = 1.0,
        frame_choice: str = "crc32",
        seed: int = 0,
        xyz_size_hr: int | None = None,
    ):
        self.root, self.train, self.xyz_size, self.n_gt = Path(root), train, xyz_size, n_gt
        self.xyz_size_hr = xyz_size_hr
        self.frame_choice, self.seed, self.epoch = frame_choice, seed, 0
        split = "train" if train else "val"
        self.categories = {c: Co3dCategory(self.root, c, split, subset) for c in categories}
        self.examples = [(c, s) for c, cat in self.categories.items() for s in cat.frames]
        if not self.examples:
            raise InputError(f"no {split} sequences in {self.root} for categories {categories}")
        self.length = int(len(self.examples) * epoch_len_multiplier)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def frame_entry(self, index: int, rng: np.random.Generator) -> tuple[str, str, dict]:
        category, sequence = self.examples[index % len(self.examples)]
        frames = self.categories[category].frames[sequence]
        if self.train:
            chosen = int(rng.integers(len(frames)))
        else:
            chosen = eval_frame_index(sequence, len(frames), self.frame_choice)
        return category, sequence, frames[chosen]

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        category, sequence, entry = self.frame_entry(index, rng)
        frame = load_frame(self.root, entry)
        gt_xyz, gt_rgb = load_point_cloud(
            self.categories[category].point_clouds[sequence], self.n_gt, rng
        )
        sample = {
            "seen_xyz": seen_points(frame, self.xyz_size),
            "seen_rgb": frame.image,
            "gt_xyz": gt_xyz,
            "gt_rgb": gt_rgb,
            "index": index,
            "name": (category, sequence, entry["frame_number"]),
        }
        if self.xyz_size_hr:
            sample["seen_xyz_hr"] = seen_points(frame, self.xyz_size_hr)
        return sample
