"""ONet's mesh evaluation (the authors' ``im2mesh/eval.py``) and the per-object / per-class
result tables that ``onet.generate`` and ``onet.eval_meshes`` write.

Metrics of a predicted mesh against an object's ground truth, with the authors' key names:

- ``completeness`` / ``accuracy``: mean Euclidean distance from each ground-truth point to the
  nearest predicted point / from each predicted point to the nearest ground-truth point;
  ``completeness2`` / ``accuracy2``: the same with squared distances;
- ``chamfer-L1`` = (completeness + accuracy) / 2 (the paper prints it x10);
  ``chamfer-L2`` = (completeness2 + accuracy2) / 2;
- ``normals completeness`` / ``normals accuracy``: mean |n . n_nearest| in each direction
  (unit normals; a zero-length normal scores 0 where the original produced NaN), ``normals``
  their mean;
- ``iou``: IoU of ONet's inside test (:func:`geomkit.mesh.contains`) on the IoU points against
  the ground-truth occupancy >= 0.5.

The prediction is ``n_points`` area-weighted samples of the mesh (float32, as the authors), each
with its face normal. An EMPTY mesh scores as in the original: accuracy = completeness = sqrt(3)
(the diagonal of the unit box), accuracy2 = completeness2 = 3, the three normal scores -1, IoU 0,
an extra ``chamfer`` key of 6, and NO ``chamfer-L1`` / ``chamfer-L2`` keys, so that class means
leave those objects out of the Chamfer columns.
"""

from __future__ import annotations

import csv
import math
import os
import pickle
from collections.abc import Sequence

import numpy as np

from geomkit.errors import InputError
from geomkit.io import atomic_write
from geomkit.mesh import contains, sample_surface
from geomkit.metrics import nearest_neighbors, occupancy_iou
from geomkit.structures import TriMesh

EMPTY_PCL_DICT = {
    "completeness": math.sqrt(3),
    "accuracy": math.sqrt(3),
    "completeness2": 3.0,
    "accuracy2": 3.0,
    "chamfer": 6.0,
}
EMPTY_PCL_DICT_NORMALS = {
    "normals completeness": -1.0,
    "normals accuracy": -1.0,
    "normals": -1.0,
}
MEAN_ROW = "mean"


class MeshEvaluator:
    """The authors' ``MeshEvaluator``: point-set metrics and IoU of predicted meshes.

    Args:
        n_points: surface samples of each predicted mesh (ONet: 100k).
        seed: seed of the surface sampling; every call starts from it, so a mesh always gets
            the same samples.
    """

    def __init__(self, n_points: int = 100000, seed: int = 0):
        if n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {n_points}")
        self.n_points = int(n_points)
        self.seed = seed

    def sample(self, mesh: TriMesh) -> tuple[np.ndarray, np.ndarray]:
        """Area-weighted samples of the mesh: points (n_points, 3) float32 and their unit face
        normals (n_points, 3) float64."""
        points, normals = sample_surface(mesh, self.n_points, seed=self.seed)
        return points.astype(np.float32), normals

    def eval_mesh(
        self,
        mesh: TriMesh,
        pointcloud_tgt: np.ndarray,
        normals_tgt: np.ndarray | None,
        points_iou: np.ndarray,
        occ_tgt: np.ndarray,
    ) -> dict[str, float]:
        """All metrics of one predicted mesh.

        Args:
            mesh: the prediction, in the ground truth's frame.
            pointcloud_tgt: (N, 3) float ground-truth surface points (pointcloud.npz).
            normals_tgt: (N, 3) float their normals, or None (normal scores NaN).
            points_iou: (P, 3) float IoU points (points.npz).
            occ_tgt: (P,) their ground-truth occupancy (inside where >= 0.5).

        Returns:
            dict with the keys of the module docstring (the empty-mesh keys for an empty mesh).

        Raises:
            InputError: an argument with the wrong shape or NaN / inf values.
        """
        pointcloud_tgt = _as_points(pointcloud_tgt, "pointcloud_tgt")
        points_iou = _as_points(points_iou, "points_iou")
        occ_tgt = np.asarray(occ_tgt)
        if occ_tgt.shape != (len(points_iou),):
            raise InputError(
                f"occ_tgt must have one value per IoU point, shape ({len(points_iou)},), "
                f"got {occ_tgt.shape}"
            )
        if mesh.is_empty:
            out = self.eval_pointcloud(
                np.empty((0, 3)), pointcloud_tgt, np.empty((0, 3)), normals_tgt
            )
            out["iou"] = 0.0
            return out
        points, normals = self.sample(mesh)
        out = self.eval_pointcloud(points, pointcloud_tgt, normals, normals_tgt)
        out["iou"] = float(occupancy_iou(contains(mesh, points_iou), occ_tgt))
        return out

    def eval_pointcloud(
        self,
        pointcloud: np.ndarray,
        pointcloud_tgt: np.ndarray,
        normals: np.ndarray | None = None,
        normals_tgt: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Point-set metrics of a predicted point cloud (no IoU).

        Args:
            pointcloud: (P, 3) float prediction; P = 0 gives the empty-mesh values.
            pointcloud_tgt: (N, 3) float ground truth, N >= 1.
            normals: (P, 3) predicted normals or None.
            normals_tgt: (N, 3) ground-truth normals or None; without both normals the
                normal scores are NaN.

        Returns:
            dict: completeness, accuracy, normals completeness, normals accuracy, normals,
            completeness2, accuracy2, chamfer-L2, chamfer-L1 (module docstring).
        """
        pointcloud_tgt = _as_points(pointcloud_tgt, "pointcloud_tgt")
        if len(pointcloud_tgt) == 0:
            raise InputError("pointcloud_tgt is empty: the ground truth needs surface points")
        normals_tgt = None if normals_tgt is None else _as_normals(normals_tgt, pointcloud_tgt)
        if len(pointcloud) == 0:
            out = dict(EMPTY_PCL_DICT)
            if normals is not None and normals_tgt is not None:
                out.update(EMPTY_PCL_DICT_NORMALS)
            return out
        pointcloud = _as_points(pointcloud, "pointcloud")
        normals = None if normals is None else _as_normals(normals, pointcloud)
        completeness, completeness_normals = distance_p2p(
            pointcloud_tgt, normals_tgt, pointcloud, normals
        )
        accuracy, accuracy_normals = distance_p2p(pointcloud, normals, pointcloud_tgt, normals_tgt)
        completeness2 = float(np.mean(completeness**2))
        accuracy2 = float(np.mean(accuracy**2))
        completeness, accuracy = float(completeness.mean()), float(accuracy.mean())
        completeness_normals = float(completeness_normals.mean())
        accuracy_normals = float(accuracy_normals.mean())
        return {
            "completeness": completeness,
            "accuracy": accuracy,
            "normals completeness": completeness_normals,
            "normals accuracy": accuracy_normals,
            "normals": 0.5 * completeness_normals + 0.5 * accuracy_normals,
            "completeness2": completeness2,
            "accuracy2": accuracy2,
            "chamfer-L2": 0.5 * (completeness2 + accuracy2),
            "chamfer-L1": 0.5 * (completeness + accuracy),
        }


def distance_p2p(
    points_src: np.ndarray,
    normals_src: np.ndarray | None,
    points_tgt: np.ndarray,
    normals_tgt: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each source point to its nearest target point, and |cos| between their
    normals.

    Args:
        points_src: (P, 3) float. normals_src: (P, 3) float or None.
        points_tgt: (Q, 3) float, Q >= 1. normals_tgt: (Q, 3) float or None.

    Returns:
        (P,) float64 Euclidean distances; (P,) float64 |n_src . n_tgt[nearest]| of the
        normalised normals (0 for a zero-length normal), NaN when a side has no normals.
    """
    dist, index = nearest_neighbors(points_src, points_tgt)
    if normals_src is None or normals_tgt is None:
        return dist, np.full(len(points_src), np.nan)
    dots = np.sum(_unit(normals_tgt)[index] * _unit(normals_src), axis=-1)
    # Generated surfaces need not be oriented like the ground truth: compare lines, not vectors.
    return dist, np.abs(dots)


def _unit(normals: np.ndarray) -> np.ndarray:
    normals = np.asarray(normals, dtype=np.float64)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)


