"""Depth maps to one point cloud: back-projection, a cross-view consistency check, voxel
downsampling. For RGB-D scans (NPBG's ScanNet clouds) and for the plane-sweep depths of
:mod:`geomkit.sfm.densify`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from geomkit.cameras import Cameras
from geomkit.errors import InputError


@dataclass
class FusedCloud:
    """Points fused from depth maps.

    Attributes:
        points: (P, 3) float64 world points.
        colors: (P, 3) float32 RGB in [0, 1], or None without images.
        num_consistent: (P,) int64 other views whose depth agrees with the point (before
            downsampling; after it, the voxel's maximum).
    """

    points: np.ndarray
    colors: np.ndarray | None
    num_consistent: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def fuse_depth_maps(
    depths,
    cameras: Cameras,
    images=None,
    masks=None,
    min_consistent_views: int = 0,
    relative_tolerance: float = 0.01,
    voxel_size: float | None = None,
    stride: int = 1,
) -> FusedCloud:
    """Back-project depth maps and keep the points other views agree with.

    A point of view i is consistent with view j when it projects inside view j, in front of
    it, onto a pixel whose depth d_j satisfies ``|z_j - d_j| <= relative_tolerance * z_j``
    (z_j: the point's depth in view j). That rejects outliers and floaters seen once.

    Args:
        depths: (N, H, W) float view-space depth (z along the optical axis, the cameras' units);
            0 or non-finite = no depth.
        cameras: N cameras with image_size (H, W).
        images: optional (N, H, W, 3) float RGB in [0, 1] for point colours.
        masks: optional (N, H, W) bool, pixels to use.
        min_consistent_views: keep points consistent with at least this many other views
            (0: keep all).
        relative_tolerance: depth agreement, as a fraction of depth.
        voxel_size: average points within cubes of this side (world units); None keeps all.
        stride: use every stride-th pixel in each direction.

    Returns:
        FusedCloud.
    """
    depths = _as_stack(depths, "depths", 3).to(torch.float64)
    n, height, width = depths.shape
    if len(cameras) != n:
        raise InputError(f"got {n} depth maps for {len(cameras)} cameras")
    if bool((cameras.image_size != torch.tensor([height, width])).any()):
        raise InputError(f"depth maps are {height}x{width} but the cameras' image_size differs")
    cameras = cameras.to(dtype=torch.float64)
    valid = torch.isfinite(depths) & (depths > 0)
    if masks is not None:
        valid &= _as_stack(masks, "masks", 3).bool()
    colors_in = _as_stack(images, "images", 4) if images is not None else None
    points, colors, counts = [], [], []
    for i in range(n):
        rows, cols = _pixel_indices(valid[i], stride)
        z = depths[i, rows, cols]
        uv = torch.stack([cols + 0.5, rows + 0.5], -1).to(torch.float64)
        world = cameras[i].unproject(uv[None], z[None])[0]
        count = consistent_views(world, i, depths, cameras, relative_tolerance)
        keep = count >= min_consistent_views
        points.append(world[keep])
        counts.append(count[keep])
        if colors_in is not None:
            colors.append(colors_in[i, rows[keep], cols[keep]])
    cloud = FusedCloud(
        torch.cat(points).numpy(),
        torch.cat(colors).float().numpy() if colors_in is not None else None,
        torch.cat(counts).numpy(),
    )
    return voxel_downsample(cloud, voxel_size) if voxel_size else cloud


def consistent_views(
    world: torch.Tensor, source: int, depths: torch.Tensor, cameras: Cameras, tolerance: float
) -> torch.Tensor:
    """(P,) int64 number of views other than ``source`` whose depth map agrees with ``world``
    (P, 3) points, see :func:`fuse_depth_maps`."""
    n, height, width = depths.shape
    uv, z = cameras.project(world)  # (N, P, 2), (N, P)
    col = torch.floor(uv[..., 0]).long()
    row = torch.floor(uv[..., 1]).long()
    inside = (z > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    inside[source] = False
    view = torch.arange(n)[:, None].expand_as(col)
    d = torch.zeros_like(z)
    d[inside] = depths[view[inside], row[inside], col[inside]].to(d.dtype)
    agree = inside & (d > 0) & ((z - d).abs() <= tolerance * z)
    return agree.sum(0)


def voxel_downsample(cloud: FusedCloud, voxel_size: float) -> FusedCloud:
    """One point per occupied voxel of side ``voxel_size``: the mean point and colour."""
    if voxel_size <= 0:
        raise InputError(f"voxel_size must be positive, got {voxel_size}")
    if len(cloud) == 0:
        return cloud
    cells = np.floor(cloud.points / voxel_size).astype(np.int64)
    cells -= cells.min(0)
    keys = np.ravel_multi_index(cells.T, tuple(cells.max(0) + 1))
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)

    def mean(values: np.ndarray) -> np.ndarray:
        sums = np.zeros((len(counts), values.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, values)
        return sums / counts[:, None]

    best = np.zeros(len(counts), dtype=np.int64)
    np.maximum.at(best, inverse, cloud.num_consistent)
    colors = mean(cloud.colors).astype(np.float32) if cloud.colors is not None else None
    return FusedCloud(mean(cloud.points), colors, best)


def _pixel_indices(valid: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    sub = torch.zeros_like(valid)
    sub[::stride, ::stride] = True
    rows, cols = torch.nonzero(valid & sub, as_tuple=True)
    return rows, cols


def _as_stack(values, name: str, dims: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values)
    if tensor.dim() != dims:
        shape = tuple(tensor.shape)
        raise InputError(f"{name} must have {dims} dimensions (N, H, W...), got {shape}")
    return tensor
