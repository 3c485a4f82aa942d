"""Reference of sample_farthest_points: the definition, one step at a time in PyTorch.

Padded batches with int64 ``lengths``; indices padded with -1 as PyTorch3D pads them.
"""

from __future__ import annotations

import torch

from geomkit.ops._reference.knn import pairwise_distances


def sample_farthest_points(
    points: torch.Tensor,
    lengths: torch.Tensor,
    K: torch.Tensor,
    start_idxs: torch.Tensor,
) -> torch.Tensor:
    """Iterative farthest point sampling by exhaustive search.

    Args:
        points: (N, P, D) float points.
        lengths: (N,) int64 valid rows of each cloud.
        K: (N,) int64 points to sample per cloud.
        start_idxs: (N,) int64 first index of each cloud, in [0, lengths[n]) where lengths[n] > 0.

    Returns:
        idx: (N, max K) int64. Row n holds min(K[n], lengths[n]) indices: start_idxs[n], then at
        each step the point whose squared Euclidean distance to the selected set is the largest
        (ties to the lower index, as torch.argmax); -1 after them.
    """
    N = points.shape[0]
    max_k = int(K.max()) if N else 0
    idx = torch.full((N, max_k), -1, dtype=torch.int64, device=points.device)
    for n in range(N):
        count = int(lengths[n])
        k_n = min(int(K[n]), count)
        if k_n == 0:
            continue
        cloud = points[n, :count]
        selected = int(start_idxs[n])
        idx[n, 0] = selected
        min_dist = torch.full((count,), float("inf"), dtype=points.dtype, device=points.device)
        for k in range(1, k_n):
            to_selected = pairwise_distances(cloud[selected : selected + 1], cloud, 2)[0]
            min_dist = torch.minimum(min_dist, to_selected)
            selected = int(torch.argmax(min_dist))
            idx[n, k] = selected
    return idx
