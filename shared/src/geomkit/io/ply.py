"""PLY point clouds and meshes: ascii, binary_little_endian and binary_big_endian.

The body is decoded with numpy structured dtypes. An element with list properties is first
read as if every row had the list lengths of its first row (true for all-triangle faces) and
checked; only when the lengths vary is it walked row by row in Python to find where each row
starts, and the values are then gathered with numpy.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geomkit.errors import InputError
from geomkit.io.files import atomic_write, require_file
from geomkit.structures import PointCloud, TriMesh

_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_BYTE_ORDERS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass(frozen=True)
class _Property:
    name: str
    dtype: str  # numpy type code without byte order, e.g. "f4"; of the items for a list
    count_dtype: str | None = None  # type of the length prefix; None for a scalar property


@dataclass
class _Element:
    name: str
    count: int
    properties: list[_Property] = field(default_factory=list)


@dataclass(frozen=True)
class _Lists:
    """One list property of an element: ``counts`` (N,) int64, ``values`` all rows' items."""

    counts: np.ndarray
    values: np.ndarray


def fan_triangulate(indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Split polygons into triangle fans around their first vertex, keeping the winding.

    Args:
        indices: (sum(counts),) int, the polygons' vertex indices one after the other.
        counts: (N,) int >= 3, the number of vertices of each polygon.

    Returns:
        (sum(counts - 2), 3) int64 triangles; polygon ``[a, b, c, d]`` gives ``[a, b, c]``,
        ``[a, c, d]``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != len(indices):
        raise ValueError(f"counts sum to {counts.sum()} but there are {len(indices)} indices")
    if np.any(counts < 3):
        raise ValueError("every polygon needs at least 3 vertices")
    if np.all(counts == 3):
        return indices.reshape(-1, 3)
    triangles = counts - 2
    first = np.repeat(np.cumsum(counts) - counts, triangles)
    step = np.arange(triangles.sum()) - np.repeat(np.cumsum(triangles) - triangles, triangles)
    return np.stack([indices[first], indices[first + step + 1], indices[first + step + 2]], 1)


def read_ply(path: str | os.PathLike) -> PointCloud | TriMesh:
    """Read a PLY file: a TriMesh when it has a ``face`` element, else a PointCloud.

    Reads vertex ``x, y, z`` (any numeric type), ``nx, ny, nz`` and ``red, green, blue``
    (integer types scaled to [0, 1] by their maximum, e.g. uchar / 255; floats kept), and the
    face list ``vertex_indices`` (or ``vertex_index``) with any count and index types; polygons
    are fan-triangulated. Other properties and elements are skipped.

    Args:
        path: the .ply file.

    Returns:
        PointCloud, or TriMesh with faces (F, 3) int64. Coordinates and normals are float32,
        or float64 when the file stores doubles or 32-bit integers; colours float32.

    Raises:
        InputError: missing file, bad header, truncated or surplus data, unsupported type,
            missing x/y/z, NaN/inf coordinates, faces with fewer than 3 vertices or indices
            out of range. The message names the file.
    """
    path = require_file(path, "PLY file")
    data = path.read_bytes()
    byte_order, elements, start = _parse_header(data, path)
    if byte_order is None:
        body = _AsciiBody(data, start, path)
    else:
        body = _BinaryBody(data, start, byte_order)
    columns, position = {}, 0
    for element in elements:
        columns[element.name], position = _read_element(body, element, position, path)
    if position != body.length:
        unit = "values" if byte_order is None else "bytes"
        raise InputError(
            f"{path}: {body.length - position} {unit} after the last element declared in the "
            "PLY header; the element counts in the header do not match the data"
        )
    return _to_geometry(columns, path)


def write_ply(
    path: str | os.PathLike, geometry: PointCloud | TriMesh | np.ndarray, binary: bool = True
) -> None:
    """Write points or a mesh as PLY, atomically, replacing ``path``.

    Writes x, y, z as float32, normals (nx, ny, nz) float32 and colours (red, green, blue)
    uchar when present, and faces as a uchar count with int32 indices.

    Args:
        path: target file.
        geometry: PointCloud, TriMesh, or points (P, 3) float.
        binary: binary_little_endian when True, else ascii.
    """
    points, normals, colors, faces = _unpack_geometry(geometry)
    header, vertex = _vertex_table(points, normals, colors)
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", *header]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    if binary:
        with atomic_write(path, "wb") as handle:
            handle.write(("\n".join(header) + "\n").encode("ascii"))
            handle.write(vertex.tobytes())
            if faces is not None:
                handle.write(_binary_faces(faces).tobytes())
        return
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(header) + "\n")
        names = vertex.dtype.names
        formats = ["%d" if vertex.dtype[name].kind == "u" else "%.9g" for name in names]
        table = np.stack([vertex[name].astype(np.float64) for name in names], 1)
        np.savetxt(handle, table, fmt=formats)
        if faces is not None:
            np.savetxt(handle, faces, fmt="3 %d %d %d")


