"""DTU's evaluation ground truth for a known mesh, in the files and formats of DTU's downloads.

``<out>/ObsMask/ObsMask{scan}_10.mat`` (``ObsMask`` 3-D logical, ``BB`` 2x3 box corners, ``Res``
voxel size), ``<out>/ObsMask/Plane{scan}.mat`` (``P``, a 1x4 plane, points with
``[x y z 1] . P > 0`` above it) and ``<out>/Points/stl/stl{scan:03d}_total.ply`` (the
structured-light scan: a point-cloud PLY), all in world millimetres. Here the scan is uniform
samples of the mesh surface, the observed voxels are the voxels holding a scan point, dilated,
and the plane lies below the mesh (normal +z), as DTU's table plane does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat
from scipy.ndimage import binary_dilation

from geomkit.io import atomic_path, write_ply
from geomkit.mesh import sample_surface
from geomkit.structures import PointCloud, TriMesh


def dtu_eval_paths(dataset_dir: str | Path, scan: int) -> dict[str, Path]:
    """The three ground-truth files of ``scan`` under ``dataset_dir`` (DTUeval-python's layout)."""
    root = Path(dataset_dir)
    return {
        "obs_mask": root / "ObsMask" / f"ObsMask{scan}_10.mat",
        "plane": root / "ObsMask" / f"Plane{scan}.mat",
        "stl": root / "Points" / "stl" / f"stl{scan:03d}_total.ply",
    }


def write_dtu_eval(
    out_dir: str | Path,
    scan: int,
    mesh_world: TriMesh,
    stl_spacing: float = 0.2,
    res: float = 1.0,
    margin: float = 5.0,
    dilate: int = 3,
    plane_z: float | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the ground truth that makes ``mesh_world`` (millimetres) a DTU scan.

    Args:
        out_dir: the dataset folder (it gets ``ObsMask/`` and ``Points/stl/``).
        scan: the scan number in the file names.
        mesh_world: the true surface, world millimetres.
        stl_spacing: the scan has one uniform random point per stl_spacing^2 of area.
        res: ObsMask voxel size (``Res``).
        margin: ``BB`` is the mesh's bounding box grown by this much on every side.
        dilate: observed voxels = voxels holding a scan point, dilated this many times (6-
            connected steps).
        plane_z: height of the ground plane (z = plane_z); default 1 mm below the mesh.
        seed: for the scan's samples.

    Returns:
        dict "obs_mask", "plane", "stl" -> the written files.
    """
    paths = dtu_eval_paths(out_dir, scan)
    n = int(np.ceil(mesh_world.face_areas().sum() / stl_spacing**2))
    stl = sample_surface(mesh_world, n, seed=seed)[0]
    write_ply(paths["stl"], PointCloud(stl))
    bb = np.stack([mesh_world.vertices.min(0) - margin, mesh_world.vertices.max(0) + margin])
    _save_mat(paths["obs_mask"], ObsMask=_observed(stl, bb, res, dilate), BB=bb, Res=float(res))
    height = mesh_world.vertices[:, 2].min() - 1.0 if plane_z is None else plane_z
    _save_mat(paths["plane"], P=np.array([[0.0, 0.0, 1.0, -height]]))
    return paths


def _observed(points: np.ndarray, bb: np.ndarray, res: float, dilate: int) -> np.ndarray:
    """Voxels (DTUeval's indexing: nearest voxel centre ``BB[0] + index * Res``) holding a point."""
    shape = np.floor((bb[1] - bb[0]) / res).astype(np.int64) + 1
    index = np.clip(np.rint((points - bb[0]) / res).astype(np.int64), 0, shape - 1)
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(index.T)] = True
    return binary_dilation(mask, iterations=dilate) if dilate > 0 else mask


def _save_mat(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        savemat(tmp, arrays)
