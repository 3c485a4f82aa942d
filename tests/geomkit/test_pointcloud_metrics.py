"""Point-set metrics against an independent scipy cKDTree computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from geomkit.metrics import occupancy_iou, pointcloud_metrics
from tests.helpers import assert_close


def independent(pred, gt, thresholds, p=2, pred_n=None, gt_n=None):
    """The definitions written out with scipy (Euclidean for everything but acc/comp under p=1)."""
    d_pg, i_pg = cKDTree(gt).query(pred, k=1)
    d_gp, i_gp = cKDTree(pred).query(gt, k=1)
    acc = cKDTree(gt).query(pred, k=1, p=p)[0].mean()
    comp = cKDTree(pred).query(gt, k=1, p=p)[0].mean()
    out = {
        "accuracy": acc,
        "completeness": comp,
        "chamfer_l1": 0.5 * (acc + comp),
        "chamfer_l2": 0.5 * ((d_pg**2).mean() + (d_gp**2).mean()),
    }
    for t in thresholds:
        prec, rec = (d_pg < t).mean(), (d_gp < t).mean()
        out[t] = (prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    if pred_n is not None:
        pn = pred_n / np.linalg.norm(pred_n, axis=1, keepdims=True)
        gn = gt_n / np.linalg.norm(gt_n, axis=1, keepdims=True)
        out["nc"] = 0.5 * (
            np.abs((pn * gn[i_pg]).sum(1)).mean() + np.abs((gn * pn[i_gp]).sum(1)).mean()
        )
    return out


@pytest.mark.parametrize("metric,p", [("euclidean", 2), ("manhattan", 1)])
def test_metrics_equal_scipy(metric, p):
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4000, 3))
    pred = gt[:3000] + rng.normal(scale=0.05, size=(3000, 3))
    pred_n, gt_n = rng.normal(size=(3000, 3)), rng.normal(size=(4000, 3))
    thresholds = [0.01, 0.05, 0.1]
    got = pointcloud_metrics(pred, gt, thresholds, metric, pred_n, gt_n)
    ref = independent(pred, gt, thresholds, p, pred_n, gt_n)
    for key in ("accuracy", "completeness", "chamfer_l1", "chamfer_l2"):
        assert_close(got[key], ref[key], rtol=1e-6, what=key)
    for row, t in zip(got["thresholds"], thresholds, strict=True):
        assert row["threshold"] == t
        assert_close([row["precision"], row["recall"], row["fscore"]], ref[t], rtol=1e-6)
    assert_close(got["normal_consistency"], ref["nc"], rtol=1e-6)


def test_fscore_zero_when_nothing_within_threshold_and_no_normals():
    got = pointcloud_metrics(np.zeros((5, 3)), np.ones((7, 3)), [0.5])
    assert got["thresholds"][0] == {
        "threshold": 0.5,
        "precision": 0.0,
        "recall": 0.0,
        "fscore": 0.0,
    }
    assert got["normal_consistency"] is None
    assert_close(got["accuracy"], np.sqrt(3), rtol=1e-12)
    with pytest.raises(ValueError, match="non-empty"):
        pointcloud_metrics(np.zeros((0, 3)), np.ones((7, 3)))


def test_occupancy_iou():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    b = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    iou = occupancy_iou(a, b)
    assert iou[0] == pytest.approx(1 / 3) and np.isnan(iou[1])
    assert occupancy_iou(np.array([0.7, 0.2]), np.array([0.9, 0.6])) == pytest.approx(0.5)
