"""Point splatting with NPBG++ semantics: the nearest point per pixel, one pixel per point, and
the differentiable scatter of the winners' features.

NPBG++'s ``NearestScatterRasterizer`` projects every point to ONE pixel per scale, keeps per
pixel the point of minimum view depth (ties to the lowest point index), and scatters the
winner's descriptor plus a mask channel; gradients reach only the winners. Here:

* :func:`splat_points` computes the z-buffer (compiled kernels on CPU and CUDA, the
  scatter_reduce reference in ``_reference/splat.py`` elsewhere), identical on every device;
* :func:`splat_points_multiscale` runs it at NPBG++'s scales (1, 1/2, ... 1/16);
* :func:`scatter_features` turns the winners into a (N, C, H, W) feature image. NPBG++'s mask
  channel is ``(index >= 0)``: ``torch.cat([scatter_features(f, s.index, bg),
  (s.index >= 0)[:, None].to(f.dtype)], 1)``.

Coordinates are geomkit's pixels (:mod:`geomkit.cameras`): x right, y down, origin at the
top-left CORNER; pixel (row i, col j) covers [j, j+1) x [i, i+1), so a point lands in pixel
(floor(y), floor(x)) when 0 <= x < W and 0 <= y < H. ``Cameras.project`` gives them directly.

NPBG++'s own pixel mapping, and how the npbgpp package reproduces it with this op. NPBG++
projects to PyTorch3D NDC (+x left, +y up, short side in [-1, 1]) and, at each output size
(h, w), computes pixel-centre coordinates (the centre of pixel j at x_scr = j)::

    s = (min(h, w) - 1) / 2
    x_scr = (w - 1) / 2 - s * x_ndc        y_scr = (h - 1) / 2 - s * y_ndc
    col = trunc(x_scr - 1e-6 + 0.5)        row = trunc(y_scr - 1e-6 + 0.5)

(the short side's NDC range [-1, 1] maps to the CENTRES of its first and last pixels, unlike
geomkit's NDC, which maps it to their outer edges). With x = x_scr + 0.5 in this op's
coordinates, floor(x) is x_scr rounded half up; NPBG++'s -1e-6 sends a point exactly on a pixel
edge to the left/upper pixel instead (in float32 only where x_scr < 32: beyond, 1e-6 is under
half an ulp and the subtraction rounds back). So, per scale, the npbgpp package passes

    xy = clamp((x_scr - 1e-6 + 0.5, y_scr - 1e-6 + 0.5), min=0)

computed in NPBG++'s dtype and operation order, NaN for the points its visibility test rejects
(NDC bounds: |ndc| <= 1 on the short side, <= max/min on the long one), and ``near=1.0`` (its
hard near plane ``z > 1``), to :func:`splat_points` with ``image_size=(h, w)``. For points
inside the NDC bounds the value is > -1, where trunc and floor-after-clamp agree, so the pixels
are NPBG++'s bit for bit. It does not use :func:`splat_points_multiscale`: NPBG++ recomputes
x_scr at each size (an affine map whose offset changes with the size), which is not the pure
rescaling of coordinates used there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch

from geomkit.ext import geomkit_extension
from geomkit.ops._checks import check_lengths, is_int, shape_of
from geomkit.ops._reference import splat as _reference

NPBGPP_SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625)

_autograd_registered = False


class Splat(NamedTuple):
    """Result of :func:`splat_points`.

    index: (N, H, W) int64, the point (index into P) of minimum depth per pixel, ties to the
        lowest index; -1 where no point lands.
    depth: (N, H, W) that point's view depth, dtype of the input depth; -1 where no point
        lands. Differentiable with respect to the input depth (the winners only).
    """

    index: torch.Tensor
    depth: torch.Tensor


def splat_points(
    xy: torch.Tensor,
    depth: torch.Tensor,
    image_size: tuple[int, int],
    lengths: torch.Tensor | None = None,
    near: float = 0.0,
) -> Splat:
    """Z-buffer of points that each cover one pixel: per pixel, the nearest point.

    Args:
        xy: (N, P, 2) float continuous pixel coordinates (x right, y down, origin at the
            top-left corner of the image; pixel (row i, col j) covers [j, j+1) x [i, i+1)),
            at the resolution of ``image_size``.
        depth: (N, P) float view-space z (distance along the optical axis), dtype and device
            of xy.
        image_size: (H, W) output size in pixels.
        lengths: (N,) int, valid points of each batch element (default all P).
        near: >= 0; points with depth <= near are culled (NPBG++: 1.0).

    Returns:
        Splat(index, depth), both (N, H, W). A point is skipped when its depth is <= near or
        not finite, a coordinate is not finite, or it falls outside the image. Identical on
        CPU and CUDA.
    """
    height, width = _check_image_size(image_size, "splat_points")
    near = _check_near(near, "splat_points")
    xy_c, depth_c, lengths = _prepare(xy, depth, lengths, "splat_points")
    index, winner_depth = _splat(xy_c, depth_c, lengths, height, width, near)
    return Splat(index, winner_depth.to(depth.dtype))


def splat_points_multiscale(
    xy: torch.Tensor,
    depth: torch.Tensor,
    image_size: tuple[int, int],
    scales: Sequence[float] = NPBGPP_SCALES,
    lengths: torch.Tensor | None = None,
    near: float = 0.0,
) -> list[Splat]:
    """:func:`splat_points` at several resolutions, as NPBG++'s 5-scale raster pyramid.

    Scale s renders (int(s * H), int(s * W)) pixels, the coordinates rescaled by
    (int(s * W) / W, int(s * H) / H) (see :func:`scale_coordinates`), so the image's edges stay
    its edges.

    Args:
        xy, depth, lengths, near: as :func:`splat_points`; xy at the resolution image_size.
        image_size: (H, W) size of the full-resolution image.
        scales: positive factors (default NPBG++'s 1, 1/2, 1/4, 1/8, 1/16).

    Returns:
        One Splat per scale, in the order of ``scales``.
    """
    height, width = _check_image_size(image_size, "splat_points_multiscale")
    near = _check_near(near, "splat_points_multiscale")
    scales = _check_scales(scales)
    xy_c, depth_c, lengths = _prepare(xy, depth, lengths, "splat_points_multiscale")
    results = []
    for scale in scales:
        xy_s, (h, w) = scale_coordinates(xy_c, (height, width), scale)
        index, winner_depth = _splat(xy_s, depth_c, lengths, h, w, near)
        results.append(Splat(index, winner_depth.to(depth.dtype)))
    return results


def scale_coordinates(
    xy: torch.Tensor, image_size: tuple[int, int], scale: float
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pixel coordinates at another resolution: (int(scale * H), int(scale * W)) pixels.

    Args:
        xy: (..., 2) continuous pixel coordinates (x, y) in an image of size image_size.
        image_size: (H, W).
        scale: positive factor.

    Returns:
        xy * (w / W, h / H) (a zero-sized side keeps its coordinate; xy itself when both
        factors are 1), and the size (h, w).
    """
    height, width = image_size
    h, w = int(scale * height), int(scale * width)
    factor_x = w / width if width else 1.0
    factor_y = h / height if height else 1.0
    if factor_x == factor_y == 1.0:
        return xy, (h, w)
    if factor_x == factor_y:  # the common case; a scalar product is several times faster
        return xy * factor_x, (h, w)
    return xy * xy.new_tensor([factor_x, factor_y]), (h, w)


def scatter_features(
    features: torch.Tensor, index: torch.Tensor, background: torch.Tensor | None = None
) -> torch.Tensor:
    """Image of the winners' features: pixel (n, :, i, j) = features[n, index[n, i, j]].

    NPBG++'s feature splat. Differentiable with respect to features (only the winners get a
    gradient) and background (its gradient sums the output gradient over empty pixels).

    Args:
        features: (N, P, C) float per-point features (descriptors).
        index: (N, H, W) int point index per pixel, -1 where empty (:attr:`Splat.index`).
        background: (C,) feature of empty pixels, dtype and device of features; None for zeros.

    Returns:
        (N, C, H, W) tensor, dtype of features.
    """
    N, P, C = _check_features(features, index, background)
    _, H, W = index.shape
    if background is None:
        background = features.new_zeros(C)
    if P == 0:  # no point to gather from: index is all -1
        return background[None, :, None, None].expand(N, C, H, W).contiguous()
    flat = index.reshape(N, 1, H * W).to(torch.int64)
    gathered = features.transpose(1, 2).gather(2, flat.clamp(min=0).expand(N, C, H * W))
    image = torch.where(flat >= 0, gathered, background[None, :, None])
    return image.reshape(N, C, H, W)


def _splat(
    xy: torch.Tensor,
    depth: torch.Tensor,
    lengths: torch.Tensor,
    height: int,
    width: int,
    near: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    if geomkit_extension().use_kernel("splat_points", xy.device):
        _register_autograd()
        return torch.ops.geomkit.splat_points(xy, depth, lengths, height, width, near)
    return _reference.splat_points(xy, depth, lengths, height, width, near)


def _prepare(
    xy: torch.Tensor, depth: torch.Tensor, lengths: torch.Tensor | None, op: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked, contiguous xy and depth in float32/float64, and int64 lengths."""
    if not isinstance(xy, torch.Tensor) or xy.dim() != 3 or xy.shape[2] != 2:
        raise ValueError(f"{op}: xy must be a (N, P, 2) tensor, got {shape_of(xy)}")
    if not xy.is_floating_point():
        raise ValueError(f"{op}: xy must be floating point, got {xy.dtype}")
    N, P, _ = xy.shape
    if not isinstance(depth, torch.Tensor) or depth.shape != (N, P):
        raise ValueError(f"{op}: depth must be a ({N}, {P}) tensor like xy, got {shape_of(depth)}")
    if depth.dtype != xy.dtype or depth.device != xy.device:
        raise ValueError(
            f"{op}: depth ({depth.dtype}, {depth.device}) must share dtype and device with xy "
            f"({xy.dtype}, {xy.device})"
        )
    if P >= 2**32:
        raise ValueError(f"{op}: at most 2^32 - 1 points per batch element, got {P}")
    compute_dtype = xy.dtype if xy.dtype in (torch.float32, torch.float64) else torch.float32
    xy_c = xy.to(compute_dtype).contiguous()
    depth_c = depth.to(compute_dtype).contiguous()
    return xy_c, depth_c, check_lengths(lengths, N, P, xy.device, op, "lengths")


def _check_image_size(image_size, op: str) -> tuple[int, int]:
    if (
        not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(is_int(v) and v >= 0 for v in image_size)
    ):
        raise ValueError(f"{op}: image_size must be (H, W), two ints >= 0, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _check_near(near, op: str) -> float:
    if (
        isinstance(near, bool)
        or not isinstance(near, numbers.Real)
        or not math.isfinite(near)
        or near < 0
    ):
        raise ValueError(f"{op}: near must be a finite number >= 0, got {near!r}")
    return float(near)


def _check_scales(scales) -> tuple[float, ...]:
    valid = isinstance(scales, Sequence) and len(scales) > 0
    valid = valid and all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0
        for s in scales
    )
    if not valid:
        raise ValueError(
            f"splat_points_multiscale: scales must be a non-empty sequence of positive numbers, "
            f"got {scales!r}"
        )
    return tuple(float(s) for s in scales)


def _check_features(
    features: torch.Tensor, index: torch.Tensor, background: torch.Tensor | None
) -> tuple[int, int, int]:
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        raise ValueError(f"scatter_features: features must be (N, P, C), got {shape_of(features)}")
    if not features.is_floating_point():
        raise ValueError(f"scatter_features: features must be floating point, got {features.dtype}")
    N, P, C = features.shape
    if (
        not isinstance(index, torch.Tensor)
        or index.dim() != 3
        or index.shape[0] != N
        or index.is_floating_point()
        or index.dtype == torch.bool
    ):
        raise ValueError(
            f"scatter_features: index must be an integer (N, H, W) tensor with N = {N}, "
            f"got {shape_of(index)}"
        )
    if index.device != features.device:
        raise ValueError(
            f"scatter_features: index is on {index.device}, features on {features.device}"
        )
    if index.numel() and (int(index.min()) < -1 or int(index.max()) >= P):
        raise ValueError(f"scatter_features: index must lie in [-1, {P - 1}] (-1: empty pixel)")
    if background is not None and (
        not isinstance(background, torch.Tensor)
        or background.shape != (C,)
        or background.dtype != features.dtype
        or background.device != features.device
    ):
        raise ValueError(
            f"scatter_features: background must be a ({C},) tensor with the dtype and device of "
            f"features, got {shape_of(background)}"
        )
    return N, P, C


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[0])
    ctx.num_points = inputs[1].shape[1]


def _backward(ctx, _grad_index, grad_depth):
    """The winners' depths are gathered from the input depth: scatter their gradients back."""
    (index,) = ctx.saved_tensors
    N = index.shape[0]
    flat = index.reshape(N, -1)
    grad = torch.where(flat >= 0, grad_depth.reshape(N, -1), 0)
    grad_input = grad.new_zeros(N, ctx.num_points)
    grad_input.scatter_add_(1, flat.clamp(min=0), grad)
    return None, grad_input, None, None, None, None


def _register_autograd() -> None:
    global _autograd_registered
    if not _autograd_registered:
        torch.library.register_autograd(
            "geomkit::splat_points", _backward, setup_context=_setup_context
        )
        _autograd_registered = True