def _parse_header(data: bytes, path: Path) -> tuple[str | None, list[_Element], int]:
    """Returns (byte order: None for ascii, '<' or '>'; elements; offset of the body)."""
    if not data.startswith(b"ply"):
        raise InputError(f"{path} is not a PLY file: it does not start with 'ply'")
    lines, position = [], 0
    while True:
        newline = data.find(b"\n", position)
        if newline < 0:
            raise InputError(f"{path}: PLY header has no 'end_header' line (file truncated?)")
        line = data[position:newline]
        position = newline + 1
        if line.strip() == b"end_header":
            break
        lines.append(line)
    if lines[0].strip() != b"ply":
        raise InputError(f"{path} is not a PLY file: its first line is not 'ply'")
    byte_order, elements = "", []  # "" until the format line is seen
    for number, line in enumerate(lines[1:], start=2):
        try:
            words = line.decode("ascii").split()
            if words and words[0] == "format":
                byte_order = _parse_format(words)
            elif words and words[0] not in ("comment", "obj_info"):
                _parse_declaration(words, elements)
        except (UnicodeDecodeError, ValueError) as err:
            text = line.decode("ascii", "replace").strip()
            raise InputError(f"{path}: bad PLY header line {number} '{text}': {err}") from None
    if byte_order == "":
        raise InputError(f"{path}: PLY header has no 'format' line")
    return byte_order, elements, position


def _parse_format(words: list[str]) -> str | None:
    if len(words) != 3 or words[1] not in _BYTE_ORDERS:
        raise ValueError(f"expected 'format <{'|'.join(_BYTE_ORDERS)}> 1.0'")
    return _BYTE_ORDERS[words[1]]


def _parse_declaration(words: list[str], elements: list[_Element]) -> None:
    if words[0] == "element":
        if len(words) != 3 or not words[2].isdigit():
            raise ValueError("expected 'element <name> <count>' with a count >= 0")
        if any(e.name == words[1] for e in elements):
            raise ValueError(f"element '{words[1]}' declared twice")
        elements.append(_Element(words[1], int(words[2])))
    elif words[0] == "property":
        if not elements:
            raise ValueError("property declared before any element")
        properties = elements[-1].properties
        prop = _parse_property(words)
        if any(p.name == prop.name for p in properties):
            raise ValueError(f"property '{prop.name}' declared twice")
        properties.append(prop)
    else:
        raise ValueError(f"unknown keyword '{words[0]}'")


def _parse_property(words: list[str]) -> _Property:
    if len(words) == 5 and words[1] == "list":
        return _Property(words[4], _type_code(words[3]), _type_code(words[2]))
    if len(words) == 3:
        return _Property(words[2], _type_code(words[1]))
    raise ValueError("expected 'property <type> <name>' or 'property list <type> <type> <name>'")


def _type_code(name: str) -> str:
    if name not in _TYPES:
        raise ValueError(f"unsupported type '{name}' (supported: {', '.join(_TYPES)})")
    return _TYPES[name]


class _BinaryBody:
    """The body of a binary PLY; positions are byte offsets from its start."""

    def __init__(self, data: bytes, start: int, byte_order: str):
        self.bytes = np.frombuffer(data, dtype=np.uint8, offset=start)
        self.length = len(self.bytes)
        self.byte_order = byte_order

    def item(self, code: str) -> np.dtype:
        return np.dtype(self.byte_order + code)

    def size(self, code: str) -> int:
        return np.dtype(code).itemsize

    def units(self, dtype: np.dtype) -> int:
        return dtype.itemsize

    def rows(self, dtype: np.dtype, count: int, position: int) -> np.ndarray:
        return np.frombuffer(self.bytes, dtype, count, offset=position)

    def count_at(self, position: int, code: str) -> float:
        fmt = self.byte_order + np.dtype(code).char  # struct and numpy share these codes
        return struct.unpack_from(fmt, self.bytes, position)[0]

    def gather(self, positions: np.ndarray, code: str) -> np.ndarray:
        offsets = positions[:, None] + np.arange(self.size(code))
        return self.bytes[offsets].view(self.item(code)).reshape(-1)

    def finish(self, values: np.ndarray, code: str, what: str) -> np.ndarray:
        return values.astype(np.dtype(code))


