"""Nearest-neighbour metrics between point sets (reconstruction vs ground truth).

With d(x, Y) the distance from x to its nearest neighbour in Y, for a prediction P and ground
truth G:

- ``accuracy`` = mean over P of d(p, G); ``completeness`` = mean over G of d(g, P);
- ``chamfer_l1`` = (accuracy + completeness) / 2 (ONet's Chamfer-L1; the ONet paper prints it
  x10); ``chamfer_l2`` = (mean d(p, G)^2 + mean d(g, P)^2) / 2;
- per threshold t: ``precision`` = share of P with d(p, G) < t, ``recall`` = share of G with
  d(g, P) < t, ``fscore`` = 2PR / (P + R) (0 when both are 0);
- ``normal_consistency`` = mean of both directions' mean |n . n_nearest| (unit normals).

``metric="euclidean"`` uses Euclidean distances throughout. ``metric="manhattan"`` is NU-MCC's
variant: accuracy, completeness and chamfer_l1 use the nearest neighbour under the L1 norm and
its L1 distance (NU-MCC reports CD = accuracy + completeness = 2 chamfer_l1), while precision,
recall, F-score, chamfer_l2 and normal consistency stay Euclidean, as in NU-MCC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pykdtree.kdtree import KDTree

from geomkit.ops import knn_points

METRICS = ("euclidean", "manhattan")


def nearest_neighbors(
    query: np.ndarray, points: np.ndarray, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (P,) float64 from each query point to its nearest point, and that index (P,).

    Args:
        query: (P, 3) float array.
        points: (Q, 3) float array, Q >= 1.
        metric: "euclidean" (pykdtree) or "manhattan" (L1 nearest neighbour, geomkit kernel).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if len(points) == 0:
        raise ValueError("nearest_neighbors needs at least one point to search")
    query = np.ascontiguousarray(query, dtype=np.float64)
    points = np.ascontiguousarray(points, dtype=np.float64)
    if metric == "euclidean":
        dist, idx = KDTree(points).query(query, k=1)
        return dist.astype(np.float64), idx.astype(np.int64)
    result = knn_points(torch.from_numpy(query)[None], torch.from_numpy(points)[None], norm=1, K=1)
    return result.dists[0, :, 0].numpy(), result.idx[0, :, 0].numpy()


def precision_recall_fscore(
    dist_pred_to_gt: np.ndarray, dist_gt_to_pred: np.ndarray, threshold: float
) -> dict[str, float]:
    """Shares of prediction / ground-truth points within ``threshold`` (strict <), and F-score."""
    precision = float(np.mean(dist_pred_to_gt < threshold))
    recall = float(np.mean(dist_gt_to_pred < threshold))
    total = precision + recall
    fscore = 2 * precision * recall / total if total > 0 else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "fscore": fscore,
    }


def normal_consistency(
    pred_normals: np.ndarray,
    gt_normals: np.ndarray,
    idx_pred_to_gt: np.ndarray,
    idx_gt_to_pred: np.ndarray,
) -> float:
    """Mean of both directions' mean |n . n_nearest|, normals normalised first (ONet)."""
    pred_n = _unit(pred_normals)
    gt_n = _unit(gt_normals)
    forward = np.abs(np.sum(pred_n * gt_n[idx_pred_to_gt], axis=1)).mean()
    backward = np.abs(np.sum(gt_n * pred_n[idx_gt_to_pred], axis=1)).mean()
    return float((forward + backward) / 2)


def _unit(normals: np.ndarray) -> np.ndarray:
    normals = np.asarray(normals, dtype=np.float64)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)


def pointcloud_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    thresholds: Sequence[float] = (),
    metric: str = "euclidean",
    pred_normals: np.ndarray | None = None,
    gt_normals: np.ndarray | None = None,
) -> dict:
    """All of the module's metrics for prediction ``pred`` (P, 3) against ``gt`` (G, 3).

    Returns a dict: accuracy, completeness, chamfer_l1, chamfer_l2, thresholds (a list of
    {threshold, precision, recall, fscore}), normal_consistency (None unless both normals are
    given). Both sets must be non-empty.
    """
    if len(pred) == 0 or len(gt) == 0:
        raise ValueError("pointcloud_metrics needs non-empty prediction and ground truth")
    d_pg, i_pg = nearest_neighbors(pred, gt, "euclidean")
    d_gp, i_gp = nearest_neighbors(gt, pred, "euclidean")
    if metric == "manhattan":
        acc, comp = (
            nearest_neighbors(pred, gt, metric)[0].mean(),
            nearest_neighbors(gt, pred, metric)[0].mean(),
        )
    else:
        acc, comp = d_pg.mean(), d_gp.mean()
    nc = None
    if pred_normals is not None and gt_normals is not None:
        nc = normal_consistency(pred_normals, gt_normals, i_pg, i_gp)
    return {
        "accuracy": float(acc),
        "completeness": float(comp),
        "chamfer_l1": float((acc + comp) / 2),
        "chamfer_l2": float(((d_pg**2).mean() + (d_gp**2).mean()) / 2),
        "thresholds": [precision_recall_fscore(d_pg, d_gp, t) for t in thresholds],
        "normal_consistency": nc,
    }
