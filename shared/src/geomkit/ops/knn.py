"""K nearest neighbours between padded point batches (PyTorch3D's ``knn_points`` semantics).

Compiled kernels (C++ CPU with an exact uniform-grid search, CUDA brute force) run where
available; the pure-PyTorch reference in ``_reference.py`` is the definition and the fallback.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomkit.ext import geomkit_extension
from geomkit.ops import _reference
from geomkit.ops._checks import check_lengths, shape_of

_autograd_registered = False


class KNN(NamedTuple):
    """Result of :func:`knn_points`.

    dists: (N, P1, K) squared Euclidean (norm 2) or Manhattan (norm 1) distances, nearest
        first; 0 where k >= lengths2[n] or i >= lengths1[n].
    idx: (N, P1, K) int64 indices into p2[n]; 0 at the same padded places.
    knn: (N, P1, K, D) the neighbours' coordinates when ``return_nn``, else None.
    """

    dists: torch.Tensor
    idx: torch.Tensor
    knn: torch.Tensor | None


def knn_points(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor | None = None,
    lengths2: torch.Tensor | None = None,
    norm: int = 2,
    K: int = 1,
    return_nn: bool = False,
    return_sorted: bool = True,
) -> KNN:
    """For each point of p1, its K nearest points of p2 (exact), as PyTorch3D's knn_points.

    Args:
        p1: (N, P1, D) float queries.
        p2: (N, P2, D) float points, same dtype and device.
        lengths1: (N,) int, valid rows of each p1[n] (default all P1).
        lengths2: (N,) int, valid rows of each p2[n] (default all P2).
        norm: 2 for squared Euclidean distances, 1 for Manhattan (L1) distances.
        K: neighbours per query (K > lengths2[n] pads the rest with zeros).
        return_nn: also gather the neighbours' coordinates.
        return_sorted: accepted for PyTorch3D compatibility; results are always sorted.

    Returns:
        KNN(dists, idx, knn). Ties go to the lower index. dists are differentiable with
        respect to p1 and p2.
    """
    del return_sorted
    _check_points(p1, p2, K, norm)
    lengths1 = check_lengths(lengths1, *p1.shape[:2], p1.device, "knn_points", "lengths1")
    lengths2 = check_lengths(lengths2, *p2.shape[:2], p2.device, "knn_points", "lengths2")
    compute_dtype = p1.dtype if p1.dtype in (torch.float32, torch.float64) else torch.float32
    a, b = p1.to(compute_dtype).contiguous(), p2.to(compute_dtype).contiguous()
    if geomkit_extension().use_kernel("knn_points", p1.device):
        _register_autograd()
        dists, idx = torch.ops.geomkit.knn_points(a, b, lengths1, lengths2, K, norm)
    else:
        dists, idx = _reference.knn_points(a, b, lengths1, lengths2, K, norm)
    dists = dists.to(p1.dtype)
    knn = knn_gather(p2, idx, lengths2) if return_nn else None
    return KNN(dists, idx, knn)


def knn_gather(
    x: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Gather per-neighbour features: x (N, P2, U), idx (N, P1, K) -> (N, P1, K, U).

    Where k >= lengths[n] (neighbours that do not exist), the result is 0, as PyTorch3D's.
    """
    if x.dim() != 3 or idx.dim() != 3 or x.shape[0] != idx.shape[0]:
        raise ValueError(f"knn_gather: x (N, P2, U) and idx (N, P1, K), got {x.shape}, {idx.shape}")
    N, P1, K = idx.shape
    # Rows by index_select on the flattened batch: 2-3x faster than gather on an expanded
    # index, forward and backward.
    offsets = torch.arange(N, device=idx.device).reshape(N, 1, 1) * x.shape[1]
    rows = x.reshape(-1, x.shape[2]).index_select(0, (idx + offsets).reshape(-1))
    out = rows.reshape(N, P1, K, x.shape[2])
    if lengths is not None:
        missing = torch.arange(K, device=x.device)[None, :] >= lengths.to(x.device)[:, None]
        out = out.masked_fill(missing[:, None, :, None], 0)
    return out


def _check_points(p1: torch.Tensor, p2: torch.Tensor, K: int, norm: int) -> None:
    for name, p in (("p1", p1), ("p2", p2)):
        if not isinstance(p, torch.Tensor) or p.dim() != 3:
            raise ValueError(f"knn_points: {name} must be a (N, P, D) tensor, got {shape_of(p)}")
        if not p.is_floating_point():
            raise ValueError(f"knn_points: {name} must be floating point, got {p.dtype}")
    if p1.shape[0] != p2.shape[0] or p1.shape[2] != p2.shape[2]:
        raise ValueError(
            f"knn_points: p1 {tuple(p1.shape)} and p2 {tuple(p2.shape)} differ in N or D"
        )
    if p1.device != p2.device or p1.dtype != p2.dtype:
        raise ValueError("knn_points: p1 and p2 must share device and dtype")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"knn_points: K must be a positive int, got {K!r}")
    if norm not in (1, 2):
        raise ValueError(f"knn_points: norm must be 1 or 2, got {norm!r}")


def knn_points_backward(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    idx: torch.Tensor,
    norm: int,
    grad_dists: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of dists with respect to p1 and p2 for fixed neighbour indices."""
    N, P1, K = idx.shape
    valid = (torch.arange(P1, device=p1.device)[None, :, None] < lengths1[:, None, None]) & (
        torch.arange(K, device=p1.device)[None, None, :] < lengths2[:, None, None]
    )
    diff = p1[:, :, None, :] - knn_gather(p2, idx)
    slope = 2 * diff if norm == 2 else diff.sign()
    grad = slope * (grad_dists * valid)[..., None]
    grad_p1 = grad.sum(2)
    grad_p2 = torch.zeros_like(p2).scatter_add_(
        1, idx.reshape(N, P1 * K, 1).expand(-1, -1, p2.shape[2]), -grad.reshape(N, P1 * K, -1)
    )
    return grad_p1, grad_p2


def _setup_context(ctx, inputs, output) -> None:
    p1, p2, lengths1, lengths2, _K, norm = inputs
    ctx.save_for_backward(p1, p2, lengths1, lengths2, output[1])
    ctx.norm = norm


def _backward(ctx, grad_dists, _grad_idx):
    p1, p2, lengths1, lengths2, idx = ctx.saved_tensors
    grad_p1, grad_p2 = knn_points_backward(p1, p2, lengths1, lengths2, idx, ctx.norm, grad_dists)
    return grad_p1, grad_p2, None, None, None, None


def _register_autograd() -> None:
    global _autograd_registered
    if not _autograd_registered:
        torch.library.register_autograd(
            "geomkit::knn_points", _backward, setup_context=_setup_context
        )
        _autograd_registered = True
