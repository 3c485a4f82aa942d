"""OBJ and OFF meshes, and readers that pick the format from the file suffix.

Both formats are text with one record per line. Each reader first tries numpy's C parser on
the regular layout nearly all files have (3-7x faster); anything else goes to a line-by-line
reader that handles every case and raises the errors, naming the file and the line.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from geomkit.errors import InputError
from geomkit.io.files import atomic_write, require_file
from geomkit.io.ply import (
    check_polygons,
    check_writable,
    colors_to_uint8,
    fan_triangulate,
    read_ply,
)
from geomkit.structures import PointCloud, TriMesh

# Statements of the OBJ format that carry nothing a TriMesh holds (texture coordinates,
# face-indexed normals, groups, materials, lines, free-form geometry).
_OBJ_IGNORED = frozenset(
    "vt vn vp o g s usemtl mtllib l p cstype deg bmat step curv curv2 surf parm trim hole "
    "scrv sp end con mg bevel c_interp d_interp lod shadow_obj trace_obj ctech stech maplib "
    "usemap".split()
)
# Longest first, so that "COFF1658" is read as COFF followed by a count.
_OFF_KEYWORDS = ("CNOFF", "COFF", "NOFF", "OFF")


def read_obj(path: str | os.PathLike) -> TriMesh:
    """Read a Wavefront OBJ file as a triangle mesh.

    Reads ``v x y z [w]`` and ``v x y z r g b`` (colours above 1 are taken as 0-255 values),
    and ``f`` with ``a``, ``a/b``, ``a/b/c`` or ``a//c`` (1-based, or negative = relative to
    the vertices defined so far); polygons are fan-triangulated. ``vt``, ``vn``, groups,
    materials and other statements are ignored. A file of ``v`` lines alone gives zero faces.

    Args:
        path: the .obj file.

    Returns:
        TriMesh with vertices (V, 3) float64, faces (F, 3) int64 (0-based) and vertex_colors
        (V, 3) float64 in [0, 1] when every ``v`` line has colours.

    Raises:
        InputError: missing file, unknown statement, malformed or non-finite numbers, faces
            with fewer than 3 vertices or vertex indices out of range; names file and line.
    """
    path = require_file(path, "OBJ file")
    lines = path.read_bytes().splitlines()
    mesh = _read_obj_regular(lines)
    return mesh if mesh is not None else _read_obj_lines(lines, path)


def _read_obj_regular(lines: list[bytes]) -> TriMesh | None:
    """Vectorised reading of the common layout, or None when the file needs the line reader.

    The layout: ``v`` lines all with the same number of values, ``f`` lines all with the same
    number of positive indices in range, no comments after data, other lines ignorable.
    """
    groups, others = {b"v ": [], b"f ": []}, []
    for line in lines:
        groups.get(line[:2], others).append(line)
    for line in others:
        words = line.split(maxsplit=1)
        if (
            words
            and not words[0].startswith(b"#")
            and words[0].decode("latin-1") not in _OBJ_IGNORED
        ):
            return None
    face_rows = [line[2:] for line in groups[b"f "]]
    if any(b"/" in row for row in face_rows):
        # keep the vertex number of "a/b/c"; a malformed token stays and fails to parse
        face_rows = re.sub(rb"(?<=\d)/[-\d/]*", b"", b"\n".join(face_rows)).split(b"\n")
    table = _regular_rows([line[2:] for line in groups[b"v "]], np.float64)
    polygons = _regular_rows(face_rows, np.int64)
    if table is None or polygons is None or table.shape[1] not in (3, 4, 6):
        return None
    in_range = polygons.size == 0 or (polygons.min() >= 1 and polygons.max() <= len(table))
    if polygons.shape[1] < 3 or not in_range or not np.isfinite(table).all():
        return None
    vertices, colors = _obj_split_colors(table)
    counts = np.full(len(polygons), polygons.shape[1])
    faces = fan_triangulate((polygons - 1).reshape(-1), counts)
    return TriMesh(vertices, faces, vertex_colors=colors)


def _read_obj_lines(lines: list[bytes], path: Path) -> TriMesh:
    """Line-by-line reading of any OBJ file; raises InputError naming the bad line."""
    vertex_rows, vertex_lines, polygons, face_lines = [], [], [], []
    for number, words in _words(lines):
        if words[0] == "v":
            vertex_rows.append(words[1:])
            vertex_lines.append(number)
        elif words[0] == "f":
            polygons.append(_obj_face(words[1:], len(vertex_rows), path, number))
            face_lines.append(number)
        elif words[0] not in _OBJ_IGNORED:
            raise InputError(
                f"{path}, line {number}: unknown OBJ statement '{words[0]}' (is this an OBJ file?)"
            )
    vertices, colors = _obj_vertices(vertex_rows, vertex_lines, path)
    faces = _triangulate(polygons, np.array(face_lines, dtype=np.int64), len(vertices), path)
    return TriMesh(vertices, faces, vertex_colors=colors)


def write_obj(path: str | os.PathLike, mesh: TriMesh) -> None:
    """Write a mesh as OBJ (``v x y z [r g b]`` and 1-based ``f a b c``), atomically.

    Args:
        path: target file, replaced if it exists.
        mesh: TriMesh; vertex_colors (V, 3) in [0, 1] are written after the coordinates.
            Coordinates are written with enough digits to read back bit-identical in their
            own dtype (float32 or float64).
    """
    if not isinstance(mesh, TriMesh):
        raise TypeError(f"write_obj expects a TriMesh, got {type(mesh).__name__}")
    check_writable(mesh.vertices, colors=mesh.vertex_colors, faces=mesh.faces)
    table = mesh.vertices.astype(np.float64)
    if mesh.vertex_colors is not None:
        table = np.concatenate([table, np.clip(mesh.vertex_colors, 0.0, 1.0)], axis=1)
    row_format = "v " + " ".join([_float_format(mesh.vertices)] * table.shape[1])
    with atomic_write(path, "w") as handle:
        np.savetxt(handle, table, fmt=row_format)
        np.savetxt(handle, mesh.faces + 1, fmt="f %d %d %d")


def read_off(path: str | os.PathLike) -> TriMesh:
    """Read an OFF mesh: OFF, COFF, NOFF or CNOFF, including ModelNet's "OFF1658 2996 0".

    Vertex lines are ``x y z [nx ny nz] [r g b [a]]`` (normals for N, colours for C, taken
    as 0-255 values when any exceeds 1; alpha ignored). Face lines are ``n i1 ... in``
    (0-based) followed by optional colour values, which are ignored; polygons are
    fan-triangulated. ``#`` starts a comment.

    Args:
        path: the .off file.

    Returns:
        TriMesh with vertices (V, 3) float64, faces (F, 3) int64, and vertex_normals (V, 3)
        float64 / vertex_colors (V, 3) float64 in [0, 1] for NOFF / COFF.

    Raises:
        InputError: missing file, unknown header, bad counts, fewer or more lines than the
            counts declare, malformed numbers, NaN/inf coordinates, indices out of range.
    """
    path = require_file(path, "OFF file")
    lines = path.read_bytes().splitlines()
    mesh = _read_off_regular(lines, path)
    return mesh if mesh is not None else _read_off_lines(lines, path)


def _read_off_regular(lines: list[bytes], path: Path) -> TriMesh | None:
    """Vectorised reading of the common layout, or None when the file needs the line reader.

    The layout: no blank or comment lines after the header, vertex lines all with the same
    number of values, face lines all ``n i1 .. in [ints]`` with the same n, indices in range.
    """
    head = list(itertools.islice(_words(lines), 2))
    keyword, vertex_count, face_count, used = _off_header(head, path)
    body = lines[head[used - 1][0] :]
    vertex_rows = body[:vertex_count]
    face_rows = body[vertex_count : vertex_count + face_count]
    trailing = body[vertex_count + face_count :]
    if len(face_rows) != face_count or any(line.strip() for line in trailing):
        return None
    width = _off_vertex_width(keyword)
    table = _regular_rows(vertex_rows, np.float64)
    polygons = _regular_rows(face_rows, np.int64)
    if table is None or polygons is None or table.shape[1] < width:
        return None
    size = polygons[0, 0] if len(polygons) else 3
    indices = polygons[:, 1 : size + 1]
    regular = size >= 3 and polygons.shape[1] > size and np.all(polygons[:, 0] == size)
    in_range = indices.size == 0 or (indices.min() >= 0 and indices.max() < vertex_count)
    if not regular or not in_range or not np.isfinite(table[:, :width]).all():
        return None
    faces = fan_triangulate(indices.reshape(-1), np.full(len(indices), size))
    return _off_mesh(table[:, :width], keyword, faces)


def _read_off_lines(lines: list[bytes], path: Path) -> TriMesh:
    """Line-by-line reading of any OFF file; raises InputError naming the bad line."""
    records = list(_words(lines))
    keyword, vertex_count, face_count, used = _off_header(records[:2], path)
    records = records[used:]
    if len(records) != vertex_count + face_count:
        raise InputError(
            f"{path}: the OFF header declares {vertex_count} vertices and {face_count} faces, "
            f"but {len(records)} data lines follow (file truncated or counts wrong)"
        )
    table = _off_vertex_table(records[:vertex_count], keyword, path)
    polygons = [_off_face(words, path, number) for number, words in records[vertex_count:]]
    numbers = np.array([number for number, _ in records[vertex_count:]], dtype=np.int64)
    faces = _triangulate(polygons, numbers, vertex_count, path)
    return _off_mesh(table, keyword, faces)


def write_off(path: str | os.PathLike, mesh: TriMesh) -> None:
    """Write a mesh as OFF (COFF with 0-255 colours and alpha 255 when it has colours).

    Args:
        path: target file, replaced if it exists.
        mesh: TriMesh; faces written 0-based as ``3 a b c``.
    """
    if not isinstance(mesh, TriMesh):
        raise TypeError(f"write_off expects a TriMesh, got {type(mesh).__name__}")
    check_writable(mesh.vertices, colors=mesh.vertex_colors, faces=mesh.faces)
    keyword = "OFF" if mesh.vertex_colors is None else "COFF"
    header = f"{keyword}\n{len(mesh.vertices)} {len(mesh.faces)} 0"
    fmt = _float_format(mesh.vertices)
    table = mesh.vertices.astype(np.float64)
    if mesh.vertex_colors is not None:
        alpha = np.full((len(table), 1), 255)
        table = np.concatenate([table, colors_to_uint8(mesh.vertex_colors), alpha], axis=1)
        fmt = [fmt] * 3 + ["%d"] * 4
    with atomic_write(path, "w") as handle:
        np.savetxt(handle, table, fmt=fmt, header=header, comments="")
        np.savetxt(handle, mesh.faces, fmt="3 %d %d %d")


def read_mesh(path: str | os.PathLike) -> TriMesh:
    """Read a .ply, .obj or .off file as a TriMesh (a PLY point cloud gives zero faces).

    Args:
        path: the file; its suffix (any case) picks the format.

    Returns:
        TriMesh as the format's reader returns it.

    Raises:
        InputError: unsupported suffix (the message lists the supported ones), or whatever
            the format's reader raises.
    """
    geometry = _reader_for(path)(path)
    if isinstance(geometry, PointCloud):
        empty = np.zeros((0, 3), dtype=np.int64)
        return TriMesh(geometry.points, empty, geometry.normals, geometry.colors)
    return geometry


def read_point_cloud(path: str | os.PathLike) -> PointCloud:
    """Read a .ply, .obj or .off file as points; a mesh gives its vertices.

    Args:
        path: the file; its suffix (any case) picks the format.

    Returns:
        PointCloud with the vertices, and normals / colours when the file has them.

    Raises:
        InputError: unsupported suffix (the message lists the supported ones), or whatever
            the format's reader raises.
    """
    geometry = _reader_for(path)(path)
    if isinstance(geometry, TriMesh):
        return PointCloud(geometry.vertices, geometry.vertex_normals, geometry.vertex_colors)
    return geometry


def read_geometry(path: str | os.PathLike) -> PointCloud | TriMesh:
    """Read a .ply, .obj or .off file as what it holds: a mesh, or else points.

    Args:
        path: the file; its suffix (any case) picks the format.

    Returns:
        TriMesh when the file has at least one face, else PointCloud (with normals and
        colours when the file has them).

    Raises:
        InputError: unsupported suffix (the message lists the supported ones), or whatever
            the format's reader raises.
    """
    geometry = _reader_for(path)(path)
    if isinstance(geometry, TriMesh) and len(geometry.faces) == 0:
        return PointCloud(geometry.vertices, geometry.vertex_normals, geometry.vertex_colors)
    return geometry


def _reader_for(path: str | os.PathLike) -> Callable:
    readers = {".ply": read_ply, ".obj": read_obj, ".off": read_off}
    suffix = Path(path).suffix.lower()
    if suffix not in readers:
        raise InputError(
            f"{path}: unsupported geometry file type '{suffix}'; supported: {', '.join(readers)}"
        )
    return readers[suffix]


def _obj_face(words: list[str], defined: int, path: Path, number: int) -> list[int]:
    """0-based vertex indices of one ``f`` line; ``defined`` = vertices read so far."""
    try:
        indices = [int(word.split("/", 1)[0]) for word in words]
    except ValueError:
        indices = None
    if indices is None or 0 in indices:
        raise InputError(
            f"{path}, line {number}: bad face 'f {' '.join(words)}'; expected vertex numbers "
            "like 3, 3/1, 3/1/2 or 3//2 (from 1, or negative to count back from the last v)"
        )
    return [i - 1 if i > 0 else defined + i for i in indices]


def _obj_vertices(rows: list[list[str]], lines: list[int], path: Path) -> tuple:
    """Returns vertices (V, 3) float64 and colours (V, 3) float64 in [0, 1] or None."""
    has_colors = bool(rows) and len(rows[0]) == 6
    for row, number in zip(rows, lines, strict=True):
        if len(row) not in ((6,) if has_colors else (3, 4)):
            raise InputError(
                f"{path}, line {number}: vertex 'v {' '.join(row)}' has {len(row)} values; "
                "expected x y z [w] or x y z r g b, the same on every v line"
            )
    width = 6 if has_colors else 3
    return _obj_split_colors(_numbers([row[:width] for row in rows], lines, path, width))


def _obj_split_colors(table: np.ndarray) -> tuple:
    """(V, 3|4|6) values of ``v`` lines -> vertices (V, 3), colours (V, 3) in [0, 1] or None."""
    if table.shape[1] != 6:
        return table[:, :3], None
    return table[:, :3], _unit_colors(table[:, 3:])


def _unit_colors(colors: np.ndarray) -> np.ndarray:
    """Colours in [0, 1], or in [0, 255] when any exceeds 1 -> [0, 1]."""
    return colors / 255.0 if colors.max(initial=0.0) > 1.0 else colors


def _off_header(records: list, path: Path) -> tuple[str, int, int, int]:
    """Parse the keyword and counts from the first (at most 2) records (line number, words).

    Returns:
        (keyword, vertex count, face count, number of records the header used: 1 or 2).
    """
    if not records:
        raise InputError(f"{path} is empty; an OFF file starts with an 'OFF' line")
    first = records[0][1][0]
    keyword = next((k for k in _OFF_KEYWORDS if first.startswith(k)), None)
    if keyword is None:
        raise InputError(
            f"{path} is not a supported OFF file: it starts with '{first[:20]}', "
            f"expected one of {', '.join(_OFF_KEYWORDS)}"
        )
    counts, used = records[0][1][1:], 1
    if first != keyword:
        counts = [first[len(keyword) :], *counts]
    if not counts and len(records) > 1:
        counts, used = records[1][1], 2
    if len(counts) not in (2, 3) or not all(c.isdigit() for c in counts):
        raise InputError(
            f"{path}: OFF counts must be 'vertices faces [edges]' (integers >= 0), "
            f"got '{' '.join(counts)}'"
        )
    return keyword, int(counts[0]), int(counts[1]), used


def _off_vertex_width(keyword: str) -> int:
    """Values used per vertex line: x y z, then nx ny nz for N, then r g b for C."""
    return 3 + 3 * ("N" in keyword) + 3 * ("C" in keyword)


def _off_vertex_table(records: list, keyword: str, path: Path) -> np.ndarray:
    """Vertex records -> (V, width) float64, finite."""
    width = _off_vertex_width(keyword)
    for number, words in records:
        if len(words) < width:
            raise InputError(
                f"{path}, line {number}: {keyword} vertex has {len(words)} values, "
                f"expected at least {width}"
            )
    numbers = [number for number, _ in records]
    return _numbers([words[:width] for _, words in records], numbers, path, width)


def _off_mesh(table: np.ndarray, keyword: str, faces: np.ndarray) -> TriMesh:
    normals = table[:, 3:6] if "N" in keyword else None
    colors = _unit_colors(table[:, -3:]) if "C" in keyword else None
    return TriMesh(table[:, :3], faces, vertex_normals=normals, vertex_colors=colors)


def _off_face(words: list[str], path: Path, number: int) -> list[int]:
    if words[0].isdigit() and len(words) > int(words[0]):
        try:
            return [int(word) for word in words[1 : int(words[0]) + 1]]
        except ValueError:
            pass
    raise InputError(
        f"{path}, line {number}: bad OFF face '{' '.join(words)}'; expected 'n i1 ... in' "
        "with n integer vertex indices"
    )


def _numbers(rows: list[list[str]], lines: list[int], path: Path, width: int) -> np.ndarray:
    """Rows of ``width`` words -> (N, width) float64, all finite; errors name the line."""
    try:
        table = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        bad = ~np.isfinite(table).all(axis=1)
    except ValueError:
        table, bad = None, np.array([not _is_numeric(row) for row in rows])
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            f"{path}, line {lines[row]}: '{' '.join(rows[row])}' is not a row of finite numbers"
        )
    return table


def _is_numeric(words: list[str]) -> bool:
    try:
        return bool(np.isfinite(np.array(words, dtype=np.float64)).all())
    except ValueError:
        return False


def _words(lines: list[bytes]) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, words before any '#') of each line that has words."""
    for number, line in enumerate(lines, start=1):
        words = line.decode("utf-8", errors="replace").split("#", 1)[0].split()
        if words:
            yield number, words


def _regular_rows(rows: list[bytes], dtype) -> np.ndarray | None:
    """(N, K) numbers of N text rows through numpy's C parser, or None unless every row holds
    the same number K of numbers (None also for blank rows, comments or other text)."""
    if not rows:
        return np.zeros((0, 3), dtype=dtype)
    try:
        table = np.loadtxt(rows, dtype=dtype, comments=None, ndmin=2)
    except (ValueError, OverflowError):
        return None
    return table if len(table) == len(rows) else None


def _triangulate(polygons: list, lines: np.ndarray, vertex_count: int, path: Path) -> np.ndarray:
    """Polygons (lists of 0-based indices, one per file line in ``lines``) -> (F, 3) int64."""
    counts = np.array([len(p) for p in polygons], dtype=np.int64)
    indices = np.fromiter((i for p in polygons for i in p), dtype=np.int64, count=counts.sum())
    check_polygons(indices, counts, vertex_count, path, lines)
    return fan_triangulate(indices, counts)


def _float_format(values: np.ndarray) -> str:
    """Enough significant digits for the values to read back bit-identical."""
    return "%.9g" if values.dtype.itemsize <= 4 else "%.17g"
