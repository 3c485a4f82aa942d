"""ONet's inside-mesh test (``check_mesh_contains``, the definition of its IoU), in numpy.

The mesh's bounding box is scaled per axis onto [0.5, R - 0.5]^3 (R = ``hash_resolution``, 512).
For each point, triangles whose xy projection strictly contains the point's xy are the
crossings of the vertical line through it; those at or above the point and those below are
counted. The point is inside iff both counts are odd. On a closed, consistently meshed surface
the two parities agree; where they do not (holes, self-intersections, a line through an edge
or vertex, which the strict test counts for no triangle) ONet printed
"contains1 != contains2" and answered "outside". Every comparison and the float64 arithmetic
follow the original, so results match it point for point.

The original finds candidate triangles with an R x R hash of the triangles' xy bounding boxes.
Here the points are sorted by their hash cell (id = R * x + y), so the cells a triangle's
box covers in one x column are one contiguous run of sorted points; the (point, triangle)
candidates are expanded column by column, in chunks, which bounds memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from geomkit.mesh._checks import as_points, check_mesh
from geomkit.structures import TriMesh

ONET_HASH_RESOLUTION = 512
_COLUMNS_PER_CHUNK = 1 << 18
_PAIRS_PER_CHUNK = 1 << 20


class ContainsResult(NamedTuple):
    """``inside``: (P,) bool, ONet's answer. ``agree``: (P,) bool, the upward and downward
    crossing parities agree (False where ONet printed "contains1 != contains2")."""

    inside: np.ndarray
    agree: np.ndarray


def contains(mesh: TriMesh, points, hash_resolution: int = ONET_HASH_RESOLUTION) -> np.ndarray:
    """ONet's ``check_mesh_contains``: which points are inside the mesh.

    Args:
        mesh: TriMesh; meant for closed meshes (see :func:`contains_with_agreement`).
        points: (P, 3) float, numpy or torch, same frame as the mesh.
        hash_resolution: ONet's R; it also sets the rescaling, so keep 512 for ONet's numbers.

    Returns:
        (P,) bool. Points outside the mesh's bounding box, and all points for an empty or flat
        mesh, are outside.
    """
    return contains_with_agreement(mesh, points, hash_resolution).inside


def contains_with_agreement(
    mesh: TriMesh, points, hash_resolution: int = ONET_HASH_RESOLUTION
) -> ContainsResult:
    """ONet's inside test plus whether its two ray directions agree, per point.

    Args:
        mesh: TriMesh (vertices (V, 3) float, faces (F, 3) int64).
        points: (P, 3) float, numpy or torch, same frame as the mesh.
        hash_resolution: ONet's R (512).

    Returns:
        ContainsResult(inside (P,) bool, agree (P,) bool). inside = both parities odd.
        Points outside the bounding box have no crossings: outside, and agreeing.

    Raises:
        InputError: points not (P, 3), or NaN / inf in points or vertices.
        ValueError: hash_resolution < 2.
    """
    if hash_resolution < 2:
        raise ValueError(f"hash_resolution must be >= 2, got {hash_resolution}")
    check_mesh(mesh)
    points = as_points(points)
    inside = np.zeros(len(points), dtype=bool)
    agree = np.ones(len(points), dtype=bool)
    if mesh.is_empty or len(points) == 0:
        return ContainsResult(inside, agree)
    triangles = mesh.vertices[mesh.faces].astype(np.float64)
    lo = triangles.reshape(-1, 3).min(axis=0)
    hi = triangles.reshape(-1, 3).max(axis=0)
    if not (hi > lo).all():
        # A flat mesh encloses nothing (ONet divides by the zero extent and gets NaN: outside).
        return ContainsResult(inside, agree)
    scale = (hash_resolution - 1) / (hi - lo)
    translate = 0.5 - scale * lo
    triangles = scale * triangles + translate
    points = scale * points + translate
    in_box = np.all((points >= 0) & (points <= hash_resolution), axis=1)
    above, below = _count_vertical_crossings(triangles, points[in_box], hash_resolution)
    odd_above, odd_below = above % 2 == 1, below % 2 == 1
    inside[in_box] = odd_above & odd_below
    agree[in_box] = odd_above == odd_below
    return ContainsResult(inside, agree)


def _count_vertical_crossings(
    triangles: np.ndarray, points: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crossings of each point's vertical line at or above it, and below it.

    Args:
        triangles: (F, 3, 3) float64 in hash coordinates ([0.5, R - 0.5]^3).
        points: (P, 3) float64 in hash coordinates, inside [0, R]^3.

    Returns:
        (above (P,) int64, below (P,) int64).
    """
    above = np.zeros(len(points), dtype=np.int64)
    below = np.zeros(len(points), dtype=np.int64)
    cell_xy = points[:, :2].astype(np.int64)  # truncation, as the original's C casts
    # A point on the far faces (x or y == R) falls in no cell: no candidates, like ONet.
    hashed = np.flatnonzero((cell_xy < resolution).all(axis=1))
    cells = cell_xy[hashed, 0] * resolution + cell_xy[hashed, 1]
    order = np.argsort(cells, kind="stable")
    sorted_points, sorted_cells = hashed[order], cells[order]
    for point_pos, tri_index in _candidate_pairs(triangles, sorted_cells, resolution):
        point_index = sorted_points[point_pos]
        hit = _strictly_inside_xy(points[point_index, :2], triangles[tri_index, :, :2])
        point_index, tri_index = point_index[hit], tri_index[hit]
        is_above, is_below = _crossing_side(points[point_index], triangles[tri_index])
        above += np.bincount(point_index[is_above], minlength=len(points))
        below += np.bincount(point_index[is_below], minlength=len(points))
    return above, below


