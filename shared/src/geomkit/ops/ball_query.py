"""Ball query between padded point batches (PyTorch3D's ``ball_query`` semantics).

Compiled kernels (C++ CPU with an index-order scan and a kd-tree, CUDA brute force) run where
available; the pure-PyTorch reference in ``_reference/ball_query.py`` is the definition and the
fallback.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from geomkit.ext import geomkit_extension
from geomkit.ops._checks import check_lengths
from geomkit.ops._reference.ball_query import ball_query as reference_ball_query

_autograd_registered = False


class BallQuery(NamedTuple):
    """Result of :func:`ball_query` (field names as PyTorch3D's).

    dists: (N, P1, K) squared Euclidean distances; 0 in padded slots.
    idx: (N, P1, K) int64 indices into p2[n], increasing along K; -1 in padded slots.
    knn: (N, P1, K, D) the neighbours' coordinates when ``return_nn``, 0 in padded slots;
        else None.

    Padded slots: k >= the number of p2 points inside the ball, or i >= lengths1[n].
    """

    dists: torch.Tensor
    idx: torch.Tensor
    knn: torch.Tensor | None


def ball_query(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor | None = None,
    lengths2: torch.Tensor | None = None,
    K: int = 500,
    radius: float = 0.2,
    return_nn: bool = True,
) -> BallQuery:
    """For each point of p1, the first K points of p2 (in index order) within ``radius``.

    Not the K nearest: the K lowest indices among the p2 points whose squared Euclidean
    distance is < radius**2 (strictly; radius**2 rounded in the points' dtype, as PyTorch3D's
    float32 kernels compute it). PointNet++'s grouping.

    Args:
        p1: (N, P1, D) float ball centres.
        p2: (N, P2, D) float points, same dtype and device.
        lengths1: (N,) int, valid rows of each p1[n] (default all P1).
        lengths2: (N,) int, valid rows of each p2[n] (default all P2).
        K: at most this many points per ball.
        radius: the balls' radius (> 0; inf takes the first K points).
        return_nn: also gather the points' coordinates.

    Returns:
        BallQuery(dists, idx, knn); see its docstring for shapes and padding. dists are
        differentiable with respect to p1 and p2 (padded slots get no gradient), knn with
        respect to p2.
    """
    _check_points(p1, p2, K, radius)
    lengths1 = check_lengths(lengths1, *p1.shape[:2], p1.device, "ball_query", "lengths1")
    lengths2 = check_lengths(lengths2, *p2.shape[:2], p2.device, "ball_query", "lengths2")
    compute_dtype = p1.dtype if p1.dtype in (torch.float32, torch.float64) else torch.float32
    a, b = p1.to(compute_dtype).contiguous(), p2.to(compute_dtype).contiguous()
    if geomkit_extension().use_kernel("ball_query", p1.device):
        _register_autograd()
        dists, idx = torch.ops.geomkit.ball_query(a, b, lengths1, lengths2, K, float(radius))
    else:
        dists, idx = reference_ball_query(a, b, lengths1, lengths2, K, float(radius))
    dists = dists.to(p1.dtype)
    knn = _gather_neighbours(p2, idx) if return_nn else None
    return BallQuery(dists, idx, knn)


def _gather_neighbours(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (N, P2, D) at idx (N, P1, K) -> (N, P1, K, D), 0 where idx is -1."""
    N, P1, K = idx.shape
    D = points.shape[2]
    if points.shape[1] == 0:  # nothing to gather: every index is -1
        return points.new_zeros(N, P1, K, D)
    flat = idx.clamp(min=0).reshape(N, P1 * K, 1).expand(-1, -1, D)
    out = points.gather(1, flat).reshape(N, P1, K, D)
    return out.masked_fill((idx < 0)[..., None], 0)


def ball_query_backward(
    p1: torch.Tensor, p2: torch.Tensor, idx: torch.Tensor, grad_dists: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the squared distances with respect to p1 and p2 for fixed idx (-1: none)."""
    N, P1, K = idx.shape
    D = p2.shape[2]
    diff = p1[:, :, None, :] - _gather_neighbours(p2, idx)
    grad = 2 * diff * (grad_dists * (idx >= 0))[..., None]
    grad_p2 = torch.zeros_like(p2)
    if p2.shape[1]:
        flat = idx.clamp(min=0).reshape(N, P1 * K, 1).expand(-1, -1, D)
        grad_p2.scatter_add_(1, flat, -grad.reshape(N, P1 * K, D))
    return grad.sum(2), grad_p2


def _check_points(p1: torch.Tensor, p2: torch.Tensor, K: int, radius: float) -> None:
    for name, p in (("p1", p1), ("p2", p2)):
        if not isinstance(p, torch.Tensor) or p.dim() != 3:
            shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"ball_query: {name} must be a (N, P, D) tensor, got {shape}")
        if not p.is_floating_point():
            raise ValueError(f"ball_query: {name} must be floating point, got {p.dtype}")
    if p1.shape[0] != p2.shape[0] or p1.shape[2] != p2.shape[2]:
        raise ValueError(
            f"ball_query: p1 {tuple(p1.shape)} and p2 {tuple(p2.shape)} differ in N or D"
        )
    if p1.device != p2.device or p1.dtype != p2.dtype:
        raise ValueError("ball_query: p1 and p2 must share device and dtype")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"ball_query: K must be a positive int, got {K!r}")
    if (
        isinstance(radius, bool)
        or not isinstance(radius, (int, float))
        or math.isnan(radius)
        or radius <= 0
    ):
        raise ValueError(f"ball_query: radius must be a number > 0, got {radius!r}")


def _setup_context(ctx, inputs, output) -> None:
    p1, p2 = inputs[0], inputs[1]
    ctx.save_for_backward(p1, p2, output[1])


def _backward(ctx, grad_dists, _grad_idx):
    p1, p2, idx = ctx.saved_tensors
    grad_p1, grad_p2 = ball_query_backward(p1, p2, idx, grad_dists)
    return grad_p1, grad_p2, None, None, None, None


def _register_autograd() -> None:
    global _autograd_registered
    if not _autograd_registered:
        torch.library.register_autograd(
            "geomkit::ball_query", _backward, setup_context=_setup_context
        )
        _autograd_registered = True