def _as_points(points, name: str) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{name} must have shape (N, 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise InputError(f"{name} has {int((~np.isfinite(points)).sum())} NaN or inf values")
    return points


def _as_normals(normals, points: np.ndarray) -> np.ndarray:
    normals = np.asarray(normals)
    if normals.shape != points.shape:
        raise InputError(
            f"normals must have the shape of their points {points.shape}, got {normals.shape}"
        )
    if not np.isfinite(normals).all():
        raise InputError(f"normals have {int((~np.isfinite(normals)).sum())} NaN or inf values")
    return normals


def numeric_columns(rows: Sequence[dict], exclude: Sequence[str] = ("idx",)) -> list[str]:
    """Keys, in first-seen order, whose values are numbers in every row that has them."""
    columns: dict[str, bool] = {}
    for row in rows:
        for key, value in row.items():
            is_number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            columns[key] = columns.get(key, True) and is_number
    return [key for key, numeric in columns.items() if numeric and key not in exclude]


def class_means(rows: Sequence[dict], by: str = "class name") -> list[dict]:
    """Per-class means of the numeric columns (missing and NaN values skipped, as pandas'
    ``groupby(by).mean()``), classes sorted by name, then a ``mean`` row: the mean of the class
    means (ONet's headline numbers).

    Args:
        rows: one dict per object, each with the key ``by``.

    Returns:
        list of dicts {by: class, column: mean, ...}; the last has {by: "mean"}.
    """
    columns = numeric_columns(rows)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row[by]), []).append(row)
    table = [
        {by: name, **{col: _nanmean([r.get(col) for r in groups[name]]) for col in columns}}
        for name in sorted(groups)
    ]
    table.append({by: MEAN_ROW, **{col: _nanmean([r[col] for r in table]) for col in columns}})
    return table


def _nanmean(values: Sequence) -> float:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def all_columns(rows: Sequence[dict]) -> list[str]:
    """Every key of the rows, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row))


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Rows as CSV (columns in first-seen order; missing and NaN values left empty, floats at
    full precision), written atomically."""
    columns = all_columns(rows)
    with atomic_write(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(col)) for col in columns])


def _csv_cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float | np.floating) else str(value)


def write_pickle(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Rows as a pickled list of dicts (``pandas.DataFrame(rows)`` reads it), atomically."""
    plain = [{key: _plain(value) for key, value in row.items()} for row in rows]
    with atomic_write(path, "wb") as handle:
        pickle.dump(plain, handle, protocol=pickle.HIGHEST_PROTOCOL)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def format_table(rows: Sequence[dict], digits: int = 4) -> str:
    """Rows as an aligned text table (numbers with ``digits`` decimals, NaN and missing '-')."""
    columns = all_columns(rows)
    cells = [columns] + [[_text_cell(row.get(col), digits) for col in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    return "\n".join(lines)


def _text_cell(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)
