"""VolSDF scenes: ``<data_dir>/<scan_id>/image/*`` (PNG/JPEG), optional ``mask/*`` and
``cameras.npz`` with ``world_mat_i`` (K [R|t]) and ``scale_mat_i`` (normalised -> world).

Images are sorted by file name; split indices and ``world_mat_i`` refer to that order. The
cameras live in the normalised frame (``P = world_mat @ scale_mat``); ``scale_mat`` takes
outputs back to the dataset's frame. Rays go through the pixels the original does: integer
coordinates of the OpenCV K, which are the pixel centres (+0.5) of our convention.

Images are read as RGB: an alpha channel is dropped (not composited) and grey images are
repeated to three channels. Masks are only for masked metrics; training never reads them.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cocoinr.splits import test_views, train_views, unique_views
from geomkit.cameras import Cameras, from_idr
from geomkit.errors import ConfigError, InputError
from geomkit.io import load_npz, read_image, read_mask, require_file
from geomkit.log import progress
from geomkit.rays import pixel_rays

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SCALE_MAT_RTOL = 1e-6


class SceneDataset:
    """One VolSDF scene, all views in memory.

    Attributes:
        n_images: number of views.
        image_size: (H, W).
        images: (n_images, H * W, 3) float32 RGB in [0, 1], row-major pixels.
        masks: (n_images, H * W) bool, or None without a ``mask/`` folder.
        cameras: all views, float32, normalised frame (geomkit conventions).
        scale_mat: (4, 4) float64 numpy, normalised -> world, of view 0.
        train_idx, test_idx: sorted view indices.
    """

    def __init__(
        self,
        data_dir: str | Path,
        scan_id: str,
        img_res: Sequence[int] | None = None,
        split_file: str | Path | None = None,
        num_views: int | str | None = None,
        train_views: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        """Read a scene.

        Args:
            data_dir: folder holding the scenes.
            scan_id: scene folder name, e.g. "scan24".
            img_res: expected (H, W), or None to take the images' size.
            split_file, num_views: a few-view split (see :mod:`cocoinr.splits`); both or
                neither. Without a split every view trains and ``test_idx`` is empty.
            train_views: explicit training views, overriding the split file.
            device: where images, masks and cameras live.

        Raises:
            InputError: a missing or malformed file (the message names it).
            ConfigError: only one of split_file and num_views.
        """
        scene_dir = Path(data_dir) / str(scan_id)
        if not scene_dir.is_dir():
            raise InputError(
                f"scene folder not found: {scene_dir} (data_dir/scan_id; DTU and BlendedMVS "
                "scenes are named like scan24)"
            )
        self.device = torch.device(device)
        images = _read_images(list_images(scene_dir / "image"))
        self.n_images, height, width = images.shape[:3]
        self.image_size = (height, width)
        _check_img_res(img_res, self.image_size, scene_dir / "image")
        self.images = torch.from_numpy(images).reshape(self.n_images, -1, 3).to(self.device)
        self.masks = _read_masks(scene_dir / "mask", self.n_images, self.image_size)
        if self.masks is not None:
            self.masks = self.masks.to(self.device)
        world_mats, scale_mats = read_cameras(scene_dir / "cameras.npz", self.n_images)
        self.scale_mat = scale_mats[0]
        self.cameras = _cameras(world_mats, scale_mats, self.image_size, scene_dir / "cameras.npz")
        self.cameras = self.cameras.to(self.device, torch.float32)
        self.train_idx, self.test_idx = _split(
            self.n_images, str(scan_id), split_file, num_views, train_views
        )

    def rays(
        self, view: int, pixels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """World rays (normalised frame) through pixels of one view, as the original shoots them.

        Args:
            view: view index.
            pixels: (R,) int64 flat pixel indices ``row * W + col``; None for all, in order.

        Returns:
            origins (R, 3) float32 camera centre repeated, directions (R, 3) unit float32.
        """
        view, pixels = self._view(view), self._pixels(pixels)
        width = self.image_size[1]
        # The original lifts integer pixel coordinates of the OpenCV K: our pixel centres.
        uv = torch.stack((pixels % width, pixels // width), -1).to(torch.float32) + 0.5
        origins, directions = pixel_rays(self.cameras[view], uv)
        return origins[0].contiguous(), directions[0]

    def rgb(self, view: int, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """(R, 3) float32 colours of one view at flat pixel indices (None for all)."""
        return self.images[self._view(view), self._pixels(pixels)]

    def sample_pixels(
        self, view: int, n: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` distinct uniformly random flat pixel indices (as the original's randperm).

        Args:
            view: view index (all views share one size).
            n: how many, 1 <= n <= H * W.
            generator: torch.Generator, for reproducible draws; the global RNG when None.

        Returns:
            (n,) int64 on the dataset's device.
        """
        self._view(view)
        total = self.image_size[0] * self.image_size[1]
        if not 1 <= n <= total:
            raise ValueError(f"cannot sample {n} distinct pixels from an image of {total}")
        device = generator.device if generator is not None else "cpu"
        perm = torch.randperm(total, generator=generator, device=device)
        return perm[:n].to(self.device)

    def _view(self, view: int) -> int:
        view = operator.index(view)
        if not 0 <= view < self.n_images:
            raise IndexError(f"view {view} out of range for {self.n_images} views")
        return view

    def _pixels(self, pixels: torch.Tensor | None) -> torch.Tensor:
        total = self.image_size[0] * self.image_size[1]
        if pixels is None:
            return torch.arange(total, device=self.device)
        if pixels.dim() != 1 or pixels.dtype.is_floating_point or pixels.dtype == torch.bool:
            raise ValueError(
                f"pixels must be a 1-D integer tensor, got {pixels.dtype} {tuple(pixels.shape)}"
            )
        if pixels.numel() and not (0 <= int(pixels.min()) and int(pixels.max()) < total):
            raise ValueError(f"pixel indices must lie in [0, {total}) (H * W)")
        return pixels.to(device=self.device, dtype=torch.long)


