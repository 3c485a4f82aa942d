"""OBJ and OFF reading and writing, and the readers that dispatch on the suffix."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from geomkit.errors import InputError
from geomkit.io import (
    meshes,
    read_geometry,
    read_mesh,
    read_obj,
    read_off,
    read_point_cloud,
    write_obj,
    write_off,
    write_ply,
)
from geomkit.structures import PointCloud, TriMesh
from tests.helpers import assert_close, assert_raises_naming

SQUARE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float64)

# Every face syntax. Faces written after the 5th vertex use negative indices relative to it.
OBJ_ALL_SYNTAXES = """# a square and a triangle
mtllib scene.mtl
o square
g part
s off
usemtl red
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vn 0 0 1
f 1 2 3
f 1/1 3/3 4/2
f 1/1/1 2/2/1 3/3/1 4/1/1
f 1//1 2//1 3//1
v 2 0 0
f -4 -1 -3
"""
EXPECTED_FACES = [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 1, 2], [1, 4, 2]]


def test_obj_all_face_syntaxes_and_negative_indices(tmp_path):
    path = tmp_path / "all.obj"
    path.write_text(OBJ_ALL_SYNTAXES)
    mesh = read_obj(path)
    assert_close(mesh.vertices, SQUARE, what="vertices")
    np.testing.assert_array_equal(mesh.faces, EXPECTED_FACES)
    assert mesh.vertex_colors is None


@pytest.mark.parametrize("layout", ["regular", "irregular"])
def test_obj_vectorised_and_line_readers_agree(tmp_path, monkeypatch, layout):
    """Triangles in one syntax per line take the vectorised reader; a trailing comment sends
    the file to the line-by-line reader. Both must give the hand-derived mesh."""
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\nvt 0 0\nvn 0 0 1\n"
    text += "f 1/1/1 2/1/1 3/1/1\nf 1//1 3//1 4//1\nf 2/1 5/1 3/1\n"
    if layout == "regular":
        monkeypatch.setattr(meshes, "_read_obj_lines", _must_not_run)
    else:
        text = text.replace("f 2/1 5/1 3/1", "f 2/1 5/1 3/1 # last face")
    path = tmp_path / "t.obj"
    path.write_text(text)
    mesh = read_obj(path)
    assert_close(mesh.vertices, SQUARE, what="vertices")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [1, 4, 2]])


def _must_not_run(*args):
    raise AssertionError("the line-by-line reader ran on a regular file")


@pytest.mark.parametrize("irregular", [False, True])
def test_obj_vertex_colours_and_vertices_only(tmp_path, irregular):
    extra = "\n# end\n\n" if irregular else ""
    (tmp_path / "c.obj").write_text(f"v 0 0 0 1 0 0.5\nv 1 2 3 0 1 0{extra}\n")
    mesh = read_obj(tmp_path / "c.obj")
    assert mesh.faces.shape == (0, 3)
    assert_close(mesh.vertices, [[0, 0, 0], [1, 2, 3]], what="vertices")
    assert_close(mesh.vertex_colors, [[1, 0, 0.5], [0, 1, 0]], what="colours kept in [0, 1]")

    (tmp_path / "c255.obj").write_text(f"v 0 0 0 255 0 51\nv\t1 2 3 0 255 0{extra}\n")
    colors = read_obj(tmp_path / "c255.obj").vertex_colors
    assert_close(colors, [[1, 0, 0.2], [0, 1, 0]], atol=1e-12, what="0-255 colours scaled")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_obj_round_trip_exact(tmp_path, dtype):
    rng = np.random.default_rng(4)
    mesh = TriMesh(
        rng.normal(size=(40, 3)).astype(dtype),
        rng.integers(0, 40, size=(60, 3)),
        vertex_colors=rng.random((40, 3)),
    )
    write_obj(tmp_path / "m.obj", mesh)
    read = read_obj(tmp_path / "m.obj")
    np.testing.assert_array_equal(read.vertices.astype(dtype), mesh.vertices)
    np.testing.assert_array_equal(read.faces, mesh.faces)
    assert_close(read.vertex_colors, mesh.vertex_colors, atol=1e-8, what="colours")
    reference = trimesh.load(tmp_path / "m.obj", process=False)
    assert_close(read.vertices, reference.vertices, what="vertices vs trimesh")
    np.testing.assert_array_equal(read.faces, reference.faces)


OFF_GLUED = """OFF5 3 0
# ModelNet glues the counts to the keyword
0 0 0
1 0 0
1 1 0

