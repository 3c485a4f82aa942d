"""Reference of chamfer_distance: all pairwise distances, nearest neighbours by exhaustive min.

For tests: it shares no code with geomkit.ops.chamfer (which runs on knn_points) beyond the
pairwise distances of the knn reference. Arguments as the public function's, after its checks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geomkit.ops._reference.knn import pairwise_distances


def chamfer_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    x_normals: torch.Tensor | None,
    y_normals: torch.Tensor | None,
    distance: str,
    point_reduction: str | None,
    batch_reduction: str | None,
    single_directional: bool,
    abs_cosine: bool,
):
    """Chamfer distance by brute force; returns (distance, normals) as the public function."""
    with_normals = x_normals is not None
    terms_x = nearest_terms(x, y, x_lengths, y_lengths, x_normals, y_normals, distance, abs_cosine)
    reduced_x = [reduce_points(t, x_lengths, point_reduction) for t in terms_x]
    if single_directional:
        dist, normals = reduced_x
    else:
        terms_y = nearest_terms(
            y, x, y_lengths, x_lengths, y_normals, x_normals, distance, abs_cosine
        )
        reduced_y = [reduce_points(t, y_lengths, point_reduction) for t in terms_y]
        if point_reduction is None:
            dist = (reduced_x[0], reduced_y[0])
            normals = (reduced_x[1], reduced_y[1]) if with_normals else None
        elif point_reduction == "max":
            dist, normals = torch.maximum(reduced_x[0], reduced_y[0]), None
        else:
            dist = reduced_x[0] + reduced_y[0]
            normals = reduced_x[1] + reduced_y[1] if with_normals else None
    if batch_reduction is None:
        return dist, normals
    return reduce_batch(dist, batch_reduction), (
        reduce_batch(normals, batch_reduction) if normals is not None else None
    )


def nearest_terms(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    x_normals: torch.Tensor | None,
    y_normals: torch.Tensor | None,
    distance: str,
    abs_cosine: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per point of x (N, P1): distance to its nearest y point, and 1 - (|)cos(|) of normals.

    Zero for padded points and, as PyTorch3D, a distance 0 and a normal term 1 (cosine with a
    missing normal) when y[n] is empty.
    """
    N, P1, _ = x.shape
    dist = x.new_zeros(N, P1)
    normal = x.new_zeros(N, P1) if x_normals is not None else None
    for n in range(N):
        n1, n2 = int(x_lengths[n]), int(y_lengths[n])
        if n1 == 0:
            continue
        if n2 == 0:
            if normal is not None:
                normal[n, :n1] = 1
            continue
        norm = 1 if distance == "manhattan" else 2
        nearest = pairwise_distances(x[n, :n1], y[n, :n2], norm).argmin(dim=1)
        diff = x[n, :n1] - y[n, nearest]
        if distance == "manhattan":
            dist[n, :n1] = diff.abs().sum(-1)
        elif distance == "euclidean":
            dist[n, :n1] = torch.linalg.vector_norm(diff, dim=-1)
        else:
            dist[n, :n1] = diff.square().sum(-1)
        if normal is not None:
            cos = F.cosine_similarity(x_normals[n, :n1], y_normals[n, nearest], dim=-1, eps=1e-6)
            normal[n, :n1] = 1 - (cos.abs() if abs_cosine else cos)
    return dist, normal


def reduce_points(
    terms: torch.Tensor | None, lengths: torch.Tensor, point_reduction: str | None
) -> torch.Tensor | None:
    """(N, P) per-point terms -> (N,) per cloud (mean over lengths[n], 0 for empty clouds)."""
    if terms is None or point_reduction is None:
        return terms
    if point_reduction == "max":
        return terms.max(dim=1).values if terms.shape[1] else terms.new_zeros(terms.shape[0])
    total = terms.sum(dim=1)
    return total if point_reduction == "sum" else total / lengths.clamp(min=1)


def reduce_batch(values: torch.Tensor, batch_reduction: str) -> torch.Tensor:
    total = values.sum()
    return total if batch_reduction == "sum" else total / max(values.shape[0], 1)
