"""NU-MCC metrics against an independent computation with scipy's cKDTree."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

from numcc.metrics import METRIC_NAMES, format_metrics, mean_metrics, object_metrics


def scipy_metrics(pred, gt, pred_rgb, gt_rgb, t=0.1) -> dict:
    d_pg, i_pg = cKDTree(gt).query(pred)
    d_gp, i_gp = cKDTree(pred).query(gt)
    pr, rc = float((d_pg < t).mean()), float((d_gp < t).mean())
    acc = cKDTree(gt).query(pred, p=1)[0].mean()
    com = cKDTree(pred).query(gt, p=1)[0].mean()
    close_pg, close_gp = d_pg**2 < t, d_gp**2 < t
    col_pg = np.abs(pred_rgb[close_pg] - gt_rgb[i_pg[close_pg]]).sum(1).mean()
    col_gp = np.abs(gt_rgb[close_gp] - pred_rgb[i_gp[close_gp]]).sum(1).mean()
    return {
        "Pr": pr,
        "Rc": rc,
        "F1": 2 * pr * rc / (pr + rc),
        "Acc": acc,
        "Com": com,
        "CD": acc + com,
        "ColPrGt": col_pg,
        "ColGtPr": col_gp,
        "Col": (col_pg + col_gp) / 2,
    }


def clouds(seed: int):
    rng = np.random.default_rng(seed)
    gt = rng.normal(size=(4000, 3))
    gt /= np.linalg.norm(gt, axis=1, keepdims=True)
    pred = gt[:2500] + rng.normal(scale=0.06, size=(2500, 3))
    pred = np.concatenate([pred, rng.uniform(-1.5, 1.5, size=(300, 3))])
    return pred, gt, rng.uniform(size=(len(pred), 3)), rng.uniform(size=(len(gt), 3))


def test_metrics_equal_scipys():
    for seed in range(3):
        arrays = clouds(seed)
        ours = object_metrics(*(torch.from_numpy(a) for a in arrays))
        expected = scipy_metrics(*arrays)
        assert list(ours) == list(METRIC_NAMES)
        for name in METRIC_NAMES:
            assert math.isclose(ours[name], expected[name], rel_tol=1e-5), name
        assert 0.3 < ours["Pr"] < 1 and 0.3 < ours["Rc"] < 1  # a test that exercises both


def test_empty_prediction_is_not_a_perfect_score():
    _, gt, _, gt_rgb = clouds(0)
    empty = torch.zeros(0, 3)
    scores = object_metrics(empty, torch.from_numpy(gt), empty, torch.from_numpy(gt_rgb))
    assert scores["F1"] == 0 and math.isnan(scores["CD"]) and math.isnan(scores["Col"])
    full = object_metrics(*(torch.from_numpy(a) for a in clouds(1)))
    mean = mean_metrics([scores, full])
    assert mean["F1"] == full["F1"] / 2 and mean["n_F1"] == 2
    assert mean["CD"] == full["CD"] and mean["n_CD"] == 1
    assert format_metrics(full).startswith("Pr 0.")
