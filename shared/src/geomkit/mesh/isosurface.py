"""Marching cubes on a dense grid of samples, with world coordinates and outward faces."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.measure import marching_cubes as _skimage_marching_cubes

from geomkit.errors import InputError
from geomkit.structures import TriMesh

INSIDE_MODES = ("above", "below")


def marching_cubes(
    volume,
    level: float,
    bbox_min: Sequence[float] = (-0.5, -0.5, -0.5),
    bbox_max: Sequence[float] = (0.5, 0.5, 0.5),
    inside: str = "above",
) -> TriMesh:
    """Extract the ``level`` isosurface of a grid of samples (scikit-image's Lewiner variant).

    Sample ``volume[i, j, k]`` sits at ``bbox_min + (i, j, k) * (bbox_max - bbox_min) / (res - 1)``
    (x first; the first and last samples lie on the box ends). There is no half-voxel offset:
    ONet's vendored PyMCubes added +0.5, scikit-image and PyPI PyMCubes do not.

    Args:
        volume: (X, Y, Z) float samples, numpy or torch (any device); at least 2 per axis.
            scikit-image computes in float32, so the values are converted to float32.
        level: the iso value.
        bbox_min: (3,) world position of sample (0, 0, 0).
        bbox_max: (3,) world position of sample (X-1, Y-1, Z-1); larger than bbox_min.
        inside: "above" when the solid is where value > level (occupancy, logits), "below" when
            it is where value < level (signed distance, negative inside).

    Returns:
        TriMesh with float64 vertices (V, 3) in world coordinates, int64 faces (F, 3)
        counter-clockwise seen from outside (outward normals by the right-hand rule; no
        zero-area faces), and unit outward vertex_normals (V, 3) from the volume's gradient.
        A volume the level does not cross gives an empty TriMesh (0 vertices, 0 faces).

    Raises:
        InputError: ``volume`` is not 3-D with at least 2 samples per axis, or has NaN / inf.
        ValueError: unknown ``inside`` or a box with bbox_max <= bbox_min on some axis.
    """
    if inside not in INSIDE_MODES:
        raise ValueError(f"inside must be one of {INSIDE_MODES}, got {inside!r}")
    samples = _as_float32_volume(volume)
    lo, hi = as_box(bbox_min, bbox_max)
    level = float(level)
    if inside == "below":
        # -value > -level is value < level: one code path orients both modes the same way.
        samples, level = -samples, -level
    solid = samples > level
    if not solid.any() or solid.all():
        return _empty_mesh()
    # scikit-image names the winding for its own z-y-x reading of the axes; with x-first indexing
    # its "ascent" winding is the one whose right-hand normals leave the value > level solid.
    # Degenerate (zero-area) triangles would leave coincident vertices that break closedness.
    verts_index, faces, normals_index, _ = _skimage_marching_cubes(
        samples, level, gradient_direction="ascent", allow_degenerate=False
    )
    spacing = (hi - lo) / (np.asarray(samples.shape, dtype=np.float64) - 1.0)
    vertices = lo + verts_index.astype(np.float64) * spacing
    normals = _world_normals(normals_index, spacing)
    return TriMesh(vertices, faces.astype(np.int64), vertex_normals=normals)


def _as_float32_volume(volume) -> np.ndarray:
    if hasattr(volume, "detach"):
        volume = volume.detach().cpu().numpy()
    samples = np.ascontiguousarray(volume, dtype=np.float32)
    if samples.ndim != 3 or min(samples.shape) < 2:
        raise InputError(
            f"volume must be a 3-D grid (X, Y, Z) with at least 2 samples per axis, "
            f"got shape {samples.shape}"
        )
    if not np.isfinite(samples).all():
        raise InputError(
            f"volume has {int((~np.isfinite(samples)).sum())} NaN or inf samples (after float32 "
            "conversion); replace them, e.g. with a large finite value outside the solid"
        )
    return samples


def as_box(bbox_min, bbox_max) -> tuple[np.ndarray, np.ndarray]:
    """(3,) float64 corners of an axis-aligned box; ValueError unless max > min on every axis."""
    lo = np.asarray(bbox_min, dtype=np.float64).reshape(3)
    hi = np.asarray(bbox_max, dtype=np.float64).reshape(3)
    if not (hi > lo).all():
        raise ValueError(f"bbox_max {hi.tolist()} must exceed bbox_min {lo.tolist()} on every axis")
    return lo, hi


def _world_normals(normals_index: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    # A gradient taken per index step becomes a world gradient by dividing by the spacing.
    normals = normals_index.astype(np.float64) / spacing
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)


def _empty_mesh() -> TriMesh:
    return TriMesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