def _candidate_pairs(
    triangles: np.ndarray, sorted_cells: np.ndarray, resolution: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions in the sorted points, triangle indices) of every point-triangle pair whose
    hash cell the triangle's xy bounding box covers, in chunks of bounded size."""
    # The original casts the box corners to int (truncation) and clamps them into the grid.
    box_lo = np.clip(triangles[:, :, :2].min(axis=1).astype(np.int64), 0, resolution - 1)
    box_hi = np.clip(triangles[:, :, :2].max(axis=1).astype(np.int64), 0, resolution - 1)
    widths = box_hi[:, 0] - box_lo[:, 0] + 1
    for tris in _chunks_by_weight(widths, _COLUMNS_PER_CHUNK):
        tri_of_column = np.repeat(tris, widths[tris])
        column_x = box_lo[tri_of_column, 0] + _ranks_within_runs(widths[tris])
        first_cell = column_x * resolution + box_lo[tri_of_column, 1]
        last_cell = column_x * resolution + box_hi[tri_of_column, 1]
        starts = np.searchsorted(sorted_cells, first_cell, side="left")
        counts = np.searchsorted(sorted_cells, last_cell, side="right") - starts
        for columns in _chunks_by_weight(counts, _PAIRS_PER_CHUNK):
            run_lengths = counts[columns]
            point_pos = np.repeat(starts[columns], run_lengths) + _ranks_within_runs(run_lengths)
            yield point_pos, np.repeat(tri_of_column[columns], run_lengths)


def _chunks_by_weight(weights: np.ndarray, budget: int) -> Iterator[np.ndarray]:
    """Consecutive index ranges whose weights sum to about ``budget`` (one item may exceed it)."""
    cumulative = np.cumsum(weights)
    if len(cumulative) == 0 or cumulative[-1] == 0:
        return
    bounds = np.searchsorted(cumulative, np.arange(budget, cumulative[-1], budget), side="right")
    edges = np.unique(np.concatenate(([0], bounds, [len(weights)])))
    for begin, end in zip(edges[:-1], edges[1:], strict=True):
        yield np.arange(begin, end)


def _ranks_within_runs(run_lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., n_i - 1 for each run i, concatenated: (sum(run_lengths),) int64."""
    total = int(run_lengths.sum())
    run_starts = np.cumsum(run_lengths) - run_lengths
    return np.arange(total, dtype=np.int64) - np.repeat(run_starts, run_lengths)


def _strictly_inside_xy(points_xy: np.ndarray, triangles_xy: np.ndarray) -> np.ndarray:
    """ONet's 2-D test: barycentrics strictly in (0, 1), all three; degenerate triangles miss.

    Args:
        points_xy: (N, 2) float64. triangles_xy: (N, 3, 2) float64, paired with the points.

    Returns:
        (N,) bool.
    """
    t0, t1, t2 = triangles_xy[:, 0], triangles_xy[:, 1], triangles_xy[:, 2]
    a00, a01 = t0[:, 0] - t2[:, 0], t1[:, 0] - t2[:, 0]
    a10, a11 = t0[:, 1] - t2[:, 1], t1[:, 1] - t2[:, 1]
    y0, y1 = points_xy[:, 0] - t2[:, 0], points_xy[:, 1] - t2[:, 1]
    det = a00 * a11 - a01 * a10
    sign, abs_det = np.sign(det), np.abs(det)
    # Barycentrics scaled by |det| (sign folded in), so no division.
    u = (a11 * y0 - a01 * y1) * sign
    v = (-a10 * y0 + a00 * y1) * sign
    uv = u + v
    return (
        (det != 0) & (u > 0) & (u < abs_det) & (v > 0) & (v < abs_det) & (uv > 0) & (uv < abs_det)
    )


def _crossing_side(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each triangle's plane meets the point's vertical line at/above or below it.

    Depths are compared scaled by |n_z| (n = (t2 - t0) x (t1 - t0)) to avoid a division;
    a vertical triangle (n_z == 0) counts on neither side.

    Args:
        points: (N, 3) float64. triangles: (N, 3, 3) float64, paired with the points.

    Returns:
        (at_or_above (N,) bool, below (N,) bool).
    """
    t0, t1, t2 = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    e1, e2 = t2 - t0, t1 - t0
    n_x = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    n_y = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    n_z = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    alpha = n_x * (t0[:, 0] - points[:, 0]) + n_y * (t0[:, 1] - points[:, 1])
    abs_n_z = np.abs(n_z)
    depth_scaled = t0[:, 2] * abs_n_z + alpha * np.sign(n_z)
    point_scaled = points[:, 2] * abs_n_z
    vertical = n_z == 0
    return (depth_scaled >= point_scaled) & ~vertical, (depth_scaled < point_scaled) & ~vertical
