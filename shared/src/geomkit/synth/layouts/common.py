"""Files every layout shares: ground truth and per-view extras (depth, normals, mask)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geomkit.io import write_depth_png, write_image, write_ply
from geomkit.mesh import sample_surface
from geomkit.structures import PointCloud, TriMesh
from geomkit.synth.scene import DEPTH_SCALE, Views


def write_ground_truth(out: Path, mesh: TriMesh, n_points: int = 100_000, seed: int = 0) -> None:
    """``gt_mesh.ply`` and ``gt_points.ply`` (area-weighted samples with normals), world frame."""
    write_ply(out / "gt_mesh.ply", mesh)
    points, normals = sample_surface(mesh, n_points, seed=seed)
    write_ply(out / "gt_points.ply", PointCloud(points, normals))


def on_white(views: Views, i: int) -> np.ndarray:
    """(H, W, 3) the view's colours with a white background."""
    return np.where(views.mask[i][..., None], views.rgb[i], 1.0)


def write_extras(
    views: Views, i: int, depth_path: Path, normal_path: Path, mask_path: Path | None = None
) -> None:
    """Depth as 16-bit PNG (round(z * DEPTH_SCALE)), world normals as (n + 1) / 2 RGB, mask."""
    write_depth_png(depth_path, views.depth[i], DEPTH_SCALE)
    normals = np.where(views.mask[i][..., None], (views.normals[i] + 1) / 2, 0.0)
    write_image(normal_path, normals)
    if mask_path is not None:
        write_image(mask_path, views.mask[i])
