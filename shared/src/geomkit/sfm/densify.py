"""Dense points from posed images.

COLMAP's patch-match stereo needs a CUDA build of pycolmap (``pycolmap.has_cuda``); the PyPI
wheels have none. :func:`patch_match_available` says which is the case. The CPU alternative
here is a plane sweep per view (fronto-parallel planes, uniform in inverse depth between
bounds taken from the sparse points) scored by the zero-mean normalised cross-correlation of a
window of grey values, averaged over the best ``top_k`` of the source views (occlusion
robust), with a parabola fit between planes; confident, textured pixels are kept and the depth
maps are fused with a cross-view consistency check (:func:`geomkit.sfm.fusion.fuse_depth_maps`).
It runs at reduced resolution (``max_size``), so it is coarser than patch-match and, like any
photo-consistency method, finds nothing on untextured surfaces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from geomkit.io import read_image
from geomkit.sfm.fusion import FusedCloud, fuse_depth_maps

_EPS = 1e-6


@dataclass
class PlaneSweepOptions:
    """max_size: longest image side the sweep runs at; num_depths: planes; window: NCC window
    side (odd, pixels); num_sources: source views per reference view (closest viewing
    directions); top_k: sources averaged per pixel; min_ncc: least accepted score; min_std:
    least grey standard deviation in the window (texture); min_consistent_views and
    relative_tolerance: fusion check; voxel_size: fusion downsampling (None: keep all)."""

    max_size: int = 320
    num_depths: int = 64
    window: int = 7
    num_sources: int = 4
    top_k: int = 2
    min_ncc: float = 0.7
    min_std: float = 0.02
    min_consistent_views: int = 2
    relative_tolerance: float = 0.01
    voxel_size: float | None = None


def patch_match_available() -> tuple[bool, str]:
    """(whether pycolmap's patch-match stereo can run here, the reason in words)."""
    import pycolmap

    if not pycolmap.has_cuda:
        return False, "this pycolmap build has no CUDA (pycolmap.has_cuda is False)"
    return True, "pycolmap has CUDA"


def densify_plane_sweep(
    cameras: Cameras,
    image_paths: Sequence[str | os.PathLike],
    sparse_points: np.ndarray,
    options: PlaneSweepOptions | None = None,
) -> FusedCloud:
    """Dense points by plane sweep and fusion (see the module docstring).

    Args:
        cameras: N cameras of the images.
        image_paths: N image files.
        sparse_points: (P, 3) points (e.g. triangulated) that bound the depth range per view.
        options: PlaneSweepOptions.

    Returns:
        FusedCloud with colours.
    """
    options = options or PlaneSweepOptions()
    if len(cameras) != len(image_paths):
        raise InputError(f"got {len(cameras)} cameras for {len(image_paths)} images")
    if len(sparse_points) == 0:
        raise InputError("densification needs sparse points to bound the depths; none given")
    images, small = load_scaled_images(image_paths, cameras, options.max_size)
    sparse = torch.as_tensor(np.asarray(sparse_points), dtype=torch.float64)
    depths = torch.zeros(images.shape[:3], dtype=torch.float64)
    for ref in range(len(small)):
        near, far = depth_bounds(small, ref, sparse)
        sources = nearest_views(small, ref, options.num_sources)
        depth, score, texture = plane_sweep_depth(images, small, ref, sources, near, far, options)
        keep = (score >= options.min_ncc) & (texture >= options.min_std)
        depths[ref] = torch.where(keep, depth, torch.zeros_like(depth))
    return fuse_depth_maps(
        depths,
        small,
        images=images,
        min_consistent_views=options.min_consistent_views,
        relative_tolerance=options.relative_tolerance,
        voxel_size=options.voxel_size,
    )


def plane_sweep_depth(
    images: torch.Tensor,
    cameras: Cameras,
    ref: int,
    sources: Sequence[int],
    near: float,
    far: float,
    options: PlaneSweepOptions,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Depth of view ``ref`` by plane sweep against ``sources``.

    Args:
        images: (N, H, W, 3) float RGB in [0, 1] (all the same size, that of the cameras).
        cameras: N float64 cameras.
        ref, sources: the reference view and its source views.
        near, far: depth bounds (view z) of the sweep.

    Returns:
        depth (H, W) float64 view z, score (H, W) best mean NCC in [-1, 1], texture (H, W)
        grey standard deviation in the reference window.
    """
    grey = images.mean(-1, dtype=torch.float64)
    _, height, width = grey.shape
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    uv = torch.stack([cols + 0.5, rows + 0.5], -1).reshape(1, -1, 2).to(torch.float64)
    centre = cameras[ref].camera_center()[0]
    ray = cameras[ref].unproject(uv, torch.ones(1, uv.shape[1], dtype=torch.float64))[0] - centre
    ref_mean, ref_std = _window_stats(grey[ref][None], options.window)
    source_cameras = cameras[list(sources)]
    source_grey = grey[list(sources)][:, None]
    inverse = torch.linspace(1.0 / near, 1.0 / far, options.num_depths, dtype=torch.float64)
    scores = torch.empty(options.num_depths, height, width, dtype=torch.float64)
    for k, d in enumerate((1.0 / inverse).tolist()):
        warped, inside = _warp(source_grey, source_cameras, centre + ray * d, height, width)
        ncc = _ncc(grey[ref][None], ref_mean, ref_std, warped, options.window)
        ncc = torch.where(inside, ncc, torch.full_like(ncc, -1.0))
        top = torch.topk(ncc, min(options.top_k, len(sources)), dim=0).values
        scores[k] = top.mean(0)
    best, index = scores.max(0)
    depth = 1.0 / _refine_inverse_depth(scores, index, inverse)
    return depth, best, ref_std[0]


def load_scaled_images(
    image_paths: Sequence[str | os.PathLike], cameras: Cameras, max_size: int
) -> tuple[torch.Tensor, Cameras]:
    """(N, h, w, 3) float32 images resized so the longest side is at most ``max_size``
    (INTER_AREA), and float64 cameras rescaled to match. All images must share one size."""
    sizes = {tuple(size) for size in cameras.image_size.tolist()}
    if len(sizes) != 1:
        raise InputError("plane-sweep densification needs all images at one size")
    height, width = sizes.pop()
    scale = min(1.0, max_size / max(height, width))
    small_size = (max(1, round(height * scale)), max(1, round(width * scale)))
    images = []
    for path, size in zip(image_paths, cameras.image_size.tolist(), strict=True):
        image = read_image(path)
        if tuple(image.shape[:2]) != tuple(size):
            raise InputError(f"{path} is {image.shape[1]}x{image.shape[0]} px, its camera {size}")
        image = cv2.resize(image, small_size[::-1], interpolation=cv2.INTER_AREA)
        images.append(torch.from_numpy(image))
    return torch.stack(images), scale_cameras(cameras, small_size)


def scale_cameras(cameras: Cameras, size: tuple[int, int]) -> Cameras:
    """float64 cameras for the same images resized to ``size`` (H, W): pixel quantities
    scaled per axis (distortion acts on normalised coordinates and is unchanged)."""
    cameras = cameras.to(dtype=torch.float64).clone()
    factor = torch.tensor(size, dtype=torch.float64).flip(0) / cameras.image_size.flip(1)
    cameras.focal_length = cameras.focal_length * factor
    cameras.principal_point = cameras.principal_point * factor
    cameras.skew = cameras.skew * factor[:, 0]
    cameras.image_size = torch.tensor([size] * len(cameras), dtype=torch.int64)
    return cameras


def depth_bounds(cameras: Cameras, ref: int, points: torch.Tensor) -> tuple[float, float]:
    """(near, far): the 2nd and 98th percentiles of the depths of the points seen by view
    ``ref`` (all points in front when fewer than 10 are inside), widened by 20 %."""
    uv, z = cameras[ref].project(points)
    uv, z = uv[0], z[0]
    height, width = cameras.image_size[ref].tolist()
    front = z > 0
    inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    chosen = z[inside] if int(inside.sum()) >= 10 else z[front]
    if len(chosen) == 0:
        raise InputError(f"no sparse point lies in front of view {ref}; cannot bound its depth")
    low, high = torch.quantile(chosen, torch.tensor([0.02, 0.98], dtype=chosen.dtype)).tolist()
    return 0.8 * low, 1.2 * high


def nearest_views(cameras: Cameras, ref: int, count: int) -> list[int]:
    """The ``count`` other views whose optical axes are closest in angle to view ``ref``'s."""
    axes = cameras.R[:, :, 2].to(torch.float64)
    cosine = axes @ axes[ref]
    cosine[ref] = -2.0
    order = torch.argsort(cosine, descending=True)
    return order[: min(count, len(cameras) - 1)].tolist()


def _warp(source_grey, source_cameras: Cameras, world, height: int, width: int):
    """Source images sampled at the projections of ``world`` (H*W, 3): (S, H, W), inside."""
    uv, z = source_cameras.project(world)
    grid = torch.stack(
        [uv[..., 0] / source_grey.shape[-1] * 2 - 1, uv[..., 1] / source_grey.shape[-2] * 2 - 1],
        -1,
    ).reshape(len(source_cameras), height, width, 2)
    warped = F.grid_sample(source_grey, grid, align_corners=False, padding_mode="zeros")
    inside = (grid.abs() <= 1).all(-1) & (z.reshape(-1, height, width) > 0)
    return warped[:, 0], inside


def _window_stats(grey: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and standard deviation over a window, (S, H, W) -> (S, H, W) each."""
    mean = _box(grey, window)
    var = (_box(grey * grey, window) - mean * mean).clamp_min(0)
    return mean, var.sqrt()


def _ncc(ref, ref_mean, ref_std, warped, window: int) -> torch.Tensor:
    """(S, H, W) zero-mean NCC of the reference window against each warped source."""
    mean, std = _window_stats(warped, window)
    covariance = _box(ref * warped, window) - ref_mean * mean
    return covariance / (ref_std * std + _EPS)


def _box(x: torch.Tensor, window: int) -> torch.Tensor:
    return F.avg_pool2d(x[:, None], window, stride=1, padding=window // 2, count_include_pad=False)[
        :, 0
    ]


def _refine_inverse_depth(scores, index, inverse) -> torch.Tensor:
    """Inverse depth at the vertex of the parabola through the best plane and its neighbours."""
    count = len(inverse)
    low = (index - 1).clamp(0, count - 1)
    high = (index + 1).clamp(0, count - 1)
    s0 = scores.gather(0, low[None])[0]
    s1 = scores.gather(0, index[None])[0]
    s2 = scores.gather(0, high[None])[0]
    curvature = s0 - 2 * s1 + s2
    interior = (index > 0) & (index < count - 1) & (curvature < 0)
    offset = torch.where(interior, 0.5 * (s0 - s2) / curvature.where(interior, -1.0), 0.0)
    step = inverse[1] - inverse[0] if count > 1 else inverse.new_tensor(0.0)
    return inverse[index] + offset.clamp(-0.5, 0.5) * step
