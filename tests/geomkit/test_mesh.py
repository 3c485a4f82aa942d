"""geomkit.mesh: marching cubes, surface sampling, normalisation, watertightness, volume.

The inside test (ONet's IoU) is in test_mesh_inside.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy import stats

from geomkit.errors import InputError
from geomkit.mesh import (
    denormalize,
    is_watertight,
    largest_component,
    marching_cubes,
    merge_duplicate_vertices,
    normalize_to_unit_box,
    sample_surface,
    signed_volume,
)
from geomkit.structures import TriMesh
from tests.helpers import assert_close

SPHERE_CENTRE = np.array([0.05, -0.03, 0.02])
SPHERE_RADIUS = 0.3


def _grid(res: int, lo=(-0.5,) * 3, hi=(0.5,) * 3) -> np.ndarray:
    """(X, Y, Z, 3) world positions of the samples, corners on the box ends."""
    axes = [np.linspace(lo[i], hi[i], res if np.isscalar(res) else res[i]) for i in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _sphere_sdf(res: int = 64) -> np.ndarray:
    return np.linalg.norm(_grid(res) - SPHERE_CENTRE, axis=-1) - SPHERE_RADIUS


def _sphere_mesh(inside: str = "below") -> TriMesh:
    sdf = _sphere_sdf()
    return marching_cubes(sdf if inside == "below" else -sdf, 0.0, inside=inside)


def _as_trimesh(mesh: TriMesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def _box(extents=(1.0, 2.0, 3.0)) -> TriMesh:
    box = trimesh.creation.box(extents=extents)
    return TriMesh(np.asarray(box.vertices), np.asarray(box.faces))


# ---------------------------------------------------------------- marching cubes


@pytest.mark.parametrize("inside", ["above", "below"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_marching_cubes_plane_lands_on_level(axis, inside):
    # A non-cubic grid in a non-cubic box, so a swapped axis or a half-voxel offset shows.
    res, lo, hi = (17, 9, 33), (-1.0, -0.5, 0.0), (1.0, 0.5, 2.0)
    volume = _grid(res, lo, hi)[..., axis]
    level = lo[axis] + 0.37 * (hi[axis] - lo[axis])
    mesh = marching_cubes(volume, level, bbox_min=lo, bbox_max=hi, inside=inside)

    assert len(mesh.faces) > 0
    assert_close(mesh.vertices[:, axis], np.full(len(mesh.vertices), level), atol=1e-6, what="x")
    others = [i for i in range(3) if i != axis]
    assert_close(mesh.vertices[:, others].min(0), np.array(lo)[others], atol=1e-9, what="min")
    assert_close(mesh.vertices[:, others].max(0), np.array(hi)[others], atol=1e-9, what="max")
    # Outward = away from the solid: towards lower values for "above", higher for "below".
    expected = -1.0 if inside == "above" else 1.0
    normal_along = mesh.face_normals()[:, axis]
    assert_close(normal_along, np.full(len(mesh.faces), expected), atol=1e-6, what="face normals")
    assert_close(mesh.vertex_normals[:, axis], np.full(len(mesh.vertices), expected), atol=1e-5)


@pytest.mark.parametrize("inside", ["above", "below"])
def test_marching_cubes_sphere_radius_and_outward_faces(inside):
    mesh = _sphere_mesh(inside)
    voxel = 1.0 / 63
    radii = np.linalg.norm(mesh.vertices - SPHERE_CENTRE, axis=1)
    assert_close(radii, np.full(len(radii), SPHERE_RADIUS), atol=0.5 * voxel, what="radius")

    # trimesh computes the volume independently; positive means outward faces.
    reference = _as_trimesh(mesh)
    assert reference.volume > 0
    assert_close(reference.volume, 4 / 3 * np.pi * SPHERE_RADIUS**3, rtol=0.01, what="volume")
    assert reference.is_watertight and reference.is_winding_consistent

    radial = (mesh.vertices - SPHERE_CENTRE) / radii[:, None]
    assert (np.sum(mesh.vertex_normals * radial, axis=1) > 0.99).all()


def test_marching_cubes_accepts_torch_like_numpy():
    sdf = _sphere_sdf(24)
    from_numpy = marching_cubes(sdf, 0.0, inside="below")
    from_torch = marching_cubes(torch.from_numpy(sdf).float(), 0.0, inside="below")
    np.testing.assert_array_equal(from_torch.faces, from_numpy.faces)
    assert_close(from_torch.vertices, from_numpy.vertices, atol=1e-12, what="vertices")


@pytest.mark.parametrize(
    ("volume", "level"),
    [(np.zeros((8, 8, 8)), 0.0), (np.zeros((8, 8, 8)), 1.0), (_sphere_sdf(16), 5.0)],
)
def test_marching_cubes_without_crossing_is_empty(volume, level):
    mesh = marching_cubes(volume, level, inside="below")
    assert mesh.is_empty
    assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3)


def test_marching_cubes_rejects_bad_input():
    with pytest.raises(InputError, match="3-D grid"):
        marching_cubes(np.zeros((8, 8)), 0.0)
    with pytest.raises(InputError, match="at least 2"):
        marching_cubes(np.zeros((8, 1, 8)), 0.0)
    volume = _sphere_sdf(8)
    volume[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        marching_cubes(volume, 0.0)
    with pytest.raises(ValueError, match="inside"):
        marching_cubes(_sphere_sdf(8), 0.0, inside="negative")
    with pytest.raises(ValueError, match="bbox_max"):
        marching_cubes(_sphere_sdf(8), 0.0, bbox_min=(0, 0, 0), bbox_max=(1, 0, 1))


# ---------------------------------------------------------------- surface sampling


def test_sample_surface_points_lie_on_their_faces():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    mesh = TriMesh(np.asarray(sphere.vertices), np.asarray(sphere.faces))
    points, normals, faces = sample_surface(mesh, 10_000, seed=3, return_faces=True)

    assert points.shape == (10_000, 3) and points.dtype == np.float64
    triangles = sphere.triangles[faces]
    plane_distance = np.einsum("ij,ij->i", points - triangles[:, 0], sphere.face_normals[faces])
    assert_close(plane_distance, np.zeros(len(points)), atol=1e-12, what="distance to face plane")
    barycentric = trimesh.triangles.points_to_barycentric(triangles, points)
    assert (barycentric > -1e-9).all() and (barycentric < 1 + 1e-9).all()
    assert_close(normals, sphere.face_normals[faces], atol=1e-12, what="normals")


def test_sample_surface_share_per_face_follows_area():
    # Two separate right triangles with areas 0.5 and 1.5: shares 1/4 and 3/4.
    vertices = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [3, 0, 0], [2, 3, 0]]
    mesh = TriMesh(np.array(vertices, dtype=np.float64), np.array([[0, 1, 2], [3, 4, 5]]))
    _, _, faces = sample_surface(mesh, 200_000, seed=0, return_faces=True)
    shares = np.bincount(faces, minlength=2) / len(faces)
    assert_close(shares, np.array([0.25, 0.75]), rtol=0.01, what="share per face")


def test_sample_surface_is_uniform_on_unit_square():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float64)
    mesh = TriMesh(vertices, np.array([[0, 1, 2], [0, 2, 3]]))
    points, normals = sample_surface(mesh, 100_000, seed=1)

    assert_close(points.mean(0), np.array([0.5, 0.5, 0.0]), atol=0.004, what="sample mean")
    assert_close(points[:, :2].var(0), np.full(2, 1 / 12), atol=0.002, what="sample variance")
    for axis in (0, 1):
        assert stats.kstest(points[:, axis], "uniform").pvalue > 1e-3
    # x + y has the triangular density on [0, 2]; this looks across the shared diagonal.
    diagonal = stats.triang(c=0.5, loc=0.0, scale=2.0)
    assert stats.kstest(points[:, 0] + points[:, 1], diagonal.cdf).pvalue > 1e-3
    assert_close(normals, np.tile([0.0, 0.0, 1.0], (len(points), 1)), atol=0.0, what="normals")


def test_sample_surface_is_deterministic_given_a_seed():
    mesh = _box()
    first, _ = sample_surface(mesh, 1000, seed=5)
    again, _ = sample_surface(mesh, 1000, seed=5)
    other, _ = sample_surface(mesh, 1000, seed=6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    from_generator, _ = sample_surface(mesh, 1000, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(from_generator, first)


def test_sample_surface_edge_cases():
    points, normals = sample_surface(_box(), 0, seed=0)
    assert points.shape == (0, 3) and normals.shape == (0, 3)
    with pytest.raises(InputError, match="area"):
        sample_surface(TriMesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)), 10)
    flat = TriMesh(np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([[0, 1, 2]]))
    with pytest.raises(InputError, match="area"):
        sample_surface(flat, 10)


# ---------------------------------------------------------------- normalisation


def test_normalize_to_unit_box_hand_derived():
    corners = np.array([[1.0, 2.0, 0.0], [3.0, 6.0, 1.0], [1.0, 6.0, 0.5]])
    mesh = TriMesh(corners, np.array([[0, 1, 2]]))
    normalized, loc, scale = normalize_to_unit_box(mesh, padding=0.1)
    assert_close(loc, np.array([2.0, 4.0, 0.5]), atol=1e-15, what="loc")
    assert_close(scale, 4.0 / 0.9, rtol=1e-15, what="scale")
    expected = (corners - [2.0, 4.0, 0.5]) * (0.9 / 4.0)
    assert_close(normalized.vertices, expected, atol=1e-15, what="vertices")
    np.testing.assert_array_equal(normalized.faces, mesh.faces)


@pytest.mark.realdata
@pytest.mark.parametrize("padding", [0.0, 0.1])
def test_normalize_chair_and_back(shared_data, padding):
    chair = trimesh.load(shared_data / "onet" / "meshes" / "chair_0890.off", process=False)
    mesh = TriMesh(np.asarray(chair.vertices), np.asarray(chair.faces))
    normalized, loc, scale = normalize_to_unit_box(mesh, padding=padding)

    lo, hi = normalized.vertices.min(0), normalized.vertices.max(0)
    assert_close((hi - lo).max(), 1.0 - padding, atol=1e-12, what="longest side")
    assert_close((hi + lo) / 2, np.zeros(3), atol=1e-12, what="centre")
    assert_close(loc, chair.bounds.mean(0), atol=1e-12, what="loc vs trimesh bounds")
    assert_close(scale, chair.extents.max() / (1 - padding), rtol=1e-12, what="scale")

    restored = denormalize(normalized, loc, scale)
    assert isinstance(restored, TriMesh)
    assert_close(restored.vertices, mesh.vertices, atol=1e-9, what="round trip")
    points = denormalize(torch.from_numpy(normalized.vertices), loc, scale)
    assert_close(points, mesh.vertices, atol=1e-9, what="round trip of points")


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="padding"):
        normalize_to_unit_box(_box(), padding=1.0)
    single = TriMesh(np.ones((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(InputError, match="one point"):
        normalize_to_unit_box(single)
    with pytest.raises(ValueError, match="scale"):
        denormalize(np.zeros((4, 3)), np.zeros(3), 0.0)


# ---------------------------------------------------------------- topology and volume


def test_watertight_closed_meshes():
    assert is_watertight(_sphere_mesh("below"))
    assert is_watertight(_box())


def test_watertight_fails_on_open_or_flipped_or_empty():
    box = _box()
    open_box = TriMesh(box.vertices, box.faces[2:])  # drops one side (two triangles)
    flipped = box.faces.copy()
    flipped[5] = flipped[5, ::-1]
    assert not _as_trimesh(open_box).is_watertight  # trimesh agrees the reference is open
    assert not is_watertight(open_box)
    assert not is_watertight(TriMesh(box.vertices, flipped))
    assert not is_watertight(TriMesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)))


def test_watertight_merges_split_vertices():
    box = _box()
    # Every face with its own three vertices: closed only once positions are welded.
    corners = box.vertices[box.faces].reshape(-1, 3)
    soup = TriMesh(corners, np.arange(len(corners)).reshape(-1, 3))
    assert is_watertight(soup)

    welded = merge_duplicate_vertices(soup)
    assert len(welded.vertices) == 8
    assert_close(welded.vertices[welded.faces], box.vertices[box.faces], atol=0.0, what="triangles")


def test_merge_duplicate_vertices_with_tolerance():
    box = _box()
    soup = box.vertices[box.faces].reshape(-1, 3)
    jittered = soup + np.random.default_rng(0).uniform(-1e-9, 1e-9, soup.shape)
    mesh = TriMesh(jittered, np.arange(len(soup)).reshape(-1, 3))
    assert len(merge_duplicate_vertices(mesh).vertices) == len(soup)
    welded = merge_duplicate_vertices(mesh, tol=1e-6)
    assert len(welded.vertices) == 8
    triangles = welded.vertices[welded.faces]
    assert_close(triangles, box.vertices[box.faces], atol=2e-9, what="triangles")


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["chair_0890", "chair_0891"])
def test_modelnet_chairs_are_not_watertight(shared_data, name):
    chair = trimesh.load(shared_data / "onet" / "meshes" / f"{name}.off", process=False)
    assert not is_watertight(TriMesh(np.asarray(chair.vertices), np.asarray(chair.faces)))


def test_signed_volume():
    box = _box((1.0, 2.0, 3.0))
    assert_close(signed_volume(box), 6.0, rtol=1e-12, what="box volume")
    assert_close(signed_volume(TriMesh(box.vertices, box.faces[:, ::-1])), -6.0, rtol=1e-12)
    sphere = _sphere_mesh("above")
    assert_close(signed_volume(sphere), _as_trimesh(sphere).volume, rtol=1e-9, what="sphere")


# ---------------------------------------------------------------- largest component


def _icosphere(subdivisions: int, radius: float, centre) -> TriMesh:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return TriMesh(np.asarray(sphere.vertices) + centre, np.asarray(sphere.faces))


def test_largest_component_keeps_largest_area_and_compacts():
    # The small sphere comes first and has more faces: the area criterion (VolSDF's) must
    # still pick the large one, and its indices must shift down to start at 0.
    small = _icosphere(3, 0.2, (2.0, 0.0, 0.0))
    big = _icosphere(1, 1.0, (0.0, 0.0, 0.0))
    assert len(small.faces) > len(big.faces)
    normals = np.random.default_rng(0).normal(size=(len(small.vertices) + len(big.vertices), 3))
    both = TriMesh(
        np.concatenate([small.vertices, big.vertices]),
        np.concatenate([small.faces, big.faces + len(small.vertices)]),
        vertex_normals=normals,
    )
    kept = largest_component(both)
    assert_close(kept.vertices, big.vertices, atol=0.0, what="vertices")
    assert np.array_equal(kept.faces, big.faces)
    assert_close(kept.vertex_normals, normals[len(small.vertices) :], atol=0.0, what="normals")
    assert is_watertight(kept)


def test_largest_component_joins_faces_through_a_shared_vertex():
    # Two triangles meeting only at vertex 0 are one piece; a far triangle is another, and an
    # unused vertex is dropped.
    vertices = np.array(
        [
            [0, 0, 0],
            [1, 0, 0],
            [0, 1, 0],
            [-1, 0, 0],
            [0, -1, 0],
            [9, 9, 9],
            [5, 5, 5],
            [5.1, 5, 5],
            [5, 5.1, 5],
        ],
        dtype=float,
    )
    faces = np.array([[0, 1, 2], [0, 3, 4], [6, 7, 8]])
    kept = largest_component(TriMesh(vertices, faces))
    assert np.array_equal(kept.faces, [[0, 1, 2], [0, 3, 4]])
    assert_close(kept.vertices, vertices[:5], atol=0.0, what="vertices")
    empty = largest_component(TriMesh(vertices, np.zeros((0, 3), dtype=np.int64)))
    assert empty.is_empty and len(empty.vertices) == 0
