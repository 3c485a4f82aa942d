"""Per-object samples of a watertight, normalised mesh, as the authors'
scripts/sample_mesh.py writes them with --packbits --float16: points.npz (uniform and
near-surface points labelled by the inside test), pointcloud.npz (surface samples with normals)
and the voxel occupancy of model.binvox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geomkit.io import save_npz
from geomkit.mesh import contains, sample_surface
from geomkit.structures import TriMesh


@dataclass(frozen=True)
class SampleOptions:
    """sample_mesh.py's settings (its flag names: points_size, points_uniform_ratio,
    points_sigma, points_padding, pointcloud_size, voxels_res) and the seed."""

    points: int = 100_000
    points_uniform_ratio: float = 1.0
    points_sigma: float = 0.01
    points_padding: float = 0.1
    pointcloud_size: int = 100_000
    voxels_res: int = 32
    seed: int = 0


def export_points(
    path: Path,
    mesh: TriMesh,
    loc: np.ndarray,
    scale: float,
    sample: SampleOptions,
    rng: np.random.Generator,
) -> None:
    """points.npz as sample_mesh.py's export_points with --packbits --float16."""
    n_uniform = int(sample.points * sample.points_uniform_ratio)
    n_surface = sample.points - n_uniform
    box_size = 1.0 + sample.points_padding
    uniform = box_size * (rng.random((n_uniform, 3)) - 0.5)
    surface, _ = sample_surface(mesh, n_surface, seed=rng)
    surface += sample.points_sigma * rng.standard_normal((n_surface, 3))
    points = np.concatenate([uniform, surface])
    occupancies = contains(mesh, points)
    save_npz(
        path,
        points=points.astype(np.float16),
        occupancies=np.packbits(occupancies),
        loc=loc,
        scale=np.float64(scale),
    )


def export_pointcloud(
    path: Path,
    mesh: TriMesh,
    loc: np.ndarray,
    scale: float,
    sample: SampleOptions,
    rng: np.random.Generator,
) -> np.ndarray:
    """pointcloud.npz as sample_mesh.py's export_pointcloud with --float16.

    Returns:
        (pointcloud_size, 3) float64 surface points (before the float16 rounding).
    """
    points, normals = sample_surface(mesh, sample.pointcloud_size, seed=rng)
    save_npz(
        path,
        points=points.astype(np.float16),
        normals=normals.astype(np.float16),
        loc=loc,
        scale=np.float64(scale),
    )
    return points


def voxelize(mesh: TriMesh, surface_points: np.ndarray, resolution: int) -> np.ndarray:
    """Occupancy of resolution^3 voxels over [-0.5, 0.5]^3: the voxel centre is inside the mesh
    (ONet's inside test) or one of ``surface_points`` (P, 3) lies in the voxel.

    Returns:
        (R, R, R) bool indexed [x, y, z]; voxel i spans [i / R - 0.5, (i + 1) / R - 0.5].
    """
    centres = (np.arange(resolution) + 0.5) / resolution - 0.5
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1)
    occupancy = contains(mesh, grid.reshape(-1, 3)).reshape((resolution,) * 3)
    index = np.floor((surface_points + 0.5) * resolution).astype(np.int64)
    index = index[((index >= 0) & (index < resolution)).all(axis=1)]
    occupancy[index[:, 0], index[:, 1], index[:, 2]] = True
    return occupancy
