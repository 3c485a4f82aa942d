"""Iterative farthest point sampling (PyTorch3D's ``sample_farthest_points`` semantics).

Compiled kernels (C++ CPU, CUDA with one block per cloud) run where available; the pure-PyTorch
reference in ``_reference/fps.py`` is the definition and the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from geomkit.errors import InputError
from geomkit.ext import geomkit_extension
from geomkit.ops._checks import check_lengths
from geomkit.ops._reference import fps as _reference_fps


class FarthestPoints(NamedTuple):
    """Result of :func:`sample_farthest_points`.

    points: (N, max K, D) the selected points, dtype of the input, differentiable with respect
        to it; 0 where idx is -1.
    idx: (N, max K) int64 indices into points[n] in the order selected; -1 where
        k >= min(K[n], lengths[n]).
    """

    points: torch.Tensor
    idx: torch.Tensor


def sample_farthest_points(
    points: torch.Tensor,
    lengths: torch.Tensor | None = None,
    K: int | Sequence[int] | torch.Tensor = 50,
    random_start_point: bool = False,
    generator: torch.Generator | None = None,
) -> FarthestPoints:
    """K points per cloud, each the farthest from those chosen before it (PointNet++ FPS).

    Starting from index 0 (or a random index), every step selects the valid point whose
    squared Euclidean distance to the nearest already selected point is the largest; ties go
    to the lower index. Once every valid point is at distance 0 (fewer distinct points than
    K[n]), steps repeat the first of them, as PyTorch3D. Distances are computed in float32
    (float64 for float64 input).

    Args:
        points: (N, P, D) float points.
        lengths: (N,) int, valid rows of each cloud (default all P).
        K: points to sample: an int for every cloud, or (N,) ints (a list or an integer
            tensor) for one count per cloud; a cloud with fewer than K[n] points yields all of
            them, in farthest-first order.
        random_start_point: start each cloud at an index drawn uniformly from
            [0, lengths[n]) instead of 0.
        generator: the torch.Generator to draw start indices from (default torch's global
            one, as PyTorch3D); its device is where they are drawn.

    Returns:
        FarthestPoints(points (N, max K, D), idx (N, max K) int64): padded with 0 and -1 where
        k >= min(K[n], lengths[n]), as PyTorch3D. Unlike PyTorch3D, an empty cloud (or
        K[n] = 0) gives a row of -1 only, and float64 input stays float64.

    Raises:
        ValueError: wrong argument shapes, types or ranges.
        InputError: a valid point has NaN or infinite coordinates.
    """
    _check_points(points)
    lengths = check_lengths(
        lengths, *points.shape[:2], points.device, "sample_farthest_points", "lengths"
    )
    counts = _check_k(K, points)
    _check_finite(points, lengths)
    start_idxs = _start_indices(lengths, random_start_point, generator)
    compute_dtype = (
        points.dtype if points.dtype in (torch.float32, torch.float64) else torch.float32
    )
    pts = points.detach().to(compute_dtype).contiguous()
    if points.shape[0] == 0:  # no clouds: the width is an int K's value
        width = K if isinstance(K, int) else 0
        idx = torch.zeros((0, width), dtype=torch.int64, device=points.device)
    elif geomkit_extension().use_kernel("sample_farthest_points", points.device):
        idx = torch.ops.geomkit.sample_farthest_points(pts, lengths, counts, start_idxs)
    else:
        idx = _reference_fps.sample_farthest_points(pts, lengths, counts, start_idxs)
    return FarthestPoints(_gather_points(points, idx), idx)


def _gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (N, P, D) at idx (N, K) -> (N, K, D), 0 where idx is -1."""
    N, P, D = points.shape
    if P == 0:  # nothing to gather: every index is -1
        return points.new_zeros(N, idx.shape[1], D)
    gathered = points.gather(1, idx.clamp(min=0)[:, :, None].expand(-1, -1, D))
    return gathered.masked_fill((idx < 0)[:, :, None], 0)


def _start_indices(
    lengths: torch.Tensor, random_start_point: bool, generator: torch.Generator | None
) -> torch.Tensor:
    if not random_start_point:
        return torch.zeros_like(lengths)
    device = generator.device if generator is not None else torch.device("cpu")
    starts = [
        int(torch.randint(int(count), (1,), generator=generator, device=device)) if count else 0
        for count in lengths.tolist()
    ]
    return torch.tensor(starts, dtype=torch.int64, device=lengths.device)


def _check_points(points: torch.Tensor) -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 3:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"sample_farthest_points: points must be a (N, P, D) tensor, got {shape}")
    if not points.is_floating_point():
        raise ValueError(
            f"sample_farthest_points: points must be floating point, got {points.dtype}"
        )


def _check_k(K, points: torch.Tensor) -> torch.Tensor:
    """K as an (N,) int64 tensor on the points' device."""
    N = points.shape[0]
    message = f"sample_farthest_points: K must be an int >= 0 or {N} of them, got {K!r}"
    if isinstance(K, bool):
        raise ValueError(message)
    if isinstance(K, int):
        counts = torch.full((N,), K, dtype=torch.int64)
    elif isinstance(K, torch.Tensor):
        if K.shape != (N,) or K.is_floating_point() or K.dtype == torch.bool:
            raise ValueError(message)
        counts = K
    elif isinstance(K, Sequence) and all(isinstance(k, int) and not isinstance(k, bool) for k in K):
        if len(K) != N:
            raise ValueError(message)
        counts = torch.tensor(list(K), dtype=torch.int64)
    else:
        raise ValueError(message)
    if N and int(counts.min()) < 0:
        raise ValueError(message)
    return counts.to(device=points.device, dtype=torch.int64).contiguous()


def _check_finite(points: torch.Tensor, lengths: torch.Tensor) -> None:
    N, P, _ = points.shape
    valid = torch.arange(P, device=points.device)[None, :] < lengths[:, None]
    bad = valid & ~torch.isfinite(points).all(dim=2)
    if bool(bad.any()):
        cloud, row = (int(v) for v in torch.nonzero(bad)[0])
        raise InputError(
            f"sample_farthest_points: points has {int(bad.sum())} valid rows with NaN or "
            f"infinite coordinates (first: points[{cloud}, {row}]); fix or drop those points"
        )