def list_images(folder: Path) -> list[Path]:
    """PNG/JPEG files of ``folder`` sorted by name; InputError when there are none."""
    if not folder.is_dir():
        raise InputError(
            f"image folder not found: {folder} (the VolSDF layout is <scan_id>/image/*.png "
            "with <scan_id>/cameras.npz)"
        )
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def read_cameras(path: Path, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """``world_mat_i`` (n, 3, 4) and ``scale_mat_i`` (n, 4, 4) float64, i < n_images.

    Raises:
        InputError: missing file or key, wrong shape, non-finite values.
    """
    arrays = load_npz(require_file(path, "cameras file"))
    for prefix in ("world_mat", "scale_mat"):
        _check_indices(arrays, prefix, n_images, path)
    world_mats = np.stack([_matrix(arrays, f"world_mat_{i}", path)[:3] for i in range(n_images)])
    scale_mats = np.stack(
        [_matrix(arrays, f"scale_mat_{i}", path, rows=(4,)) for i in range(n_images)]
    )
    spread = np.abs(scale_mats - scale_mats[0]).max()
    if spread > _SCALE_MAT_RTOL * np.abs(scale_mats[0]).max():
        logger.warning(
            "%s: scale_mat_i differ between views (by up to %.3g); each camera uses its own, "
            "scale_mat (for going back to world coordinates) is view 0's",
            path,
            spread,
        )
    return world_mats, scale_mats


def _matrix(arrays: dict, key: str, path: Path, rows: tuple[int, ...] = (4, 3)) -> np.ndarray:
    matrix = np.asarray(arrays[key], dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] not in rows or matrix.shape[1] != 4:
        raise InputError(f"{path}: {key} has shape {matrix.shape}, expected (4, 4)")
    if not np.isfinite(matrix).all():
        raise InputError(f"{path}: {key} holds NaN or infinite values")
    return matrix


def _check_indices(arrays: dict, prefix: str, n_images: int, path: Path) -> None:
    pattern = re.compile(rf"{prefix}_(\d+)")
    present = sorted(int(m.group(1)) for key in arrays if (m := pattern.fullmatch(key)))
    missing = sorted(set(range(n_images)) - set(present))
    if not missing and len(present) == n_images:
        return
    if not present:
        held = f"no {prefix}_i arrays"
    elif present == list(range(len(present))):
        held = f"{prefix}_0..{prefix}_{present[-1]}"
    else:
        first, last = present[0], present[-1]
        held = f"{len(present)} {prefix}_i arrays ({prefix}_{first}..{prefix}_{last}, with gaps)"
    message = f"{path} has {held} for {n_images} images"
    if missing:
        raise InputError(
            f"{message}; missing {prefix}_{missing[0]} (one per image, sorted by name)"
        )
    logger.warning("%s; the extra ones are not used", message)


def _cameras(world_mats, scale_mats, image_size, path: Path) -> Cameras:
    try:
        return from_idr(torch.from_numpy(world_mats), torch.from_numpy(scale_mats), image_size)
    except (InputError, ValueError) as err:
        raise InputError(f"{path}: {err}") from None


def _read_images(paths: list[Path]) -> np.ndarray:
    first = read_image(paths[0])
    images = np.empty((len(paths), *first.shape), dtype=np.float32)
    images[0] = first
    for i, path in enumerate(progress(paths[1:], desc="images", leave=False), start=1):
        image = read_image(path)
        if image.shape != first.shape:
            raise InputError(
                f"{path}: image is {_size_text(image.shape)} but {paths[0].name} is "
                f"{_size_text(first.shape)}; all images of a scene must have one size"
            )
        images[i] = image
    return images


def _read_masks(folder: Path, n_images: int, image_size: tuple[int, int]) -> torch.Tensor | None:
    if not folder.is_dir():
        return None
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) != n_images:
        raise InputError(
            f"{folder}: {len(paths)} masks for {n_images} images; give one per image (sorted "
            "by name) or remove the folder"
        )
    masks = np.empty((n_images, *image_size), dtype=bool)
    for i, path in enumerate(paths):
        mask = read_mask(path)
        if mask.shape != image_size:
            raise InputError(
                f"{path}: mask is {_size_text(mask.shape)} but the images are "
                f"{_size_text(image_size)}"
            )
        masks[i] = mask
    return torch.from_numpy(masks).reshape(n_images, -1)


def _check_img_res(img_res, image_size: tuple[int, int], folder: Path) -> None:
    if img_res is not None and tuple(int(v) for v in img_res) != image_size:
        height, width = image_size
        raise InputError(
            f"{folder}: images are {_size_text(image_size)} but img_res is "
            f"{_size_text(img_res)}; set img_res = [{height}, {width}] or leave it unset"
        )


def _split(n_images: int, scan_id: str, split_file, num_views, explicit) -> tuple[list, list]:
    if explicit is not None:
        train = unique_views(explicit, n_images, "train_views")
    elif split_file is not None and num_views is not None:
        train = train_views(Path(split_file), scan_id, num_views, n_images)
    elif split_file is not None or num_views is not None:
        raise ConfigError("give split_file and num_views together (or neither: every view trains)")
    else:
        return list(range(n_images)), []
    return train, test_views(train, n_images)


def _size_text(shape) -> str:
    return f"{shape[0]}x{shape[1]} (HxW)"
