"""instant-ngp / nerfstudio scenes: one ``{scene}/transforms.json`` (``fl_x, fl_y, cx, cy, w, h``,
optional ``k1, k2, p1, p2``, frames with ``file_path`` and an OpenGL camera-to-world
``transform_matrix``), the images it names, ``mvs_pc.ply`` (``python -m npbgpp.make_point_cloud``
makes it from this very file, so cloud and cameras share one world frame).

Cameras come from geomkit.cameras.from_nerf_transforms, the frames whose image is missing are
reported once and dropped (the reader of make_point_cloud). NPBG++ warps images with pinhole
homographies, so images with lens distortion are undistorted (cv2.undistort, same K) and the
scene's cameras are the pinhole ones. ``downscale`` divides the image size (intrinsics scaled
with it). Without ``holdout_indices``, ``holdout_every: K`` holds out views 0, K, 2K, ... (the
LLFF / mip-NeRF 360 convention, every 8th view).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch

from geomkit.cameras import Cameras
from geomkit.errors import ConfigError, InputError
from geomkit.io import read_image
from npbgpp.datasets.base import Scene, require_image, rgb_tensor
from npbgpp.datasets.dtu import scene_options
from npbgpp.datasets.splits import scene_splits
from npbgpp.make_point_cloud import read_posed_images


class NgpScene(Scene):
    """Views read at the file's size, undistorted there, then resized to the camera's size."""

    def __init__(self, *args, image_paths, file_sizes, K, distortion, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.image_paths = list(image_paths)
        self.file_sizes = [tuple(size) for size in file_sizes]  # (H, W) per file, K's size
        self.K = np.asarray(K, dtype=np.float64)  # (N, 3, 3) at the file size, OpenCV pixels
        self.distortion = None if distortion is None else np.asarray(distortion, np.float64)

    def _read_rgb(self, i: int) -> torch.Tensor:
        pixels = read_image(require_image(self.image_paths[i], "image"))
        check_size(self.image_paths[i], pixels.shape[:2], self.file_sizes[i])
        if self.distortion is not None and np.any(self.distortion[i] != 0):
            pixels = cv2.undistort(pixels, self.K[i], self.distortion[i])
        return rgb_tensor(pixels, self.image_size(i))


def build_ngp_scene(cfg: Mapping, scene_name: str) -> NgpScene:
    """The instant-ngp scene ``data_root/scene_name`` (see the module docstring)."""
    root = Path(str(cfg["data_root"])) / scene_name
    transforms = root / "transforms.json"
    if not transforms.is_file():
        raise InputError(f"instant-ngp scene {scene_name}: {transforms} not found")
    cameras, paths = read_posed_images(root, "nerf")
    file_sizes = [tuple(size) for size in cameras.image_size.tolist()]
    check_size(paths[0], read_image(paths[0]).shape[:2], file_sizes[0])  # fail before fitting
    pinhole = Cameras(
        cameras.R, cameras.T, cameras.focal_length, cameras.principal_point, cameras.image_size
    )
    scaled = downscaled(pinhole, _downscale(cfg))
    return NgpScene(
        scene_name,
        root,
        scaled,
        [p.stem for p in paths],
        root / str(cfg.get("pc_name") or "mvs_pc.ply"),
        scene_splits(split_config(cfg, len(paths)), len(paths), scene_name),
        image_paths=paths,
        file_sizes=file_sizes,
        K=pinhole.K_opencv().numpy(),
        distortion=None if cameras.distortion is None else cameras.distortion.numpy(),
        **scene_options(cfg),
    )


def check_size(path: Path, size: tuple[int, int], expected: tuple[int, int]) -> None:
    """An image file has the (H, W) its intrinsics in transforms.json are for."""
    if tuple(size) != tuple(expected):
        raise InputError(
            f"{path} is {size[1]}x{size[0]} but transforms.json says w={expected[1]}, "
            f"h={expected[0]}; use the images the intrinsics were estimated on"
        )


def downscaled(cameras: Cameras, factor: float) -> Cameras:
    """The cameras rendering images ``factor`` times smaller (sizes rounded, intrinsics scaled
    by the exact ratio of the sizes)."""
    if factor == 1:
        return cameras.to(dtype=torch.float32)
    size = (cameras.image_size.double() / factor).round().clamp(min=1)
    ratio = (size / cameras.image_size.double()).flip(-1)  # (sx, sy) for (fx, fy)
    return Cameras(
        cameras.R,
        cameras.T,
        cameras.focal_length * ratio,
        cameras.principal_point * ratio,
        size.long(),
    ).to(dtype=torch.float32)


def split_config(cfg: Mapping, n_views: int) -> Mapping:
    """``cfg`` with ``holdout_indices`` = views 0, K, 2K ... when only ``holdout_every`` is set."""
    every = cfg.get("holdout_every")
    if cfg.get("holdout_indices") is not None or every is None:
        return cfg
    if isinstance(every, bool) or not isinstance(every, int) or every < 2:
        raise ConfigError(f"datasets.holdout_every must be an integer >= 2, got {every!r}")
    return {**cfg, "holdout_indices": list(range(0, n_views, every))}


def _downscale(cfg: Mapping) -> float:
    value = cfg.get("downscale")
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise ConfigError(f"datasets.downscale must be a number >= 1, got {value!r}")
    return float(value)
