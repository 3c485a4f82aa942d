"""Argument checks shared by the mesh functions: user data gets InputError naming the argument."""

from __future__ import annotations

import numpy as np

from geomkit.errors import InputError
from geomkit.structures import TriMesh


def check_mesh(mesh: TriMesh, name: str = "mesh") -> TriMesh:
    """Return ``mesh`` after checking its vertices are finite and its faces index them.

    Raises:
        TypeError: ``mesh`` is not a TriMesh (a programming error).
        InputError: non-finite vertices or out-of-range face indices.
    """
    if not isinstance(mesh, TriMesh):
        raise TypeError(f"{name} must be a geomkit.structures.TriMesh, got {type(mesh).__name__}")
    if not np.isfinite(mesh.vertices).all():
        bad = int((~np.isfinite(mesh.vertices)).any(axis=1).sum())
        raise InputError(f"{name} has {bad} vertices with NaN or inf coordinates; fix or drop them")
    if mesh.faces.size and (mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices)):
        raise InputError(
            f"{name} has face indices outside [0, {len(mesh.vertices)}); "
            "faces must index its vertices (0-based)"
        )
    return mesh


def as_points(points, name: str = "points") -> np.ndarray:
    """``points`` (numpy, torch or nested lists) as a finite float64 array (P, 3).

    Raises:
        InputError: wrong shape or NaN / inf entries.
    """
    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{name} must have shape (P, 3), got {array.shape}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise InputError(f"{name} has {bad} rows with NaN or inf; fix or drop them")
    return array