class _AsciiBody:
    """The body of an ascii PLY as one float64 value per token; positions count tokens."""

    def __init__(self, data: bytes, start: int, path: Path):
        self.path = path
        try:
            self.tokens = np.array(data[start:].split(), dtype=np.float64)
        except ValueError as err:
            raise InputError(f"{path}: ascii PLY data is not numeric ({err})") from None
        self.length = len(self.tokens)

    def item(self, code: str) -> np.dtype:
        return np.dtype(np.float64)

    def size(self, code: str) -> int:
        return 1

    def units(self, dtype: np.dtype) -> int:
        return dtype.itemsize // 8

    def rows(self, dtype: np.dtype, count: int, position: int) -> np.ndarray:
        return self.tokens[position : position + count * self.units(dtype)].view(dtype)

    def count_at(self, position: int, code: str) -> float:
        return self.tokens[position]

    def gather(self, positions: np.ndarray, code: str) -> np.ndarray:
        return self.tokens[positions]

    def finish(self, values: np.ndarray, code: str, what: str) -> np.ndarray:
        dtype = np.dtype(code)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            bad = (values != np.round(values)) | (values < info.min) | (values > info.max)
            if np.any(bad):
                raise InputError(
                    f"{self.path}: {what} is declared {dtype} but holds {values[bad][0]:g}"
                )
        return values.astype(dtype)


def _read_element(body, element: _Element, position: int, path: Path) -> tuple[dict, int]:
    """Decode one element starting at ``position``; returns its columns and the next position.

    Columns map each property name to an (N,) array, or to _Lists for a list property.
    """
    if not element.properties:
        return {}, position
    lists = [p for p in element.properties if p.count_dtype is not None]
    lengths = _first_row_lengths(body, element, position, path) if lists else []
    dtype = _row_dtype(body, element, lengths)
    end = position + element.count * body.units(dtype)
    if end <= body.length:
        rows = body.rows(dtype, element.count, position)
        guessed = zip(_list_fields(element), lengths, strict=True)
        if all(np.all(rows[f"c{i}"] == n) for i, n in guessed):
            return _fixed_columns(body, element, rows), end
    if not lists:
        raise _truncated(path, element)
    return _walk_element(body, element, position, path)


def _list_fields(element: _Element) -> list[int]:
    return [i for i, p in enumerate(element.properties) if p.count_dtype is not None]


def _first_row_lengths(body, element: _Element, position: int, path: Path) -> list[int]:
    lengths = []
    for prop in element.properties:
        if prop.count_dtype is not None and element.count > 0:
            lengths.append(_list_length(body, prop, position, path, element))
            position += body.size(prop.count_dtype) + lengths[-1] * body.size(prop.dtype)
        elif prop.count_dtype is not None:
            lengths.append(0)
        else:
            position += body.size(prop.dtype)
    return lengths


def _list_length(body, prop: _Property, position: int, path: Path, element: _Element) -> int:
    if position + body.size(prop.count_dtype) > body.length:
        raise _truncated(path, element)
    length = body.count_at(position, prop.count_dtype)
    if not (np.isfinite(length) and length >= 0 and length == int(length)):
        what = f"list '{prop.name}' of element '{element.name}'"
        raise InputError(f"{path}: {what} has length {length}, not a count >= 0")
    return int(length)


def _row_dtype(body, element: _Element, lengths: list[int]) -> np.dtype:
    fields, lengths = [], iter(lengths)
    for index, prop in enumerate(element.properties):
        if prop.count_dtype is not None:
            fields.append((f"c{index}", body.item(prop.count_dtype)))
            fields.append((f"p{index}", body.item(prop.dtype), (next(lengths),)))
        else:
            fields.append((f"p{index}", body.item(prop.dtype)))
    return np.dtype(fields)


