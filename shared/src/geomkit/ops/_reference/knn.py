"""Reference of knn_points, and the pairwise distances other references share.

Padded batches with int64 ``lengths``; outputs padded with zeros as PyTorch3D pads them.
"""

from __future__ import annotations

import torch

_MAX_CHUNK_ELEMENTS = 1 << 24


def knn_points(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    K: int,
    norm: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K nearest neighbours by exhaustive search; ties go to the lower index.

    Returns dists (N, P1, K) (squared Euclidean for norm 2, Manhattan for norm 1) and
    idx (N, P1, K) int64, both zero where i >= lengths1[n] or k >= lengths2[n].
    """
    N, P1, _ = p1.shape
    dists = p1.new_zeros(N, P1, K)
    idx = torch.zeros(N, P1, K, dtype=torch.int64, device=p1.device)
    for n in range(N):
        n1, n2 = int(lengths1[n]), int(lengths2[n])
        k = min(K, n2)
        if n1 == 0 or k == 0:
            continue
        chunk = max(1, _MAX_CHUNK_ELEMENTS // max(n2 * p1.shape[-1], 1))
        for start in range(0, n1, chunk):
            stop = min(start + chunk, n1)
            d = pairwise_distances(p1[n, start:stop], p2[n, :n2], norm)
            # A stable sort of an index-ordered row puts equal distances in index order.
            d_sorted, order = torch.sort(d, dim=1, stable=True)
            dists[n, start:stop, :k] = d_sorted[:, :k]
            idx[n, start:stop, :k] = order[:, :k]
    return dists, idx


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, norm: int) -> torch.Tensor:
    """(A, D) x (B, D) -> (A, B): squared Euclidean (norm 2) or Manhattan (norm 1).

    Accumulates coordinate by coordinate, in the same order as the kernels, so that their
    results match to the last bit on the CPU.
    """
    total = None
    for d in range(a.shape[-1]):
        diff = a[:, None, d] - b[None, :, d]
        term = diff * diff if norm == 2 else diff.abs()
        total = term if total is None else total + term
    if total is None:
        return a.new_zeros(a.shape[0], b.shape[0])
    return total
