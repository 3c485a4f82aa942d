"""Chamfer distance between padded point batches (PyTorch3D's ``chamfer_distance``), on
:func:`geomkit.ops.knn.knn_points` with K = 1, so gradients flow through its kernels.

What it computes, with NN_Y(p) the nearest point of Y to p and dist the chosen distance:

    chamfer(X, Y) = reduce_i dist(x_i, NN_Y(x_i)) + reduce_j dist(y_j, NN_X(y_j))

With the defaults (``distance="squared_euclidean"``, both reductions "mean") that is, per
cloud, mean_i |x_i - NN_Y(x_i)|^2 + mean_j |y_j - NN_X(y_j)|^2, then the mean over the batch:
the SUM of the two directions' means of SQUARED distances. It is neither their average nor a
distance in the units of the points; PyTorch3D's users misread it often.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from geomkit.ops._checks import check_lengths
from geomkit.ops.knn import knn_gather, knn_points

# distance name -> knn_points norm that finds the nearest neighbour under it
DISTANCES = {"squared_euclidean": 2, "euclidean": 2, "manhattan": 1}
POINT_REDUCTIONS = ("mean", "sum", "max", None)
BATCH_REDUCTIONS = ("mean", "sum", None)

Terms = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class ChamferResult(NamedTuple):
    """Result of :func:`chamfer_distance`.

    distance: the reduced distance term: a scalar with a batch reduction, (N,) without one,
        and with ``point_reduction=None`` the per-point terms: a pair ((N, P1), (N, P2)), or
        (N, P1) alone when single-directional; 0 at padded points.
    normals: the normal term, reduced the same way; None when no normals were given.
    """

    distance: Terms
    normals: Terms | None


def chamfer_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    *,
    distance: str = "squared_euclidean",
    point_reduction: str | None = "mean",
    batch_reduction: str | None = "mean",
    single_directional: bool = False,
    abs_cosine: bool = True,
) -> ChamferResult:
    """Chamfer distance between point clouds x and y, as PyTorch3D's chamfer_distance.

    Per cloud n and direction x -> y, every valid point x[n, i] (i < x_lengths[n]) is matched
    to its nearest valid y[n, j] under ``distance``, giving the term dist(x_i, y_j) and, with
    normals, 1 - |cos(nx_i, ny_j)| (1 - cos when ``abs_cosine`` is False). ``point_reduction``
    reduces each direction over its valid points: "mean" (sum / lengths[n], 0 for an empty
    cloud), "sum", "max" (the larger direction is kept instead of adding them: a Hausdorff
    distance) or None. The two directions' results are ADDED ("mean", "sum"); then
    ``batch_reduction`` takes the "mean" (over N) or "sum" of the per-cloud values, or None.

    Defaults: the sum over both directions of the mean SQUARED Euclidean distance, averaged
    over the batch (PyTorch3D's norm=2). ONet's Chamfer-L1 is
    0.5 * chamfer_distance(x, y, distance="euclidean").distance; NU-MCC's CD is
    distance="manhattan" (PyTorch3D's norm=1: L1 nearest neighbour, L1 distance).

    Args:
        x: (N, P1, D) float points.
        y: (N, P2, D) float points, same dtype and device.
        x_lengths: (N,) int, valid rows of each x[n] (default all P1).
        y_lengths: (N,) int, valid rows of each y[n] (default all P2).
        x_normals: (N, P1, D) normals of x; give both normals or neither.
        y_normals: (N, P2, D) normals of y.
        distance: "squared_euclidean" |x - y|^2, "euclidean" |x - y|, or "manhattan"
            sum |x_d - y_d|.
        point_reduction: "mean", "sum", "max" (no normals) or None (then batch_reduction must
            be None).
        batch_reduction: "mean", "sum" or None.
        single_directional: only the direction x -> y.
        abs_cosine: normal term 1 - |cos| (orientation ignored) rather than 1 - cos.

    Returns:
        ChamferResult(distance, normals); see its docstring for the shapes. Where y[n] is
        empty, x's distance terms are 0 and its normal terms 1 (as PyTorch3D). Differentiable
        with respect to x, y and the normals; the Euclidean distance has gradient 0 where two
        points coincide.
    """
    _check_options(distance, point_reduction, batch_reduction, x_normals, y_normals)
    x_lengths, y_lengths = _check_clouds(x, y, x_lengths, y_lengths, x_normals, y_normals)
    dist_x, normal_x = _nearest_terms(
        x, y, x_lengths, y_lengths, x_normals, y_normals, distance, abs_cosine
    )
    dist_x = _reduce_points(dist_x, x_lengths, point_reduction)
    normal_x = _reduce_points(normal_x, x_lengths, point_reduction)
    if single_directional:
        dist, normals = dist_x, normal_x
    else:
        dist_y, normal_y = _nearest_terms(
            y, x, y_lengths, x_lengths, y_normals, x_normals, distance, abs_cosine
        )
        dist_y = _reduce_points(dist_y, y_lengths, point_reduction)
        normal_y = _reduce_points(normal_y, y_lengths, point_reduction)
        dist, normals = _combine(dist_x, dist_y, normal_x, normal_y, point_reduction)
    return ChamferResult(
        _reduce_batch(dist, batch_reduction), _reduce_batch(normals, batch_reduction)
    )


def _nearest_terms(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    x_normals: torch.Tensor | None,
    y_normals: torch.Tensor | None,
    distance: str,
    abs_cosine: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, P1) distance terms of x's points to y, and normal terms (or None); 0 when padded."""
    nearest = knn_points(x, y, x_lengths, y_lengths, norm=DISTANCES[distance], K=1)
    dist = nearest.dists[..., 0]  # knn_points pads with 0: padded points add nothing
    if distance == "euclidean":
        dist = _sqrt_zero_grad_at_zero(dist)
    if x_normals is None:
        return dist, None
    nearest_normals = knn_gather(y_normals, nearest.idx, y_lengths)[..., 0, :]
    cos = F.cosine_similarity(x_normals, nearest_normals, dim=2, eps=1e-6)
    term = 1 - (cos.abs() if abs_cosine else cos)
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < x_lengths[:, None]
    return dist, term * valid


def _sqrt_zero_grad_at_zero(squared: torch.Tensor) -> torch.Tensor:
    """sqrt, with gradient 0 instead of inf * 0 = NaN where the argument is 0."""
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1).sqrt(), 0)


