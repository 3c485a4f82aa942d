"""Uniform (area-weighted) random points on a triangle mesh's surface."""

from __future__ import annotations

import numpy as np

from geomkit.errors import InputError
from geomkit.mesh._checks import check_mesh
from geomkit.structures import TriMesh


def sample_surface(
    mesh: TriMesh,
    n: int,
    seed: int | np.random.Generator | None = None,
    return_faces: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` points uniformly over the surface area, each with its face's normal.

    Faces are drawn with probability proportional to their area, then a point uniformly inside
    the face: with r1, r2 ~ U(0, 1), ``(1 - sqrt(r1)) a + sqrt(r1) (1 - r2) b + sqrt(r1) r2 c``.

    Args:
        mesh: TriMesh with positive total area.
        n: number of points, >= 0.
        seed: None (fresh entropy), an int, or a numpy Generator (advanced in place). The
            same int gives the same points.
        return_faces: also return the index of the face each point lies on.

    Returns:
        points: (n, 3) float64, on the surface.
        normals: (n, 3) float64 unit face normals (right-hand rule: outward for a mesh
            oriented counter-clockwise from outside).
        faces: (n,) int64 face indices, only when ``return_faces``.

    Raises:
        InputError: the mesh has no faces or zero total area.
        ValueError: negative ``n``.
    """
    check_mesh(mesh)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    areas = mesh.face_areas()
    total = areas.sum()
    if not total > 0:
        raise InputError(
            f"cannot sample the surface of a mesh with {len(mesh.faces)} faces and total area "
            f"{total}; check the mesh is not empty or degenerate"
        )
    rng = np.random.default_rng(seed)
    face_index = _faces_by_area(areas, n, rng)
    points = _uniform_in_triangles(mesh.vertices[mesh.faces[face_index]].astype(np.float64), rng)
    normals = mesh.face_normals()[face_index]
    if return_faces:
        return points, normals, face_index
    return points, normals


def _faces_by_area(areas: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    cumulative = np.cumsum(areas)
    # side="right" never picks a zero-area face: its cumulative value equals its predecessor's.
    index = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    # A draw that rounds up to the total lands past the end: give it the last face with area.
    return np.minimum(index, np.flatnonzero(areas > 0)[-1]).astype(np.int64)


def _uniform_in_triangles(triangles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniform point in each triangle of (n, 3, 3) float64 -> (n, 3) float64."""
    r1 = np.sqrt(rng.random(len(triangles)))[:, None]
    r2 = rng.random(len(triangles))[:, None]
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    return (1.0 - r1) * a + r1 * (1.0 - r2) * b + r1 * r2 * c
