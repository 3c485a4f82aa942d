"""PLY reading and writing, checked against trimesh and hand-built files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import trimesh

from geomkit.errors import InputError
from geomkit.io import fan_triangulate, read_ply, write_ply
from geomkit.structures import PointCloud, TriMesh
from tests.helpers import assert_close, assert_raises_naming

# A unit square (two triangles as one quad) and a triangle beside it.
SQUARE = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float64)
POLYGONS = [[0, 1, 2, 3], [1, 4, 2]]
TRIANGLES = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 2]])  # fan of the quad, then the triangle


def _header(fmt: str, *lines: str) -> bytes:
    return ("\n".join(["ply", f"format {fmt} 1.0", *lines, "end_header"]) + "\n").encode()


def _binary_polygons(polygons, count_type: str, index_type: str) -> bytes:
    return b"".join(
        np.array([len(p)], count_type).tobytes() + np.array(p, index_type).tobytes()
        for p in polygons
    )


def _random_mesh(rng, vertices=50, faces=80) -> TriMesh:
    return TriMesh(
        rng.normal(size=(vertices, 3)),
        rng.integers(0, vertices, size=(faces, 3)),
        vertex_normals=rng.normal(size=(vertices, 3)),
        vertex_colors=rng.random((vertices, 3)),
    )


@pytest.mark.parametrize("binary", [True, False])
def test_mesh_round_trip_matches_trimesh(tmp_path, binary):
    mesh = _random_mesh(np.random.default_rng(1))
    path = tmp_path / "mesh.ply"
    write_ply(path, mesh, binary=binary)
    read = read_ply(path)
    reference = trimesh.load(path, process=False)

    assert isinstance(read, TriMesh)
    assert read.vertices.dtype == np.float32
    assert_close(read.vertices, mesh.vertices.astype(np.float32), what="vertices vs written")
    assert_close(read.vertices, reference.vertices, what="vertices vs trimesh")
    np.testing.assert_array_equal(read.faces, mesh.faces)
    np.testing.assert_array_equal(read.faces, reference.faces)
    assert_close(read.vertex_normals, mesh.vertex_normals.astype(np.float32), what="normals")
    rgb_trimesh = reference.visual.vertex_colors[:, :3] / 255.0
    assert_close(read.vertex_colors, rgb_trimesh, atol=1e-7, what="colours vs trimesh")
    assert_close(read.vertex_colors, mesh.vertex_colors, atol=0.5 / 255 + 1e-7, what="colours")


@pytest.mark.parametrize("binary", [True, False])
def test_point_cloud_round_trip(tmp_path, binary):
    rng = np.random.default_rng(2)
    cloud = PointCloud(rng.normal(size=(30, 3)), colors=rng.random((30, 3)))
    path = tmp_path / "cloud.ply"
    write_ply(path, cloud, binary=binary)
    read = read_ply(path)
    reference = trimesh.load(path, process=False)

    assert isinstance(read, PointCloud) and read.normals is None
    assert_close(read.points, reference.vertices, what="points vs trimesh")
    assert_close(read.colors, reference.colors[:, :3] / 255.0, atol=1e-7, what="colours")


def test_write_plain_array_and_empty_cloud(tmp_path):
    points = np.arange(12, dtype=np.float64).reshape(4, 3)
    write_ply(tmp_path / "a.ply", points)
    assert_close(read_ply(tmp_path / "a.ply").points, points, what="points")
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3)))
    assert read_ply(tmp_path / "empty.ply").points.shape == (0, 3)


def test_writer_overwrites_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "a.ply"
    path.write_text("old content")
    write_ply(path, np.ones((2, 3)))
    assert_close(read_ply(path).points, np.ones((2, 3)), what="points")
    assert [p.name for p in tmp_path.iterdir()] == ["a.ply"]


def test_big_endian_doubles_extra_props_mixed_polygons(tmp_path):
    """Hand-built big-endian file: doubles, an ushort before the colours, ushort face counts
    with uint32 indices, a quad beside a triangle (row-by-row path), and an edge element."""
    vertex = np.zeros(5, dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("quality", ">u2")])
    vertex["x"], vertex["y"], vertex["z"] = SQUARE.T
    vertex["quality"] = 65535
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]])
    rows = [vertex[i].tobytes() + colors[i].astype("u1").tobytes() for i in range(5)]
    edges = np.array([(0, 1), (1, 2)], dtype=[("v1", ">i4"), ("v2", ">i4")])
    header = _header(
        "binary_big_endian",
        "comment hand made",
        "obj_info generated in a test",
        "element vertex 5",
        *(f"property double {n}" for n in "xyz"),
        "property ushort quality",
        *(f"property uchar {c}" for c in ("red", "green", "blue")),
        "element face 2",
        "property list ushort uint vertex_indices",
        "element edge 2",
        "property int v1",
        "property int v2",
    )
    path = tmp_path / "big.ply"
    faces = _binary_polygons(POLYGONS, ">u2", ">u4")
    path.write_bytes(header + b"".join(rows) + faces + edges.tobytes())

    mesh = read_ply(path)
    assert mesh.vertices.dtype == np.float64
    assert_close(mesh.vertices, SQUARE, what="vertices")
    np.testing.assert_array_equal(mesh.faces, TRIANGLES)
    assert_close(mesh.vertex_colors, colors / 255.0, atol=1e-7, what="colours")


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_hand_written_triangles_match_trimesh(tmp_path, fmt):
    rng = np.random.default_rng(3)
    vertices, faces = rng.normal(size=(6, 3)), rng.integers(0, 6, size=(4, 3))
    header = _header(
        fmt,
        "element vertex 6",
        *(f"property double {n}" for n in "xyz"),
        "element face 4",
        "property list uchar int vertex_indices",
    )
    if fmt == "ascii":
        rows = [" ".join(f"{x:.17g}" for x in v) for v in vertices]
        rows += [f"3 {a} {b} {c}" for a, b, c in faces]
        body = ("\n".join(rows) + "\n").encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        body = vertices.astype(order + "f8").tobytes()
        body += _binary_polygons(faces, "u1", order + "i4")
    path = tmp_path / "t.ply"
    path.write_bytes(header + body)
    mesh, reference = read_ply(path), trimesh.load(path, process=False)
    assert_close(mesh.vertices, reference.vertices, what="vertices vs trimesh")
    assert_close(mesh.vertices, vertices, what="vertices vs written")
    np.testing.assert_array_equal(mesh.faces, reference.faces)
    np.testing.assert_array_equal(mesh.faces, faces)


def test_ascii_equals_little_endian_with_list_props_on_vertices(tmp_path):
    """A vertex list property before z, of varying length, must be skipped correctly."""
    header_lines = [
        "element vertex 5",
        "property float x",
        "property float y",
        "property list uchar int tags",
        "property float z",
        "element face 2",
        "property list uchar int vertex_index",
        "property uchar flags",
    ]
    tags = [[7], [], [1, 2, 3], [4], [5, 6]]
    z = np.array([0.5, -1.0, 2.0, 0.25, 3.0])
    ascii_rows = [
        " ".join([f"{p[0]:g}", f"{p[1]:g}", str(len(t)), *map(str, t), f"{zi:g}"])
        for p, t, zi in zip(SQUARE, tags, z, strict=True)
    ]
    ascii_faces = [" ".join([str(len(f)), *map(str, f), "9"]) for f in POLYGONS]
    (tmp_path / "a.ply").write_bytes(
        _header("ascii", *header_lines) + "\n".join(ascii_rows + ascii_faces).encode() + b"\n"
    )
    binary_rows = b"".join(
        np.array(p[:2], "<f4").tobytes()
        + np.array([len(t)], "u1").tobytes()
        + np.array(t, "<i4").tobytes()
        + np.array([zi], "<f4").tobytes()
        for p, t, zi in zip(SQUARE, tags, z, strict=True)
    )
    binary_faces = b"".join(
        np.array([len(f)], "u1").tobytes() + np.array(f, "<i4").tobytes() + b"\x09"
        for f in POLYGONS
    )
    (tmp_path / "b.ply").write_bytes(
        _header("binary_little_endian", *header_lines) + binary_rows + binary_faces
    )

    expected = np.column_stack([SQUARE[:, :2], z])
    for name in ("a.ply", "b.ply"):
        mesh = read_ply(tmp_path / name)
        assert_close(mesh.vertices, expected, what=f"{name} vertices")
        np.testing.assert_array_equal(mesh.faces, TRIANGLES, err_msg=name)


def test_uniform_quads_float_colours_and_ushort_colours(tmp_path):
    quads = [[0, 1, 2, 3], [3, 2, 1, 0]]
    header = _header(
        "binary_little_endian",
        "element vertex 4",
        *(f"property float {n}" for n in "xyz"),
        "property float red",
        "property float green",
        "property float blue",
        "element face 2",
        "property list uchar int vertex_indices",
    )
    rgb = np.array([[0.1, 0.2, 0.3]] * 4, dtype=np.float32)
    vertices = np.concatenate([SQUARE[:4].astype(np.float32), rgb], axis=1)
    path = tmp_path / "quads.ply"
    path.write_bytes(header + vertices.tobytes() + _binary_polygons(quads, "u1", "<i4"))
    mesh = read_ply(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [3, 2, 1], [3, 1, 0]])
    assert_close(mesh.vertex_colors, rgb, what="float colours kept")

    header16 = _header(
        "ascii",
        "element vertex 1",
        *(f"property float {n}" for n in "xyz"),
        *(f"property ushort {c}" for c in ("red", "green", "blue")),
    )
    (tmp_path / "c16.ply").write_bytes(header16 + b"0 0 0 65535 0 32768\n")
    colors = read_ply(tmp_path / "c16.ply").colors
    assert_close(colors, [[1.0, 0.0, 32768 / 65535]], atol=1e-7, what="ushort colours")


def test_element_before_vertices_is_skipped(tmp_path):
    header = _header(
        "ascii",
        "element material 2",
        "property list uchar float params",
        "property uchar id",
        "element vertex 3",
        *(f"property int {n}" for n in "xyz"),
        "element face 1",
        "property list int short vertex_indices",
    )
    body = b"2 0.5 0.25 1\n0 2\n1 2 3\n4 5 6\n7 8 9\n3 2 1 0\n"
    (tmp_path / "m.ply").write_bytes(header + body)
    mesh = read_ply(tmp_path / "m.ply")
    assert mesh.vertices.dtype == np.float64  # int32 needs float64 to be exact
    assert_close(mesh.vertices, np.arange(1, 10).reshape(3, 3), what="vertices")
    np.testing.assert_array_equal(mesh.faces, [[2, 1, 0]])


def test_fan_triangulate_hand_derived():
    indices = np.array([5, 6, 7, 8, 9, 1, 2, 3])
    faces = fan_triangulate(indices, np.array([5, 3]))
    np.testing.assert_array_equal(faces, [[5, 6, 7], [5, 7, 8], [5, 8, 9], [1, 2, 3]])
    assert fan_triangulate(np.zeros(0), np.zeros(0)).shape == (0, 3)
    with pytest.raises(ValueError):
        fan_triangulate(np.array([0, 1]), np.array([2]))


def _vertices_header(fmt="ascii", count=2, face_count=None):
    lines = [f"element vertex {count}", *(f"property float {n}" for n in "xyz")]
    if face_count is not None:
        lines += [f"element face {face_count}", "property list uchar int vertex_indices"]
    return _header(fmt, *lines)


BAD_FILES = {
    "not_ply": (b"solid cube\nfacet normal 0 0 1\n", "does not start with 'ply'"),
    "no_end_header": (b"ply\nformat ascii 1.0\nelement vertex 1\n", "end_header"),
    "no_format": (b"ply\nelement vertex 0\nend_header\n", "no 'format' line"),
    "bad_format": (
        b"ply\nformat binary_middle_endian 1.0\nend_header\n",
        "line 2",
    ),
    "bad_type": (
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n0\n",
        "unsupported type 'float128'",
    ),
    "property_first": (
        b"ply\nformat ascii 1.0\nproperty float x\nend_header\n",
        "before any element",
    ),
    "ascii_short": (_vertices_header() + b"0 0 0\n1 1\n", "ends before the 2 'vertex' rows"),
    "ascii_extra": (_vertices_header() + b"0 0 0\n1 1 1\n2 2 2\n", "do not match"),
    "ascii_text": (_vertices_header() + b"0 0 0\n1 one 1\n", "not numeric"),
    "binary_truncated": (
        _vertices_header("binary_little_endian") + np.zeros(5, "<f4").tobytes(),
        "truncated",
    ),
    "binary_extra": (
        _vertices_header("binary_little_endian") + np.zeros(7, "<f4").tobytes(),
        "4 bytes after",
    ),
    "faces_truncated": (
        _vertices_header("binary_little_endian", 3, 2)
        + np.zeros(9, "<f4").tobytes()
        + _binary_polygons([[0, 1, 2]], "u1", "<i4")
        + b"\x04\x00",
        "'face' rows",
    ),
    "no_xyz": (
        _header("ascii", "element vertex 1", "property float x", "property float y") + b"0 0\n",
        "x, y, z",
    ),
    "nan": (_vertices_header() + b"0 0 0\n1 nan 1\n", "vertex 1 has a NaN"),
    "index_out_of_range": (
        _vertices_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n",
        "refers to vertex 3",
    ),
    "negative_index": (
        _vertices_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n",
        "refers to vertex -1",
    ),
    "two_vertex_face": (
        _vertices_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n2 0 1\n",
        "face 0 has 2 vertices",
    ),
    "index_not_integer": (
        _vertices_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 1.5\n",
        "holds 1.5",
    ),
    "no_vertex_element": (_header("ascii", "element point 0"), "no 'vertex' element"),
    "face_without_indices": (
        _header(
            "ascii",
            "element vertex 0",
            *(f"property float {n}" for n in "xyz"),
            "element face 0",
            "property int id",
        ),
        "no list property 'vertex_indices'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_input_error_naming_the_file(tmp_path, case):
    data, fragment = BAD_FILES[case]
    path = tmp_path / f"{case}.ply"
    path.write_bytes(data)
    assert_raises_naming(InputError, lambda: read_ply(path), path.name, fragment)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="missing.ply"):
        read_ply(tmp_path / "missing.ply")


def test_writer_rejects_values_it_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_ply(tmp_path / "a.ply", np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(TypeError):
        write_ply(tmp_path / "a.ply", [[0.0, 0.0, 0.0]])
    assert not (tmp_path / "a.ply").exists()


# PLY type name -> (struct code, smallest value, largest value) for the random layouts below.
_STRUCT = {
    "char": ("b", -100, 100),
    "uchar": ("B", 0, 200),
    "short": ("h", -1000, 1000),
    "ushort": ("H", 0, 60000),
    "int": ("i", -(10**6), 10**6),
    "uint": ("I", 0, 10**6),
    "float": ("f", -1000, 1000),
    "double": ("d", -1000, 1000),
}


def _random_property(rng, name: str, list_allowed: bool) -> tuple:
    """(name, item type, count type or None) with random types."""
    item = str(rng.choice(list(_STRUCT)))
    if list_allowed and rng.random() < 0.4:
        return name, item, str(rng.choice(["uchar", "ushort", "int", "uint"]))
    return name, item, None


def _random_value(rng, type_name: str):
    _, low, high = _STRUCT[type_name]
    value = int(rng.integers(low, high + 1))
    return value + 0.5 if type_name in ("float", "double") else value


def _encode(fmt: str, properties: list, rows: list) -> bytes:
    """Independent writer: Python's struct for binary, str() for ascii."""
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    out = []
    for row in rows:
        for (_, item, count), value in zip(properties, row, strict=True):
            values = list(value) if count else [value]
            codes = _STRUCT[item][0] * len(values)
            if order is None:
                out.append(" ".join(map(str, ([len(values)] if count else []) + values)))
            else:
                prefix = struct.pack(order + _STRUCT[count][0], len(values)) if count else b""
                out.append(prefix + struct.pack(order + codes, *values))
    return ("\n".join(out) + "\n").encode() if order is None else b"".join(out)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_random_layouts_decode_like_an_independent_writer(tmp_path, seed, fmt):
    rng = np.random.default_rng(seed)
    vertex_props = [_random_property(rng, n, False) for n in "xyz"]
    for extra in range(int(rng.integers(0, 4))):
        position = int(rng.integers(0, len(vertex_props) + 1))
        vertex_props.insert(position, _random_property(rng, f"extra{extra}", True))
    face_props = [("vertex_indices", "int", str(rng.choice(["uchar", "ushort", "uint"])))]
    if rng.random() < 0.5:
        face_props.insert(int(rng.integers(0, 2)), _random_property(rng, "tag", True))
    vertex_count, face_count = int(rng.integers(3, 12)), int(rng.integers(0, 8))
    mixed = rng.random() < 0.5

    def row(props, polygon=None):
        values = []
        for name, item, count in props:
            if name == "vertex_indices":
                values.append(polygon)
            elif count:
                length = int(rng.integers(0, 4)) if mixed else 2
                values.append([_random_value(rng, item) for _ in range(length)])
            else:
                values.append(_random_value(rng, item))
        return values

    polygons = [
        [int(i) for i in rng.integers(0, vertex_count, int(rng.integers(3, 6)) if mixed else 3)]
        for _ in range(face_count)
    ]
    vertex_rows = [row(vertex_props) for _ in range(vertex_count)]
    face_rows = [row(face_props, polygon) for polygon in polygons]
    edge_props = [("a", "int", None), ("b", "uchar", "uchar")]
    edge_rows = [row(edge_props) for _ in range(2)]

    def declare(name, props, count):
        lines = [f"element {name} {count}"]
        for prop, item, count_type in props:
            kind = f"list {count_type} {item}" if count_type else item
            lines.append(f"property {kind} {prop}")
        return lines

    blocks = [
        (declare("vertex", vertex_props, vertex_count), _encode(fmt, vertex_props, vertex_rows)),
        (declare("face", face_props, face_count), _encode(fmt, face_props, face_rows)),
    ]
    edges = (declare("edge", edge_props, 2), _encode(fmt, edge_props, edge_rows))
    blocks.insert(int(rng.integers(0, 3)), edges)
    path = tmp_path / "random.ply"
    path.write_bytes(
        _header(fmt, *(line for lines, _ in blocks for line in lines))
        + b"".join(data for _, data in blocks)
    )

    mesh = read_ply(path)
    names = [name for name, _, _ in vertex_props]
    xyz = [[r[names.index(axis)] for axis in "xyz"] for r in vertex_rows]
    assert_close(mesh.vertices, np.array(xyz, dtype=np.float64).reshape(-1, 3), what="xyz")
    triangles = [[p[0], p[k], p[k + 1]] for p in polygons for k in range(1, len(p) - 1)]
    np.testing.assert_array_equal(mesh.faces, np.array(triangles).reshape(-1, 3))