def _reduce_points(
    terms: torch.Tensor | None, lengths: torch.Tensor, point_reduction: str | None
) -> torch.Tensor | None:
    if terms is None or point_reduction is None:
        return terms
    if point_reduction == "max":
        # Terms are >= 0 and padded with 0, so padding never wins.
        return terms.amax(dim=1) if terms.shape[1] else terms.new_zeros(terms.shape[0])
    total = terms.sum(dim=1)
    return total if point_reduction == "sum" else total / lengths.clamp(min=1)


def _combine(dist_x, dist_y, normal_x, normal_y, point_reduction):
    if point_reduction is None:
        return (dist_x, dist_y), (None if normal_x is None else (normal_x, normal_y))
    if point_reduction == "max":
        return torch.maximum(dist_x, dist_y), None
    return dist_x + dist_y, (None if normal_x is None else normal_x + normal_y)


def _reduce_batch(values, batch_reduction: str | None):
    if values is None or batch_reduction is None:
        return values
    total = values.sum()
    return total if batch_reduction == "sum" else total / max(values.shape[0], 1)


def _check_options(distance, point_reduction, batch_reduction, x_normals, y_normals) -> None:
    if distance not in DISTANCES:
        raise ValueError(
            f"chamfer_distance: distance must be one of {sorted(DISTANCES)}, got {distance!r}"
        )
    if point_reduction not in POINT_REDUCTIONS:
        raise ValueError(
            f"chamfer_distance: point_reduction must be one of {POINT_REDUCTIONS}, "
            f"got {point_reduction!r}"
        )
    if batch_reduction not in BATCH_REDUCTIONS:
        raise ValueError(
            f"chamfer_distance: batch_reduction must be one of {BATCH_REDUCTIONS}, "
            f"got {batch_reduction!r}"
        )
    if point_reduction is None and batch_reduction is not None:
        raise ValueError(
            "chamfer_distance: batch_reduction must be None when point_reduction is None"
        )
    if (x_normals is None) != (y_normals is None):
        raise ValueError("chamfer_distance: give both x_normals and y_normals, or neither")
    if point_reduction == "max" and x_normals is not None:
        raise ValueError('chamfer_distance: normals need point_reduction "mean", "sum" or None')


def _check_clouds(x, y, x_lengths, y_lengths, x_normals, y_normals):
    """Checks shapes; returns x_lengths and y_lengths as (N,) int64 on the points' device."""
    for name, p in (("x", x), ("y", y)):
        if not isinstance(p, torch.Tensor) or p.dim() != 3 or not p.is_floating_point():
            shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(
                f"chamfer_distance: {name} must be a float (N, P, D) tensor, got {shape}"
            )
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            f"chamfer_distance: x {tuple(x.shape)} and y {tuple(y.shape)} differ in N or D"
        )
    if x.device != y.device or x.dtype != y.dtype:
        raise ValueError("chamfer_distance: x and y must share device and dtype")
    for name, normals, points in (("x_normals", x_normals, x), ("y_normals", y_normals, y)):
        if normals is not None and (
            not isinstance(normals, torch.Tensor) or normals.shape != points.shape
        ):
            raise ValueError(
                f"chamfer_distance: {name} must have the shape of its points, {tuple(points.shape)}"
            )
    op = "chamfer_distance"
    x_lengths = check_lengths(x_lengths, *x.shape[:2], x.device, op, "x_lengths")
    return x_lengths, check_lengths(y_lengths, *y.shape[:2], y.device, op, "y_lengths")
