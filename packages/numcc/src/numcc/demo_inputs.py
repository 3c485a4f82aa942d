"""The demos' inputs turned into what the model sees, as the originals do, and the way back.

Web demo (image + depth + mask): the depth PNG's raw values d (resized to the image) are ray
lengths from the eye (1, 0, 0) looking at the origin with a horizontal field of view ``fov``:
point = (1 + d, -d y_n, -d x_n), x_n = (u + 0.5 - W/2) / f, y_n = (v + 0.5 - H/2) / f,
f = W / 2 / tan(fov / 2) (the original's Open3D rays with the depth negated). iPhone demo
(Record3D): the OBJ's vertices are a 640 x 480 grid of points (rows first); the image and the
mask are resized to it.

Then both: points outside the mask are invalid (inf); the points are divided by the mean of
their per-axis standard deviations (unbiased) and centred; image and points are cropped to the
mask's box plus ``margin`` pixels (10 web, 40 iPhone; top and left clamped at 0), padded to a
square right or below (points inf, colours 0), the image resized to 800^2 and the points to
``xyz_size``^2 (bilinear: pixels next to invalid ones become invalid). :class:`SeenInputs`
keeps the scale and offset, so predictions map back to the input's own frame
(:meth:`SeenInputs.to_input_frame`), which the original could not do (MCC issue #20).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from geomkit.errors import InputError
from geomkit.io import read_obj

RECORD3D_HW = (640, 480)
WEB_MARGIN, IPHONE_MARGIN = 10, 40


@dataclass
class SeenInputs:
    """seen_xyz (S, S, 3) with inf where invalid, seen_rgb (3, 800, 800) in [0, 1], and the
    normalisation: normalised = points / scale - offset."""

    seen_xyz: torch.Tensor
    seen_rgb: torch.Tensor
    scale: float
    offset: torch.Tensor

    def to_input_frame(self, points: torch.Tensor) -> torch.Tensor:
        """Points of the normalised frame (predictions) in the input's own frame."""
        return (points + self.offset) * self.scale


def read_rgb(path: Path, size_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W, 3) float RGB in [0, 1] (alpha dropped), bilinearly resized to size_hw."""
    if not Path(path).is_file():
        raise InputError(f"image not found: {path}")
    with Image.open(path) as image:
        rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    return rgb if size_hw is None else resize_hwc(rgb, size_hw)


def read_mask(path: Path, size_hw: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool: the mask resized (bilinear) to size_hw, nonzero = object."""
    if not Path(path).is_file():
        raise InputError(f"mask not found: {path}")
    with Image.open(path) as image:
        mask = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32))
    mask = resize_hwc(mask[..., None], size_hw)[..., 0] > 0
    if not mask.any():
        raise InputError(f"{path}: the mask is empty (no object pixel)")
    return mask


def resize_hwc(array: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    if tuple(array.shape[:2]) == tuple(size_hw):
        return array
    chw = array.permute(2, 0, 1)[None]
    return F.interpolate(chw, size=size_hw, mode="bilinear", align_corners=False)[0].permute(
        1, 2, 0
    )


def web_points(depth: torch.Tensor, fov_deg: float = 35.0) -> torch.Tensor:
    """(H, W, 3) points of raw depth values along the web demo's pinhole rays."""
    height, width = depth.shape
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    x_n = (u + 0.5 - width / 2) / focal
    y_n = (v + 0.5 - height / 2) / focal
    return torch.stack([1 + depth, -depth * y_n, -depth * x_n], dim=-1).float()


def read_depth_png(path: Path, size_hw: tuple[int, int]) -> torch.Tensor:
    """(H, W) the PNG's raw values as float, bilinearly resized to the image."""
    if not Path(path).is_file():
        raise InputError(f"depth image not found: {path}")
    with Image.open(path) as image:
        depth = torch.from_numpy(np.asarray(image, dtype=np.float32))
    if depth.dim() != 2:
        raise InputError(f"{path}: a depth image has one channel, this one {depth.shape[2]}")
    return resize_hwc(depth[..., None], size_hw)[..., 0]


def record3d_points(path: Path) -> torch.Tensor:
    """(640, 480, 3) points of a Record3D OBJ (its vertices, rows first)."""
    vertices = torch.from_numpy(np.asarray(read_obj(path).vertices, dtype=np.float32))
    height, width = RECORD3D_HW
    if len(vertices) != height * width:
        raise InputError(
            f"{path}: {len(vertices)} vertices, but a Record3D point cloud has "
            f"{height} x {width} = {height * width} (one per depth pixel); export the point "
            "cloud at that resolution (MCC issue #7)"
        )
    return vertices.reshape(height, width, 3)


def normalise(points: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Divide by the mean per-axis std of the finite points, then centre them."""
    finite = torch.isfinite(points.sum(-1))
    scale = float(points[finite].var(dim=0).sqrt().mean())
    scaled = points / scale
    offset = scaled[finite].mean(dim=0)
    return scaled - offset, scale, offset


def pad_square(image: torch.Tensor, value: float) -> torch.Tensor:
    """Pad (H, W, C) right or below to a square."""
    height, width, channels = image.shape
    if height > width:
        pad = image.new_full((height, height - width, channels), value)
        return torch.cat([image, pad], dim=1)
    return torch.cat([image, image.new_full((width - height, width, channels), value)], dim=0)


def prepare_seen(
    points: torch.Tensor, rgb: torch.Tensor, mask: torch.Tensor, margin: int, xyz_size: int = 112
) -> SeenInputs:
    """Model inputs from (H, W, 3) points, (H, W, 3) colours and the (H, W) object mask."""
    points = points.clone()
    points[~mask] = float("inf")
    points, scale, offset = normalise(points)
    rows, cols = mask.nonzero().unbind(1)
    top, left = max(int(rows.min()) - margin, 0), max(int(cols.min()) - margin, 0)
    bottom, right = int(rows.max()) + margin, int(cols.max()) + margin
    points = pad_square(points[top : bottom + 1, left : right + 1], float("inf"))
    rgb = pad_square(rgb[top : bottom + 1, left : right + 1], 0.0)
    seen_rgb = F.interpolate(
        rgb.permute(2, 0, 1)[None], size=(800, 800), mode="bilinear", align_corners=False
    )[0]
    seen_xyz = F.interpolate(
        points.permute(2, 0, 1)[None],
        size=(xyz_size, xyz_size),
        mode="bilinear",
        align_corners=False,
    )[0].permute(1, 2, 0)
    return SeenInputs(seen_xyz, seen_rgb, scale, offset)


def web_inputs(image, depth, seg, fov_deg: float = 35.0, xyz_size: int = 112) -> SeenInputs:
    """The web demo's inputs from its three files."""
    rgb = read_rgb(image)
    size_hw = tuple(rgb.shape[:2])
    points = web_points(read_depth_png(depth, size_hw), fov_deg)
    return prepare_seen(points, rgb, read_mask(seg, size_hw), WEB_MARGIN, xyz_size)


def iphone_inputs(image, point_cloud, seg, xyz_size: int = 112) -> SeenInputs:
    """The iPhone demo's inputs from a Record3D OBJ, its image and a mask."""
    points = record3d_points(point_cloud)
    rgb = read_rgb(image, RECORD3D_HW)
    return prepare_seen(points, rgb, read_mask(seg, RECORD3D_HW), IPHONE_MARGIN, xyz_size)
