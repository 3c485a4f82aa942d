"""Plain containers for geometry on the CPU side (IO, meshes, metrics): numpy arrays.

Batched GPU work uses padded tensors (see geomkit.ops); these are for one object at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PointCloud:
    """Points (P, 3) float; optional normals (P, 3) and colours (P, 3) in [0, 1] float."""

    points: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None

    def __post_init__(self):
        self.points = np.asarray(self.points)
        _check_per_point(self.points, "points")
        for name in ("normals", "colors"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                _check_per_point(value, name, len(self.points))
                setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class TriMesh:
    """Triangle mesh: vertices (V, 3) float, faces (F, 3) int64 (counter-clockwise = outward).

    Optional vertex_normals (V, 3), vertex_colors (V, 3) in [0, 1] float.
    ``extras`` carries anything a reader found beside (e.g. per-face data), untouched.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_normals: np.ndarray | None = None
    vertex_colors: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices)
        _check_per_point(self.vertices, "vertices")
        faces = np.asarray(self.faces)
        if faces.size == 0:
            faces = faces.reshape(0, 3)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
        self.faces = faces.astype(np.int64, copy=False)
        for name in ("vertex_normals", "vertex_colors"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                _check_per_point(value, name, len(self.vertices))
                setattr(self, name, value)

    @property
    def is_empty(self) -> bool:
        return len(self.vertices) == 0 or len(self.faces) == 0

    def face_normals(self) -> np.ndarray:
        """Unit face normals (F, 3) by the right-hand rule; zero for degenerate faces."""
        tri = self.vertices[self.faces].astype(np.float64)
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)

    def face_areas(self) -> np.ndarray:
        """Face areas (F,) float64."""
        tri = self.vertices[self.faces].astype(np.float64)
        return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def _check_per_point(array: np.ndarray, name: str, count: int | None = None) -> None:
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {array.shape}")
    if count is not None and len(array) != count:
        raise ValueError(f"{name} has {len(array)} rows, expected {count}")
