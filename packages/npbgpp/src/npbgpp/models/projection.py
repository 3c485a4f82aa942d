"""NPBG++'s projection: its NDC, its pixel mapping and its z-buffer visibility.

NPBG++ works in PyTorch3D's NDC with its own screen convention (``rasterizer/project.py`` and
``utils/pytorch3d.py`` of the original): +x left, +y up, the short image side spans [-1, 1] and
the long side [-max/min, max/min], and with m = min(H, W) the NDC range [-1, 1] of the short side
maps to the CENTRES of its first and last pixels::

    fx_ndc = fx * 2 / (m - 1)          px_ndc = -(cx - (W - 1) / 2) * 2 / (m - 1)

where cx is in pixel-centre coordinates (the centre of the top-left pixel at 0). geomkit's
:class:`~geomkit.cameras.Cameras` puts that centre at 0.5, so cx = principal_point - 0.5 here.
(geomkit's own NDC, ``Cameras.focal_length_ndc``, divides by m and maps [-1, 1] to the outer
edges; the two differ by half a pixel of scale, and NPBG++'s checkpoints were trained with this
one.) A projected point is ``(fx_ndc * X / Z + px_ndc, fy_ndc * Y / Z + py_ndc, Z)`` with
(X, Y, Z) its view coordinates, and lands in the pixel whose centre is
``x_scr = (W - 1) / 2 - (m - 1) / 2 * x_ndc`` (likewise y), rounded half down.

A point is visible in NPBG++ when it is inside the NDC bounds, in front of the hard near plane
``Z > 1`` (one world unit, strict) and, at ``visibility_scale`` times the resolution, no point of
its pixel is nearer (:func:`compute_visibility`).
"""

from __future__ import annotations

import torch

from geomkit.cameras import Cameras
from geomkit.ops.splat import splat_points

__all__ = [
    "compute_visibility",
    "inside_ndc_bounds",
    "ndc_bounds",
    "ndc_intrinsics",
    "npbgpp_pixel_coordinates",
    "project_cameras",
    "project_points",
]

_EDGE_NUDGE = 1e-6  # NPBG++ rounds x_scr - 1e-6 + 0.5 down: a point on an edge goes left/up
_DEPTH_EPS = 1e-7  # NPBG++ divides by z + 1e-7


def ndc_bounds(image_size: tuple[int, int]) -> tuple[float, float]:
    """(x, y) half-extent of an (H, W) image in NPBG++'s NDC: 1 on the short side, max/min on
    the long one (x is the short side when W <= H)."""
    height, width = (int(v) for v in image_size)
    ratio = max(height, width) / min(height, width)
    return (1.0, ratio) if min(height, width) == width else (ratio, 1.0)


