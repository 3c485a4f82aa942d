"""Reference of ball_query: the definition, an exhaustive scan in PyTorch.

Padded batches with int64 ``lengths``; outputs padded as PyTorch3D pads them (dists 0, idx -1).
"""

from __future__ import annotations

import torch

from geomkit.ops._reference.knn import pairwise_distances

_MAX_CHUNK_ELEMENTS = 1 << 24


def ball_query(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    K: int,
    radius: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each valid p1 point, the first K valid p2 points (in index order) inside the ball.

    Inside means squared Euclidean distance < radius * radius, strictly, with radius * radius
    rounded in the points' dtype.

    Returns:
        dists (N, P1, K) squared distances (differentiable with respect to p1 and p2) and
        idx (N, P1, K) int64 in increasing order; 0 and -1 where fewer than K points are inside
        or i >= lengths1[n].
    """
    N, P1, _ = p1.shape
    dists = p1.new_zeros(N, P1, K)
    idx = torch.full((N, P1, K), -1, dtype=torch.int64, device=p1.device)
    r = torch.tensor(radius, dtype=p1.dtype, device=p1.device)
    radius2 = r * r
    for n in range(N):
        n1, n2 = int(lengths1[n]), int(lengths2[n])
        if n1 == 0 or n2 == 0:
            continue
        chunk = max(1, _MAX_CHUNK_ELEMENTS // max(n2 * p1.shape[-1], 1))
        for start in range(0, n1, chunk):
            stop = min(start + chunk, n1)
            d = pairwise_distances(p1[n, start:stop], p2[n, :n2], 2)
            inside = d < radius2
            # Slot of each inside point in its row: how many inside points precede it.
            slot = inside.cumsum(1) - 1
            rows, cols = torch.nonzero(inside & (slot < K), as_tuple=True)
            dists[n, start + rows, slot[rows, cols]] = d[rows, cols]
            idx[n, start + rows, slot[rows, cols]] = cols
    return dists, idx
