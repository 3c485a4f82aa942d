"""One scene: its cameras (geomkit Cameras), images, masks, point cloud and view splits.

The readers (one module per dataset) convert the dataset's cameras through
:mod:`geomkit.cameras` and hand :class:`Scene` the file paths; everything downstream works on
:class:`Scene` and never sees a dataset's own conventions.

Pixels follow geomkit (corner origin, PyTorch3D view axes). The original (BaseScene) worked in
PyTorch3D NDC with ``(min(H, W) - 1) / 2`` pixels per unit; the cameras here are the same
cameras expressed in pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from geomkit.io import read_image, read_point_cloud, require_file

log = logging.getLogger(__name__)

POINT_CLOUD_SEED = 123  # the original's sample_points(points, n_point, 123, 'random')
MAKE_POINT_CLOUD = "python -m npbgpp.make_point_cloud {root} --out {path}"


class Scene:
    """A scene of N views.

    Attributes:
        name: scene name (its folder name).
        root: scene folder.
        cameras: N geomkit Cameras at the full image size (float32).
        names: N view labels as the original named them (file stems).
        has_mask: whether the dataset has foreground masks (DTU, H3DS: mask files;
            NeRF-Synthetic: alpha). Without, :meth:`mask` is all True.
        image_margin: border pixels left out of the loss (ScanNet: 20), 0 for none.

    Subclasses implement :meth:`_read_rgb` and, with masks, :meth:`_read_mask`.
    """

    has_mask = False

    def __init__(
        self,
        name: str,
        root: str | Path,
        cameras: Cameras,
        names: Sequence[str],
        pc_path: str | Path,
        splits: dict[str, list[int]],
        n_point: float | None = None,
        noise_sigma: float | None = None,
        image_margin: int | None = None,
        cache_images: bool = False,
    ) -> None:
        if len(names) != len(cameras):
            raise InputError(f"scene {name}: {len(names)} views but {len(cameras)} cameras")
        self.name = name
        self.root = Path(root)
        self.cameras = cameras.to(dtype=torch.float32)
        self.names = list(names)
        self.pc_path = Path(pc_path)
        self._splits = splits
        self.n_point = None if n_point is None else int(n_point)
        self.noise_sigma = noise_sigma
        self.image_margin = int(image_margin or 0)
        self.cache_images = bool(cache_images)
        self._points: torch.Tensor | None = None
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.cameras)

    def __repr__(self) -> str:
        sizes = {k: len(v) for k, v in self._splits.items()}
        return f"{type(self).__name__}({self.name!r}, views={len(self)}, splits={sizes})"

    def image_size(self, i: int) -> tuple[int, int]:
        """(H, W) of view i."""
        height, width = self.cameras.image_size[i].tolist()
        return int(height), int(width)

    def split(self, name: str) -> list[int]:
        """View indices of split ``name``: "train" (input views), "val", "holdout" (test
        targets) or "all" (see :mod:`npbgpp.datasets.splits`)."""
        if name not in self._splits:
            raise KeyError(f"unknown split {name!r}; choose one of {sorted(self._splits)}")
        return list(self._splits[name])

    @property
    def points(self) -> torch.Tensor:
        """(P, 3) float32 world points, loaded on first use: ``n_point`` random points (seed
        123) when set, plus N(0, noise_sigma^2) noise when set (torch's global RNG)."""
        if self._points is None:
            self._points = self._load_points()
        return self._points

    def unload_points(self) -> None:
        self._points = None

    def image(self, i: int) -> torch.Tensor:
        """(3, H, W) float32 in [0, 1] (composited on white where the original does)."""
        return self._cached("image", i, self._read_rgb)

    def mask(self, i: int) -> torch.Tensor:
        """(1, H, W) bool foreground mask; all True for datasets without masks."""
        if not self.has_mask:
            return torch.ones((1, *self.image_size(i)), dtype=torch.bool)
        return self._cached("mask", i, self._read_mask)

    def empty(self, i: int) -> torch.Tensor:
        """(1, H, W) bool pixels left out of the loss at full size: the ``image_margin`` border.

        (Training crops add the pixels the warp leaves without data; see ViewSceneWrapper.)
        """
        empty = torch.zeros((1, *self.image_size(i)), dtype=torch.bool)
        m = self.image_margin
        if m > 0:
            empty[:, :m, :] = True
            empty[:, -m:, :] = True
            empty[:, :, :m] = True
            empty[:, :, -m:] = True
        return empty

    def _cached(self, kind: str, i: int, read) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(f"view {i} out of range for scene {self.name} with {len(self)} views")
        key = (kind, i)
        if key in self._cache:
            return self._cache[key]
        value = read(i)
        if self.cache_images:
            self._cache[key] = value
        return value

    def _read_rgb(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _read_mask(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _load_points(self) -> torch.Tensor:
        if not self.pc_path.is_file():
            raise InputError(
                f"point cloud {self.pc_path} not found; make one with "
                + MAKE_POINT_CLOUD.format(root=self.root, path=self.pc_path)
                + " (or set datasets.pc_name)"
            )
        cloud = read_point_cloud(self.pc_path)
        points = torch.as_tensor(np.asarray(cloud.points), dtype=torch.float32)
        if points.dim() != 2 or points.shape[0] == 0:
            raise InputError(
                f"point cloud {self.pc_path} has no points; remake it with "
                + MAKE_POINT_CLOUD.format(root=self.root, path=self.pc_path)
            )
        if not bool(torch.isfinite(points).all()):
            bad = int((~torch.isfinite(points).all(dim=1)).sum())
            raise InputError(
                f"point cloud {self.pc_path} has {bad} points with NaN or infinite coordinates; "
                "remove them or remake the cloud"
            )
        if self.n_point is not None and self.n_point < len(points):
            generator = torch.Generator().manual_seed(POINT_CLOUD_SEED)
            points = points[torch.randperm(len(points), generator=generator)[: self.n_point]]
        if self.noise_sigma is not None:
            points = points + float(self.noise_sigma) * torch.randn_like(points)
        log.info("%s: %d points", self.name, len(points))
        return points


def load_rgb(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1] of an image file, resized (bilinear, as the original's
    PIL resize) when it is not ``size`` = (H, W)."""
    return rgb_tensor(read_image(path), size)


def rgb_tensor(pixels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float32 of (h, w, 3) float pixels, resized as :func:`load_rgb` does."""
    return _to_chw(_resized(pixels, size))


def load_rgba(path: Path, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) RGB and (1, H, W) alpha (ones without an alpha channel), float32 in [0, 1]."""
    rgb, alpha = read_image(path, with_alpha=True)
    if alpha is None:
        alpha = np.ones(rgb.shape[:2], dtype=np.float32)
    return _to_chw(_resized(rgb, size)), _to_chw(_resized(alpha[..., None], size))


def load_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(1, H, W) bool: the mean of the colour channels >= 0.5 (the original's test on its
    mask images, bilinearly resized to ``size`` when needed)."""
    grey = read_image(path).mean(axis=2, keepdims=True)
    return _to_chw(_resized(grey, size)) >= 0.5


def require_image(path: Path, what: str) -> Path:
    """The path, or InputError naming it and the layout it belongs to."""
    if not path.is_file():
        raise InputError(f"{what} {path} not found")
    return path


def _resized(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    channels = [
        np.asarray(Image.fromarray(pixels[..., c]).resize((width, height), Image.BILINEAR))
        for c in range(pixels.shape[2])
    ]
    return np.stack(channels, axis=2)


def _to_chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32))


def composite_on_white(rgb: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """(3, H, W) rgb where ``foreground`` (1, H, W bool), white elsewhere."""
    return torch.where(foreground, rgb, torch.ones_like(rgb))


def cat_cameras(parts: Sequence[Cameras]) -> Cameras:
    """One Cameras of several, in order (geomkit has no concatenation helper). Distortion is
    kept when any part has it (zeros for the parts without)."""
    if not parts:
        raise ValueError("cat_cameras needs at least one Cameras")
    values = {}
    for f in fields(Cameras):
        items = [getattr(c, f.name) for c in parts]
        if all(v is None for v in items):
            values[f.name] = None
            continue
        items = [
            v if v is not None else c.R.new_zeros(len(c), 4)
            for v, c in zip(items, parts, strict=True)
        ]
        values[f.name] = torch.cat(items)
    return Cameras(**values)


__all__ = [
    "Scene",
    "cat_cameras",
    "composite_on_white",
    "load_mask",
    "load_rgb",
    "load_rgba",
    "require_file",
    "require_image",
]