def ndc_intrinsics(cameras: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """NPBG++'s NDC focal length and principal point of geomkit cameras.

    Args:
        cameras: N pinhole cameras without skew or distortion (NPBG++ has neither).

    Returns:
        fcl_ndc: (N, 2) ``f * 2 / (m - 1)``, m = min(H, W) of each camera.
        prp_ndc: (N, 2) ``-(c - 0.5 - ((W, H) - 1) / 2) * 2 / (m - 1)``, c the geomkit
            (corner-origin) principal point.

    Raises:
        ValueError: a camera has skew or distortion, or an image side of one pixel.
    """
    if cameras.distortion is not None and bool((cameras.distortion != 0).any()):
        raise ValueError("ndc_intrinsics: NPBG++ cameras have no distortion; undistort first")
    if bool((cameras.skew != 0).any()):
        raise ValueError("ndc_intrinsics: NPBG++ cameras have no skew")
    size_wh = cameras.image_size.flip(1).to(cameras.dtype)  # (N, 2) as (W, H)
    short = size_wh.min(dim=1, keepdim=True).values
    if bool((short < 2).any()):
        raise ValueError("ndc_intrinsics: NPBG++'s NDC needs images of at least 2x2 pixels")
    per_pixel = 2.0 / (short - 1)
    fcl = cameras.focal_length * per_pixel
    prp = -(cameras.principal_point - 0.5 - (size_wh - 1) / 2) * per_pixel
    return fcl, prp


def project_points(
    points: torch.Tensor,
    R_row: torch.Tensor,
    T: torch.Tensor,
    fcl_ndc: torch.Tensor,
    prp_ndc: torch.Tensor,
) -> torch.Tensor:
    """NPBG++'s ``project_points``: world points to NDC x, y and view depth.

    Args:
        points: (N, P, 3) world points, or (P, 3) shared by the N cameras.
        R_row: (N, 3, 3) world-to-view rotation, row vectors (``X_view = X @ R_row + T``).
        T: (N, 3) translation.
        fcl_ndc, prp_ndc: (N, 2) NDC intrinsics (:func:`ndc_intrinsics`).

    Returns:
        (N, P, 3): ``x = (fx X + px Z) / (Z + 1e-7)``, ``y`` likewise, ``z = Z`` (NPBG++'s
        operations; +x left, +y up). Differentiable. Meaningless for Z <= 0; nothing is masked.
    """
    if points.dim() == 2:
        points = points.unsqueeze(0).expand(R_row.shape[0], -1, -1)
    if points.dim() != 3 or points.shape[-1] != 3 or R_row.shape[1:] != (3, 3):
        raise ValueError(
            f"project_points: points must be (N, P, 3) or (P, 3) and R_row (N, 3, 3), got "
            f"{tuple(points.shape)} and {tuple(R_row.shape)}"
        )
    view = torch.bmm(points, R_row) + T[:, None, :]
    depth = view[..., 2:]
    xy = (view[..., :2] * fcl_ndc[:, None, :] + depth * prp_ndc[:, None, :]) / (depth + _DEPTH_EPS)
    return torch.cat((xy, depth), dim=-1)


def project_cameras(points: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """:func:`project_points` with geomkit cameras: (N, P, 3) or (P, 3) -> (N, P, 3)."""
    fcl, prp = ndc_intrinsics(cameras)
    return project_points(points, cameras.R, cameras.T, fcl, prp)


def inside_ndc_bounds(ndc: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, P) bool: x and y inside the (inclusive) NDC bounds of an (H, W) image."""
    bound_x, bound_y = ndc_bounds(image_size)
    x, y = ndc[..., 0], ndc[..., 1]
    return (x >= -bound_x) & (x <= bound_x) & (y >= -bound_y) & (y <= bound_y)


def npbgpp_pixel_coordinates(
    ndc: torch.Tensor,
    image_size: tuple[int, int],
    bounds_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Coordinates for :func:`geomkit.ops.splat.splat_points` that put each point in NPBG++'s
    pixel of an (h, w) image (the mapping of the ``geomkit/ops/splat.py`` docstring).

    NPBG++'s pixel is ``trunc(x_scr - 1e-6 + 0.5)`` with ``x_scr = (w - 1) / 2 - s * x_ndc``,
    ``s = (min(h, w) - 1) / 2`` (likewise y); a pixel outside the image drops the point. Here
    ``v = x_scr - 1e-6 + 0.5`` is returned clamped at 0, so splat_points' floor equals the
    truncation; points whose truncation is negative (v <= -1) get NaN.

    Args:
        ndc: (N, P, >=2) NPBG++ NDC (x left, y up).
        image_size: (h, w) of the image the pixels are in (one scale of the pyramid).
        bounds_size: (H, W) of the image whose NDC bounds decide visibility (NPBG++ tests them
            on the FULL image at every scale); points outside get NaN. None: no bounds test.

    Returns:
        (N, P, 2) float, dtype of ndc: (x, y) for splat_points, NaN for dropped points.
        Not differentiable (pixels are chosen, not interpolated).
    """
    h, w = (int(v) for v in image_size)
    s = (min(h, w) - 1) / 2
    # NPBG++'s operation order: -(s * ndc + (-(size - 1) / 2)), then - 1e-6 + 0.5
    x = -(s * ndc[..., 0] + (-(w - 1) / 2)) - _EDGE_NUDGE + 0.5
    y = -(s * ndc[..., 1] + (-(h - 1) / 2)) - _EDGE_NUDGE + 0.5
    xy = torch.stack((x, y), dim=-1)
    dropped = (xy <= -1).any(dim=-1)
    if bounds_size is not None:
        dropped = dropped | ~inside_ndc_bounds(ndc, bounds_size)
    return torch.where(dropped.unsqueeze(-1), float("nan"), xy.clamp(min=0))


@torch.no_grad()
def compute_visibility(
    ndc: torch.Tensor,
    image_size: tuple[int, int],
    scale: float = 1.0,
    near: float = 1.0,
) -> torch.Tensor:
    """NPBG++'s z-buffer visibility (``compute_one_scale_visibility``, variant 1).

    A point is visible when it is inside the NDC bounds of the (H, W) image, its depth is
    > ``near`` and, among the points in its pixel of the (int(scale * H), int(scale * W))
    image, no point is nearer. As in the original, points tied at the minimum depth of a pixel
    are ALL visible (the comparison is ``z == min z``; the rasterizer, unlike this test, keeps
    only the lowest index).

    Args:
        ndc: (N, P, 3) NPBG++ NDC x, y and view depth (:func:`project_points`).
        image_size: (H, W) of the view.
        scale: resolution factor of the test (``system.visibility_scale``; 0.5 for ScanNet).
        near: the near plane; NPBG++'s is 1.0 (world units), strict.

    Returns:
        (N, P) bool.
    """
    if ndc.dim() != 3 or ndc.shape[-1] != 3:
        raise ValueError(f"compute_visibility: ndc must be (N, P, 3), got {tuple(ndc.shape)}")
    size = (int(scale * image_size[0]), int(scale * image_size[1]))
    N, P, _ = ndc.shape
    if P == 0 or size[0] <= 0 or size[1] <= 0:
        return torch.zeros(N, P, dtype=torch.bool, device=ndc.device)
    xy = npbgpp_pixel_coordinates(ndc, size, bounds_size=image_size)
    depth = ndc[..., 2]
    splat = splat_points(xy, depth, size, near=near)
    col, row = xy[..., 0].nan_to_num(-1.0).floor(), xy[..., 1].nan_to_num(-1.0).floor()
    placed = (col >= 0) & (col < size[1]) & (row >= 0) & (row < size[0]) & (depth > near)
    pixel = torch.where(placed, row * size[1] + col, 0).long()
    nearest = splat.depth.reshape(N, -1).gather(1, pixel)
    return placed & (depth == nearest)
