"""Evaluate any reconstruction against ground truth and print one JSON object.

    python -m geomkit.evaluate --pred P --gt G [--threshold 0.1 --threshold 0.05 ...]
        [--samples 100000] [--metric euclidean|manhattan] [--seed 0]

P and G are point clouds or meshes (PLY, OBJ, OFF). Meshes are sampled (area-weighted,
``--samples`` points with face normals, seeded). The metrics are those of
:mod:`geomkit.metrics.pointcloud`: accuracy, completeness, chamfer_l1 (ONet's, x10 in its
paper), chamfer_l2, precision/recall/F-score per threshold, and normal consistency when both
sides have normals. Bad or empty files print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io import read_geometry
from geomkit.mesh import sample_surface
from geomkit.metrics.pointcloud import METRICS, pointcloud_metrics
from geomkit.structures import TriMesh

DEFAULT_SAMPLES = 100_000


def load_points(path: str | Path, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Points (N, 3) and normals (N, 3) or None of a point cloud file, or samples of a mesh."""
    geometry = read_geometry(path)
    if isinstance(geometry, TriMesh):
        if geometry.face_areas().sum() <= 0:
            raise InputError(f"{path}: the mesh has no surface area to sample")
        points, normals = sample_surface(geometry, samples, seed=seed)
        return points, normals
    if len(geometry) == 0:
        raise InputError(f"{path} holds no points")
    return geometry.points.astype(np.float64), geometry.normals


def evaluate(
    pred: str | Path,
    gt: str | Path,
    thresholds=(),
    samples: int = DEFAULT_SAMPLES,
    metric: str = "euclidean",
    seed: int = 0,
) -> dict:
    """The evaluator's JSON object for files ``pred`` and ``gt``."""
    pred_points, pred_normals = load_points(pred, samples, seed)
    gt_points, gt_normals = load_points(gt, samples, seed + 1)
    result = {
        "pred": str(pred),
        "gt": str(gt),
        "metric": metric,
        "n_pred": len(pred_points),
        "n_gt": len(gt_points),
    }
    result.update(
        pointcloud_metrics(
            pred_points, gt_points, list(thresholds), metric, pred_normals, gt_normals
        )
    )
    return result


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m geomkit.evaluate",
        description="Accuracy, completeness, Chamfer, F-score and normal consistency of a "
        "reconstruction against ground truth (point clouds or meshes: PLY, OBJ, OFF).",
    )
    parser.add_argument("--pred", required=True, help="predicted point cloud or mesh")
    parser.add_argument("--gt", required=True, help="ground-truth point cloud or mesh")
    parser.add_argument(
        "--threshold",
        type=_positive(float),
        action="append",
        default=[],
        help="distance threshold for precision/recall/F-score (repeatable)",
    )
    parser.add_argument(
        "--samples",
        type=_positive(int),
        default=DEFAULT_SAMPLES,
        help="points sampled on each mesh (default %(default)s)",
    )
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="euclidean",
        help="distance for accuracy/completeness; manhattan is NU-MCC's",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the mesh sampling")
    args = parser.parse_args(argv)
    result = evaluate(args.pred, args.gt, args.threshold, args.samples, args.metric, args.seed)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