def _fixed_columns(body, element: _Element, rows: np.ndarray) -> dict:
    columns = {}
    for index, prop in enumerate(element.properties):
        what = f"property '{prop.name}' of element '{element.name}'"
        values = body.finish(rows[f"p{index}"].reshape(-1), prop.dtype, what)
        if prop.count_dtype is None:
            columns[prop.name] = values
        else:
            counts = np.full(len(rows), rows.dtype[f"p{index}"].shape[0], dtype=np.int64)
            columns[prop.name] = _Lists(counts, values)
    return columns


def _walk_element(body, element: _Element, position: int, path: Path) -> tuple[dict, int]:
    """Row-by-row fallback for lists whose lengths vary from row to row."""
    starts = {prop.name: [] for prop in element.properties}
    lengths = {prop.name: [] for prop in element.properties if prop.count_dtype is not None}
    for _ in range(element.count):
        for prop in element.properties:
            if prop.count_dtype is not None:
                length = _list_length(body, prop, position, path, element)
                position += body.size(prop.count_dtype)
                lengths[prop.name].append(length)
            starts[prop.name].append(position)
            items = lengths[prop.name][-1] if prop.count_dtype is not None else 1
            position += body.size(prop.dtype) * items
    if position > body.length:
        raise _truncated(path, element)
    columns = {}
    for prop in element.properties:
        what = f"property '{prop.name}' of element '{element.name}'"
        first = np.asarray(starts[prop.name], dtype=np.int64)
        if prop.count_dtype is None:
            columns[prop.name] = body.finish(body.gather(first, prop.dtype), prop.dtype, what)
            continue
        counts = np.asarray(lengths[prop.name], dtype=np.int64)
        item = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        positions = np.repeat(first, counts) + item * body.size(prop.dtype)
        values = body.finish(body.gather(positions, prop.dtype), prop.dtype, what)
        columns[prop.name] = _Lists(counts, values)
    return columns, position


def _truncated(path: Path, element: _Element) -> InputError:
    return InputError(
        f"{path}: PLY data ends before the {element.count} '{element.name}' rows the header "
        "declares (file truncated, or counts in the header wrong)"
    )


def _to_geometry(columns: dict, path: Path) -> PointCloud | TriMesh:
    if "vertex" not in columns:
        raise InputError(f"{path}: PLY file has no 'vertex' element")
    vertex = columns["vertex"]
    points = _vector(vertex, ("x", "y", "z"), path)
    if points is None:
        raise InputError(f"{path}: PLY 'vertex' element lacks one of the properties x, y, z")
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise InputError(f"{path}: vertex {int(np.argmax(bad))} has a NaN or infinite coordinate")
    normals = _vector(vertex, ("nx", "ny", "nz"), path)
    colors = _vector(vertex, ("red", "green", "blue"), path)
    if colors is not None:
        dtype = vertex["red"].dtype
        scale = np.iinfo(dtype).max if dtype.kind in "iu" else 1
        colors = (colors / scale).astype(np.float32)
    if "face" not in columns:
        return PointCloud(points, normals, colors)
    faces = _faces(columns["face"], len(points), path)
    return TriMesh(points, faces, vertex_normals=normals, vertex_colors=colors)


def _vector(columns: dict, names: tuple[str, str, str], path: Path) -> np.ndarray | None:
    """Stack three scalar columns into (N, 3), or None when one is absent."""
    if not all(name in columns for name in names):
        return None
    if any(isinstance(columns[name], _Lists) for name in names):
        raise InputError(f"{path}: vertex properties {', '.join(names)} must not be lists")
    dtype = np.result_type(*(columns[name].dtype for name in names), np.float32)
    return np.stack([columns[name] for name in names], axis=1).astype(dtype, copy=False)


def _faces(columns: dict, vertex_count: int, path: Path) -> np.ndarray:
    name = next((n for n in _FACE_LISTS if isinstance(columns.get(n), _Lists)), None)
    if name is None:
        raise InputError(f"{path}: PLY 'face' element has no list property 'vertex_indices'")
    lists = columns[name]
    if lists.values.dtype.kind == "f" and np.any(lists.values != np.round(lists.values)):
        raise InputError(f"{path}: PLY face vertex indices are not integers")
    indices = lists.values.astype(np.int64)
    check_polygons(indices, lists.counts, vertex_count, path)
    return fan_triangulate(indices, lists.counts)


