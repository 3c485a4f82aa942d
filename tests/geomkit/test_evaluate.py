"""python -m geomkit.evaluate: numbers against scipy, and bad input -> one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial import cKDTree

from geomkit.io import write_obj, write_off, write_ply
from geomkit.mesh import sample_surface
from geomkit.structures import PointCloud, TriMesh
from tests.helpers import assert_close

BOX_VERTICES = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
BOX_FACES = np.array(
    [
        [0, 1, 3],
        [0, 3, 2],
        [4, 6, 7],
        [4, 7, 5],
        [0, 4, 5],
        [0, 5, 1],
        [2, 3, 7],
        [2, 7, 6],
        [0, 2, 6],
        [0, 6, 4],
        [1, 5, 7],
        [1, 7, 3],
    ]
)


def run_evaluate(*args):
    return subprocess.run(
        [sys.executable, "-m", "geomkit.evaluate", *map(str, args)], capture_output=True, text=True
    )


def scipy_metrics(pred, gt, thresholds, p=2, pred_n=None, gt_n=None):
    d_pg, i_pg = cKDTree(gt).query(pred)
    d_gp, i_gp = cKDTree(pred).query(gt)
    acc, comp = cKDTree(gt).query(pred, p=p)[0].mean(), cKDTree(pred).query(gt, p=p)[0].mean()
    out = {
        "accuracy": acc,
        "completeness": comp,
        "chamfer_l1": (acc + comp) / 2,
        "chamfer_l2": ((d_pg**2).mean() + (d_gp**2).mean()) / 2,
        "rows": [((d_pg < t).mean(), (d_gp < t).mean()) for t in thresholds],
    }
    if pred_n is not None:
        un = lambda n: n / np.linalg.norm(n, axis=1, keepdims=True)  # noqa: E731
        pn, gn = un(pred_n), un(gt_n)
        out["normal_consistency"] = (
            np.abs((pn * gn[i_pg]).sum(1)).mean() + np.abs((gn * pn[i_gp]).sum(1)).mean()
        ) / 2
    return out


def check(result, expected, thresholds):
    for key in ("accuracy", "completeness", "chamfer_l1", "chamfer_l2"):
        assert_close(result[key], expected[key], rtol=1e-6, what=key)
    for row, t, (prec, rec) in zip(result["thresholds"], thresholds, expected["rows"], strict=True):
        f = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        assert row["threshold"] == t
        assert_close([row["precision"], row["recall"], row["fscore"]], [prec, rec, f], rtol=1e-6)
    if "normal_consistency" in expected:
        assert_close(result["normal_consistency"], expected["normal_consistency"], rtol=1e-6)


@pytest.mark.parametrize("metric,p", [("euclidean", 2), ("manhattan", 1)])
def test_point_clouds_equal_scipy(tmp_path, metric, p):
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(3000, 3))
    pred = gt[:2500] + rng.normal(scale=0.03, size=(2500, 3))
    gt_n, pred_n = rng.normal(size=(3000, 3)), rng.normal(size=(2500, 3))
    write_ply(tmp_path / "gt.ply", PointCloud(gt, normals=gt_n))
    write_ply(tmp_path / "pred.ply", PointCloud(pred, normals=pred_n), binary=False)
    out = run_evaluate(
        "--pred",
        tmp_path / "pred.ply",
        "--gt",
        tmp_path / "gt.ply",
        "--threshold",
        0.05,
        "--threshold",
        0.01,
        "--metric",
        metric,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["n_pred"], result["n_gt"], result["metric"]) == (2500, 3000, metric)
    # PLY stores float32: compare with what the files hold.
    as_read = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    check(
        result,
        scipy_metrics(as_read(pred), as_read(gt), [0.05, 0.01], p, as_read(pred_n), as_read(gt_n)),
        [0.05, 0.01],
    )


def test_meshes_are_sampled_with_normals(tmp_path):
    gt_mesh = TriMesh(BOX_VERTICES, BOX_FACES)
    pred_mesh = TriMesh(BOX_VERTICES * 1.05 - 0.025, BOX_FACES)
    write_obj(tmp_path / "gt.obj", gt_mesh)
    write_off(tmp_path / "pred.off", pred_mesh)
    out = run_evaluate(
        "--pred",
        tmp_path / "pred.off",
        "--gt",
        tmp_path / "gt.obj",
        "--samples",
        4000,
        "--threshold",
        0.03,
        "--seed",
        7,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    pred, pred_n = sample_surface(pred_mesh, 4000, seed=7)
    gt, gt_n = sample_surface(gt_mesh, 4000, seed=8)
    check(result, scipy_metrics(pred, gt, [0.03], 2, pred_n, gt_n), [0.03])
    # Parallel faces 0.025 apart: every nearest neighbour is about that far.
    assert 0.02 < result["accuracy"] < 0.035
    assert result["normal_consistency"] > 0.95


def test_bad_inputs_give_one_line_and_status_2(tmp_path):
    good = tmp_path / "good.ply"
    write_ply(good, PointCloud(np.random.default_rng(0).normal(size=(10, 3))))
    (tmp_path / "garbage.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement")
    (tmp_path / "truncated.ply").write_bytes(good.read_bytes()[:-20])
    (tmp_path / "empty.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
        "property float z\nend_header\n"
    )
    (tmp_path / "bad.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    (tmp_path / "points.xyz").write_text("0 0 0\n")
    cases = {
        "missing.ply": "not found",
        "garbage.ply": "garbage.ply",
        "truncated.ply": "truncated.ply",
        "empty.ply": "holds no points",
        "bad.off": "bad.off",
        "nan.obj": "nan.obj",
        "flat.obj": "no surface area",
        "points.xyz": "points.xyz",
    }
    for name, expected in cases.items():
        out = run_evaluate("--pred", tmp_path / name, "--gt", good)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2, (name, out.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, out.stderr)
        assert expected in lines[0], (name, lines[0])
    usage = run_evaluate("--pred", good, "--gt", good, "--samples", "-3")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1
    assert "--samples" in usage.stderr and "must be > 0" in usage.stderr
