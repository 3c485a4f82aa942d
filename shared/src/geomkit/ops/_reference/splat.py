"""Reference of splat_points: NPBG++'s z-buffer with native scatter_reduce.

NPBG++ (``NearestScatterRasterizer``) sends every rejected point to a dummy pixel H*W, reduces
the depth per pixel with a scatter 'min', keeps the points whose depth equals their pixel's
minimum, and among those the lowest point index with a second scatter 'min'. The same with
``scatter_reduce_(..., "amin", include_self=True)`` instead of torch_scatter.
"""

from __future__ import annotations

import torch


def splat_points(
    xy: torch.Tensor,
    depth: torch.Tensor,
    lengths: torch.Tensor,
    height: int,
    width: int,
    near: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest point per pixel, one pixel per point.

    Args:
        xy: (N, P, 2) float32/float64 continuous pixel coordinates (x right, y down); pixel
            (row i, col j) covers [j, j+1) x [i, i+1).
        depth: (N, P) view z, dtype of xy.
        lengths: (N,) int64 valid points per batch element.
        height, width: output size in pixels.
        near: >= 0; points with depth <= near (or non-finite, or outside the image) are skipped.

    Returns:
        index: (N, height, width) int64 point of minimum depth per pixel, ties to the lowest
            index; -1 where no point lands.
        depth: (N, height, width) that point's depth (differentiable), -1 where none.
    """
    N, P, _ = xy.shape
    pixels = height * width
    pixel = _pixel_ids(xy, depth, lengths, height, width, near)
    z_buffer = depth.new_full((N, pixels + 1), float("inf"))
    z_buffer.scatter_reduce_(1, pixel, depth.detach(), "amin", include_self=True)
    nearest = (depth == z_buffer.gather(1, pixel)) & (pixel < pixels)
    pixel = torch.where(nearest, pixel, pixels)
    points = torch.arange(P, device=xy.device).expand(N, P)
    first = torch.full((N, pixels + 1), P, dtype=torch.int64, device=xy.device)
    first.scatter_reduce_(1, pixel, points, "amin", include_self=True)
    index = first[:, :pixels]
    # Empty pixels (index P) gather the -1 appended to every row of depth.
    winner_depth = torch.cat((depth, depth.new_full((N, 1), -1.0)), 1).gather(1, index)
    index = torch.where(index < P, index, -1)
    return index.reshape(N, height, width), winner_depth.reshape(N, height, width)


def _pixel_ids(
    xy: torch.Tensor,
    depth: torch.Tensor,
    lengths: torch.Tensor,
    height: int,
    width: int,
    near: float,
) -> torch.Tensor:
    """(N, P) int64 flat pixel row * width + col of each point, height * width where skipped."""
    N, P, _ = xy.shape
    x, y = xy.detach().unbind(-1)
    d = depth.detach()
    valid = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    valid &= (d > near_threshold(near, d.dtype)) & torch.isfinite(d)
    valid &= torch.arange(P, device=xy.device)[None, :] < lengths[:, None]
    row = torch.where(valid, y.floor(), 0).to(torch.int64)
    col = torch.where(valid, x.floor(), 0).to(torch.int64)
    return torch.where(valid, row * width + col, height * width)


def near_threshold(near: float, dtype: torch.dtype) -> torch.Tensor:
    """The largest ``dtype`` value not above ``near``: ``depth > it`` exactly when depth > near.

    (Comparing a float32 tensor with the Python float ``near`` would round near to the nearest
    float32 first, and keep depths that equal a rounded-up near.)
    """
    threshold = torch.tensor(near, dtype=dtype)
    if float(threshold) > near:
        threshold = torch.nextafter(threshold, threshold.new_tensor(float("-inf")))
    return threshold
