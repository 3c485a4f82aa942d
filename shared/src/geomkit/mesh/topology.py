"""Vertex welding, connected components, the watertight check, and the signed volume that
tells orientation."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from geomkit.mesh._checks import check_mesh
from geomkit.structures import TriMesh


def merge_duplicate_vertices(mesh: TriMesh, tol: float = 0.0) -> TriMesh:
    """Weld vertices at the same position into one and re-index the faces.

    Args:
        mesh: TriMesh.
        tol: 0 merges exactly equal positions (-0.0 equals 0.0). A positive tol merges
            vertices within tol of each other (Euclidean), transitively: a chain of close
            vertices becomes one.

    Returns:
        A new TriMesh. Each group keeps its first vertex (position, normal, colour), and the
        groups keep the order of their first vertices. Faces are re-indexed, never dropped,
        so a face whose corners merge becomes degenerate. extras is copied unchanged.
    """
    check_mesh(mesh)
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if len(mesh.vertices) == 0:
        return dataclasses.replace(mesh, extras=dict(mesh.extras))
    group = _exact_groups(mesh.vertices) if tol == 0 else _groups_within(mesh.vertices, tol)
    new_index, keep = _first_of_each_group(group)
    return TriMesh(
        mesh.vertices[keep],
        new_index[mesh.faces],
        vertex_normals=None if mesh.vertex_normals is None else mesh.vertex_normals[keep],
        vertex_colors=None if mesh.vertex_colors is None else mesh.vertex_colors[keep],
        extras=dict(mesh.extras),
    )


def largest_component(mesh: TriMesh) -> TriMesh:
    """The connected piece with the largest surface area, vertices compacted.

    Faces are connected when they share a vertex index (weld a triangle soup first with
    :func:`merge_duplicate_vertices`). The criterion is VolSDF's mesh cleaning (trimesh's
    ``split(only_watertight=False)``, then the piece of largest area); trimesh joins faces by
    shared edges, so the two differ only for pieces that touch at a single vertex.

    Args:
        mesh: TriMesh.

    Returns:
        A new TriMesh with that piece's faces (in their original order) and only the vertices
        they use (in their original order, re-indexed). Ties go to the piece holding the
        lowest-numbered vertex. A mesh without faces gives an empty mesh; extras is copied
        unchanged.
    """
    check_mesh(mesh)
    if len(mesh.faces) == 0:
        return _subset(mesh, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    label = _vertex_components(mesh.faces, len(mesh.vertices))[mesh.faces[:, 0]]
    area = np.bincount(label, weights=mesh.face_areas(), minlength=label.max() + 1)
    keep_faces = np.flatnonzero(label == np.argmax(area))
    return _subset(mesh, keep_faces, np.unique(mesh.faces[keep_faces]))


def is_watertight(mesh: TriMesh) -> bool:
    """Closed and consistently oriented, after welding exactly equal vertex positions.

    True iff every undirected edge is used by exactly two faces and every directed edge
    (a -> b as the face's corners run) by exactly one, so the two faces at an edge run it in
    opposite directions. An empty mesh is not watertight.
    """
    check_mesh(mesh)
    if mesh.is_empty:
        return False
    faces = merge_duplicate_vertices(mesh).faces
    start = faces.reshape(-1)
    end = faces[:, [1, 2, 0]].reshape(-1)
    n = len(mesh.vertices)
    _, directed_uses = np.unique(start * n + end, return_counts=True)
    _, undirected_uses = np.unique(
        np.minimum(start, end) * n + np.maximum(start, end), return_counts=True
    )
    return bool((directed_uses == 1).all() and (undirected_uses == 2).all())


def signed_volume(mesh: TriMesh) -> float:
    """Enclosed volume by the divergence theorem: sum over faces of v0 . (v1 x v2) / 6.

    Positive for a closed mesh with outward (counter-clockwise from outside) faces, negative
    when they all face inward. For an open mesh the value depends on the origin.
    """
    check_mesh(mesh)
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    return float(np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0)


def _exact_groups(vertices: np.ndarray) -> np.ndarray:
    # + 0.0 turns -0.0 into 0.0: the same position, whichever way rows are compared.
    _, group = np.unique(vertices + 0.0, axis=0, return_inverse=True)
    return group.reshape(-1)


def _groups_within(vertices: np.ndarray, tol: float) -> np.ndarray:
    pairs = cKDTree(vertices).query_pairs(tol, output_type="ndarray")
    n = len(vertices)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _first_of_each_group(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New index per old vertex (groups numbered by first appearance), and the kept vertices."""
    _, first = np.unique(group, return_index=True)
    keep = np.sort(first)
    number_of_group = np.empty(group.max() + 1, dtype=np.int64)
    number_of_group[group[keep]] = np.arange(len(keep))
    return number_of_group[group], keep


def _vertex_components(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Component label (n_vertices,) of each vertex, vertices joined by the faces' edges."""
    start = faces.reshape(-1)
    end = faces[:, [1, 2, 0]].reshape(-1)
    graph = coo_matrix((np.ones(len(start)), (start, end)), shape=(n_vertices, n_vertices))
    return connected_components(graph, directed=False)[1]


def _subset(mesh: TriMesh, keep_faces: np.ndarray, keep_vertices: np.ndarray) -> TriMesh:
    """The faces ``keep_faces`` over the (sorted) vertices ``keep_vertices``, re-indexed."""
    new_index = np.full(len(mesh.vertices), -1, dtype=np.int64)
    new_index[keep_vertices] = np.arange(len(keep_vertices))
    return TriMesh(
        mesh.vertices[keep_vertices],
        new_index[mesh.faces[keep_faces]],
        vertex_normals=None if mesh.vertex_normals is None else mesh.vertex_normals[keep_vertices],
        vertex_colors=None if mesh.vertex_colors is None else mesh.vertex_colors[keep_vertices],
        extras=dict(mesh.extras),
    )