0 1 0
2 0 0
4 0 1 2 3 255 0 0
3 1 4 2
3 3 2 1 0.5 0.5 0.5 1.0
"""


@pytest.mark.parametrize("header", ["OFF5 3 0\n", "OFF\n5 3\n", "OFF 5 3 0\n"])
def test_off_headers_comments_polygons_face_colours(tmp_path, header):
    path = tmp_path / "m.off"
    path.write_text(OFF_GLUED.replace("OFF5 3 0\n", header))
    mesh = read_off(path)
    assert_close(mesh.vertices, SQUARE, what="vertices")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [1, 4, 2], [3, 2, 1]])


@pytest.mark.parametrize("layout", ["regular", "irregular"])
def test_off_vectorised_and_line_readers_agree(tmp_path, monkeypatch, layout):
    text = "OFF5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n2 0 0\n4 0 1 2 3 1 2 3\n4 1 4 2 0 4 5 6\n"
    if layout == "regular":
        monkeypatch.setattr(meshes, "_read_off_lines", _must_not_run)
    else:
        text = text.replace("\n2 0 0\n", "\n2 0 0\n# faces\n")
    path = tmp_path / "t.off"
    path.write_text(text)
    mesh = read_off(path)
    assert_close(mesh.vertices, SQUARE, what="vertices")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [1, 4, 2], [1, 2, 0]])


@pytest.mark.parametrize("blank_line", ["", "\n"])
def test_coff_and_noff(tmp_path, blank_line):
    (tmp_path / "c.off").write_text(
        "COFF\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 0 255 0 255\n"
        f"{blank_line}0 1 0 0 0 51 255\n3 0 1 2\n"
    )
    mesh = read_off(tmp_path / "c.off")
    assert_close(mesh.vertex_colors, [[1, 0, 0], [0, 1, 0], [0, 0, 0.2]], atol=1e-12, what="rgb")
    (tmp_path / "n.off").write_text(
        f"NOFF\n3 1 0\n0 0 0 0 0 1\n1 0 0 0 0 1\n{blank_line}0 1 0 0 1 0\n3 0 1 2\n"
    )
    mesh = read_off(tmp_path / "n.off")
    assert_close(mesh.vertex_normals, [[0, 0, 1], [0, 0, 1], [0, 1, 0]], what="normals")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2]])


@pytest.mark.parametrize("with_colors", [False, True])
def test_off_round_trip(tmp_path, with_colors):
    rng = np.random.default_rng(5)
    colors = rng.random((30, 3)) if with_colors else None
    mesh = TriMesh(rng.normal(size=(30, 3)), rng.integers(0, 30, (50, 3)), vertex_colors=colors)
    write_off(tmp_path / "m.off", mesh)
    read = read_off(tmp_path / "m.off")
    np.testing.assert_array_equal(read.vertices, mesh.vertices)
    np.testing.assert_array_equal(read.faces, mesh.faces)
    if with_colors:
        assert_close(read.vertex_colors, mesh.vertex_colors, atol=0.5 / 255 + 1e-9, what="rgb")
    reference = trimesh.load(tmp_path / "m.off", process=False)
    assert_close(read.vertices, reference.vertices, what="vertices vs trimesh")
    np.testing.assert_array_equal(read.faces, reference.faces)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative, vertices, faces",
    [
        ("meshes/bunny.obj", 2503, 4968),
        ("onet/meshes/chair_0890.off", 1658, 2996),
        ("onet/meshes/chair_0891.off", 14396, 4821),
    ],
)
def test_real_meshes_match_trimesh(shared_data, relative, vertices, faces):
    path = shared_data / relative
    mesh = read_mesh(path)
    reference = trimesh.load(path, process=False)
    assert mesh.vertices.shape == (vertices, 3) and mesh.faces.shape == (faces, 3)
    assert_close(mesh.vertices, reference.vertices, what="vertices vs trimesh")
    np.testing.assert_array_equal(mesh.faces, reference.faces)


def test_dispatch_on_suffix(tmp_path):
    rng = np.random.default_rng(6)
    normals = rng.normal(size=(5, 3))
    mesh = TriMesh(SQUARE, [[0, 1, 2], [0, 2, 3]], vertex_normals=normals)
    write_ply(tmp_path / "m.PLY", mesh)
    cloud = read_point_cloud(tmp_path / "m.PLY")
    assert isinstance(cloud, PointCloud)
    assert_close(cloud.points, SQUARE, what="points")
    assert_close(cloud.normals, normals.astype(np.float32), what="normals")

    write_ply(tmp_path / "p.ply", PointCloud(SQUARE))
    as_mesh = read_mesh(tmp_path / "p.ply")
    assert isinstance(as_mesh, TriMesh) and as_mesh.faces.shape == (0, 3)

    write_obj(tmp_path / "m.obj", mesh)
    write_off(tmp_path / "m.off", mesh)
    for name in ("m.obj", "m.off"):
        np.testing.assert_array_equal(read_mesh(tmp_path / name).faces, mesh.faces)
        assert_close(read_point_cloud(tmp_path / name).points, SQUARE, what=name)

    assert isinstance(read_geometry(tmp_path / "m.off"), TriMesh)
    assert isinstance(read_geometry(tmp_path / "p.ply"), PointCloud)
    (tmp_path / "v.obj").write_text("v 0 0 0\nv 1 2 3\n")
    points = read_geometry(tmp_path / "v.obj")
    assert isinstance(points, PointCloud)
    assert_close(points.points, [[0, 0, 0], [1, 2, 3]], what="points of a v-only OBJ")

    (tmp_path / "m.stl").write_text("solid")
    for reader in (read_mesh, read_point_cloud, read_geometry):
        with pytest.raises(InputError) as error:
            reader(tmp_path / "m.stl")
        assert "m.stl" in str(error.value) and ".ply, .obj, .off" in str(error.value)


BAD_OBJ = {
    "unknown_statement": ("v 0 0 0\nvertex 1 1 1\n", "line 2: unknown OBJ statement 'vertex'"),
    "text_coordinate": ("v 0 0 0\nv 1 x 1\n", "line 2"),
    "nan_coordinate": ("v 0 0 0\nv 1 nan 1\n", "line 2"),
    "short_vertex": ("v 0 0\n", "line 1"),
    "mixed_colours": ("v 0 0 0 1 1 1\nv 1 1 1\n", "line 2"),
    "index_zero": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "line 4: bad face"),
    "index_text": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 a 2\n", "line 4: bad face"),
    "index_too_big": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "line 4: face refers to vertex 3"),
    "relative_too_far": ("v 0 0 0\nv 1 0 0\nf -1 -2 -3\nv 0 1 0\n", "line 3: face refers"),
    "two_vertex_face": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "line 4: face has 2 vertices"),
    "binary_garbage": ("\x00\x01\x02 junk\n", "line 1: unknown OBJ statement"),
}


@pytest.mark.parametrize("case", sorted(BAD_OBJ))
def test_bad_obj_raises_input_error_naming_file_and_line(tmp_path, case):
    text, fragment = BAD_OBJ[case]
    path = tmp_path / f"{case}.obj"
    path.write_text(text)
    assert_raises_naming(InputError, lambda: read_obj(path), path.name, fragment)


BAD_OFF = {
    "empty": ("", "is empty"),
    "not_off": ("ply\n3 1 0\n", "not a supported OFF file"),
    "bad_counts": ("OFF\n3 x 0\n", "OFF counts"),
    "truncated": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n", "3 vertices and 1 faces, but 3"),
    "extra_lines": ("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "but 4 data lines"),
    "short_vertex": ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "line 4"),
    "text_vertex": ("OFF\n3 1 0\n0 0 0\n1 0 zero\n0 1 0\n3 0 1 2\n", "line 4"),
    "inf_vertex": ("OFF\n3 1 0\n0 0 0\n1 0 inf\n0 1 0\n3 0 1 2\n", "line 4"),
    "short_face": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "line 6: bad OFF face"),
    "index_out_of_range": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", "line 6: face refers"),
    "missing_colour": ("COFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "line 3: COFF vertex"),
}


@pytest.mark.parametrize("case", sorted(BAD_OFF))
def test_bad_off_raises_input_error_naming_the_file(tmp_path, case):
    text, fragment = BAD_OFF[case]
    path = tmp_path / f"{case}.off"
    path.write_text(text)
    assert_raises_naming(InputError, lambda: read_off(path), path.name, fragment)


def test_missing_files(tmp_path):
    for reader, name in ((read_obj, "gone.obj"), (read_off, "gone.off"), (read_mesh, "gone.ply")):
        with pytest.raises(InputError, match=name):
            reader(tmp_path / name)


def test_writers_check_their_input(tmp_path):
    with pytest.raises(TypeError):
        write_obj(tmp_path / "a.obj", PointCloud(SQUARE))
    bad = TriMesh(SQUARE, [[0, 1, 5]])
    with pytest.raises(ValueError, match="faces"):
        write_off(tmp_path / "a.off", bad)
    assert not any(tmp_path.iterdir())