def check_polygons(
    indices: np.ndarray,
    counts: np.ndarray,
    vertex_count: int,
    path: Path,
    lines: np.ndarray | None = None,
) -> None:
    """Raise InputError naming ``path`` and the face for a polygon the mesh cannot hold.

    Args:
        indices: (sum(counts),) int64, 0-based vertex indices of all polygons.
        counts: (N,) int, vertices per polygon; each must be >= 3.
        vertex_count: number of vertices; indices must lie in [0, vertex_count).
        path: the file, for the message.
        lines: (N,) int or None, the file line of each polygon, to name a bad face by its
            line rather than by its 0-based number.
    """
    short = counts < 3
    bad = (indices < 0) | (indices >= vertex_count)
    if short.any():
        face = int(np.argmax(short))
        problem = f"has {counts[face]} vertices; a face needs 3 or more"
    elif bad.any():
        where = int(np.argmax(bad))
        face = int(np.searchsorted(np.cumsum(counts), where, side="right"))
        problem = (
            f"refers to vertex {indices[where]} (0-based) but there are {vertex_count} "
            "vertices: index out of range"
        )
    else:
        return
    label = f"line {lines[face]}: face" if lines is not None else f"face {face}"
    raise InputError(f"{path}, {label} {problem}")


def _unpack_geometry(geometry) -> tuple:
    """Returns (points, normals or None, colors or None, faces or None) checked for writing."""
    if isinstance(geometry, PointCloud):
        parts = (geometry.points, geometry.normals, geometry.colors, None)
    elif isinstance(geometry, TriMesh):
        parts = (geometry.vertices, geometry.vertex_normals, geometry.vertex_colors, geometry.faces)
    elif isinstance(geometry, np.ndarray):
        parts = (PointCloud(geometry).points, None, None, None)
    else:
        raise TypeError(f"expected PointCloud, TriMesh or ndarray, got {type(geometry).__name__}")
    check_writable(*parts)
    return parts


def check_writable(points, normals=None, colors=None, faces=None) -> None:
    """Raise ValueError for values a geometry file cannot hold faithfully.

    Args:
        points: (P, 3) float, finite.
        normals: (P, 3) float or None, finite.
        colors: (P, 3) float in [0, 1] (values outside are clipped on writing) or None, finite.
        faces: (F, 3) int or None, indices in [0, P) and below 2**31.
    """
    for name, values in (("points", points), ("normals", normals), ("colors", colors)):
        if values is not None and not np.isfinite(values).all():
            raise ValueError(f"{name} contain NaN or infinite values")
    if faces is not None and len(faces) and (faces.min() < 0 or faces.max() >= len(points)):
        raise ValueError(f"faces index outside [0, {len(points)})")
    if len(points) >= 2**31:
        raise ValueError("more than 2**31 - 1 vertices cannot be indexed with int32")


def colors_to_uint8(colors: np.ndarray) -> np.ndarray:
    """Colours (N, C) float in [0, 1] -> uint8 in [0, 255], clipped and rounded to nearest."""
    return np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)


def _vertex_table(points, normals, colors) -> tuple[list[str], np.ndarray]:
    """The vertex header lines and a little-endian structured array of the vertex rows."""
    fields = [(name, "<f4", points[:, i]) for i, name in enumerate("xyz")]
    if normals is not None:
        fields += [(name, "<f4", normals[:, i]) for i, name in enumerate(("nx", "ny", "nz"))]
    if colors is not None:
        rgb = colors_to_uint8(colors)
        fields += [(name, "u1", rgb[:, i]) for i, name in enumerate(("red", "green", "blue"))]
    table = np.empty(len(points), dtype=[(name, dtype) for name, dtype, _ in fields])
    for name, _, values in fields:
        table[name] = values
    type_names = {"<f4": "float", "u1": "uchar"}
    header = [f"element vertex {len(points)}"]
    header += [f"property {type_names[dtype]} {name}" for name, dtype, _ in fields]
    return header, table


def _binary_faces(faces: np.ndarray) -> np.ndarray:
    table = np.empty(len(faces), dtype=[("count", "u1"), ("indices", "<i4", (3,))])
    table["count"] = 3
    table["indices"] = faces
    return table
