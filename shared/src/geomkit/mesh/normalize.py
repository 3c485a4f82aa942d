"""Centring and uniform scaling into the unit box, and back (ONet's loc / scale convention)."""

from __future__ import annotations

import dataclasses

import numpy as np

from geomkit.errors import InputError
from geomkit.mesh._checks import as_points, check_mesh
from geomkit.structures import TriMesh


def normalize_to_unit_box(mesh: TriMesh, padding: float = 0.0) -> tuple[TriMesh, np.ndarray, float]:
    """Centre the bounding box at the origin and scale its longest side to ``1 - padding``.

    ``normalized = (v - loc) / scale`` with ``loc`` the bounding-box centre and ``scale`` the
    longest side / (1 - padding), as ONet's mesh-fusion 1_scale.py (padding 0.1) and
    sample_mesh.py (padding 0, so the longest side becomes 1). The box is that of all vertices.

    Args:
        mesh: TriMesh with at least one vertex and a positive extent.
        padding: in [0, 1); the total margin, in units of the normalised box.

    Returns:
        mesh: a new TriMesh with the normalised vertices (float64) and the same faces, normals
            (a uniform scale keeps them), colours and extras.
        loc: (3,) float64, the bounding-box centre in the input frame.
        scale: float, the input-frame length that becomes 1.

    Raises:
        InputError: no vertices, or all vertices at one position.
        ValueError: padding outside [0, 1).
    """
    check_mesh(mesh)
    if not 0.0 <= padding < 1.0:
        raise ValueError(f"padding must be in [0, 1), got {padding}")
    if len(mesh.vertices) == 0:
        raise InputError("cannot normalise a mesh with no vertices")
    vertices = mesh.vertices.astype(np.float64)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    longest = float((hi - lo).max())
    if not longest > 0:
        raise InputError("cannot normalise a mesh whose vertices all lie at one point")
    loc = (lo + hi) / 2.0
    scale = longest / (1.0 - padding)
    normalized = (vertices - loc) / scale
    return dataclasses.replace(mesh, vertices=normalized, extras=dict(mesh.extras)), loc, scale


def denormalize(mesh_or_points, loc, scale: float):
    """Undo :func:`normalize_to_unit_box`: ``v * scale + loc``.

    Args:
        mesh_or_points: a TriMesh, or points (P, 3) float (numpy or torch).
        loc: (3,) float, as returned by normalize_to_unit_box (or ONet's npz ``loc``).
        scale: float > 0, as returned by normalize_to_unit_box (or ONet's npz ``scale``).

    Returns:
        A new TriMesh (vertices float64, everything else kept), or points (P, 3) float64.

    Raises:
        ValueError: ``loc`` not 3 values or ``scale`` not positive.
    """
    loc = np.asarray(loc, dtype=np.float64)
    if loc.shape != (3,):
        raise ValueError(f"loc must have shape (3,), got {loc.shape}")
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if isinstance(mesh_or_points, TriMesh):
        check_mesh(mesh_or_points)
        mesh = mesh_or_points
        vertices = mesh.vertices.astype(np.float64) * scale + loc
        return dataclasses.replace(mesh, vertices=vertices, extras=dict(mesh.extras))
    return as_points(mesh_or_points) * scale + loc
