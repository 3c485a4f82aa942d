"""NU-MCC's per-object metrics of a predicted coloured point cloud against the ground truth.

Printed in the original's order and names: Pr, Rc, F1 (share of predicted / ground-truth
points with a counterpart closer than ``eval_dist_threshold`` 0.1, Euclidean), Acc, Com, CD
(mean nearest-neighbour Manhattan distance, prediction to truth / truth to prediction, and
their sum), ColPrGt, ColGtPr, Col (mean sum of absolute RGB differences to the nearest point
by Euclidean distance, over the pairs whose *squared* distance is below the threshold, as
the original compares them, i.e. within 0.316 at 0.1; Col is the mean of the two).

Nearest neighbours come from geomkit.ops.knn_points (exact), not a dense distance matrix.
Deviation, on purpose: an empty prediction scores Pr = Rc = F1 = 0 as in the original but
NaN distances (the original's 0 would be a perfect Chamfer distance), and colour metrics are
NaN where no pair is close enough; :func:`mean_metrics` leaves NaN out and counts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from geomkit.ops import knn_points

METRIC_NAMES = ("Pr", "Rc", "F1", "Acc", "Com", "CD", "ColPrGt", "ColGtPr", "Col")
EVAL_DIST_THRESHOLD = 0.1


def _nearest(source: torch.Tensor, target: torch.Tensor, norm: int) -> tuple:
    knn = knn_points(source[None].float(), target[None].float(), norm=norm, K=1)
    return knn.dists[0, :, 0], knn.idx[0, :, 0]


def f1_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def point_metrics(pred: torch.Tensor, gt: torch.Tensor, threshold: float = EVAL_DIST_THRESHOLD):
    """Pr, Rc, F1, Acc, Com, CD of (P, 3) predicted points against (G, 3) ground truth."""
    if len(pred) == 0:
        return {"Pr": 0.0, "Rc": 0.0, "F1": 0.0, "Acc": math.nan, "Com": math.nan, "CD": math.nan}
    pred_sq, _ = _nearest(pred, gt, norm=2)
    gt_sq, _ = _nearest(gt, pred, norm=2)
    precision = (pred_sq < threshold**2).float().mean().item()
    recall = (gt_sq < threshold**2).float().mean().item()
    accuracy = _nearest(pred, gt, norm=1)[0].mean().item()
    completeness = _nearest(gt, pred, norm=1)[0].mean().item()
    return {
        "Pr": precision,
        "Rc": recall,
        "F1": f1_score(precision, recall),
        "Acc": accuracy,
        "Com": completeness,
        "CD": accuracy + completeness,
    }


def _colour_distance(source, source_rgb, target, target_rgb, threshold: float) -> float:
    squared, idx = _nearest(source, target, norm=2)
    close = squared < threshold
    if not close.any():
        return math.nan
    differences = (source_rgb[close] - target_rgb[idx[close]]).abs().sum(-1)
    return differences.mean().item()


def colour_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    pred_rgb: torch.Tensor,
    gt_rgb: torch.Tensor,
    threshold: float = EVAL_DIST_THRESHOLD,
) -> dict[str, float]:
    """ColPrGt, ColGtPr, Col of colours in [0, 1] (the original's squared-distance gate)."""
    if len(pred) == 0:
        return {"ColPrGt": math.nan, "ColGtPr": math.nan, "Col": math.nan}
    pred_to_gt = _colour_distance(pred, pred_rgb.float(), gt, gt_rgb.float(), threshold)
    gt_to_pred = _colour_distance(gt, gt_rgb.float(), pred, pred_rgb.float(), threshold)
    return {"ColPrGt": pred_to_gt, "ColGtPr": gt_to_pred, "Col": 0.5 * (pred_to_gt + gt_to_pred)}


def object_metrics(pred, gt, pred_rgb, gt_rgb, threshold: float = EVAL_DIST_THRESHOLD) -> dict:
    """Every metric of one object, in METRIC_NAMES order."""
    scores = {**colour_metrics(pred, gt, pred_rgb, gt_rgb, threshold)}
    scores.update(point_metrics(pred, gt, threshold))
    return {name: scores[name] for name in METRIC_NAMES}


def mean_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """Mean of each metric over objects, NaN left out; ``n_<name>`` counts what was averaged."""
    out = {}
    for name in METRIC_NAMES:
        values = [row[name] for row in rows if not math.isnan(row[name])]
        out[name] = sum(values) / len(values) if values else math.nan
        out[f"n_{name}"] = len(values)
    return out


def format_metrics(scores: dict) -> str:
    """One line in the original's order: ``Pr 0.8123  Rc 0.7011  ...``."""
    return "  ".join(f"{name} {scores[name]:.4f}" for name in METRIC_NAMES)
