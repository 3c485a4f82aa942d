"""binvox voxel files (Patrick Min's format, as ONet's im2mesh/utils/binvox_rw.py reads them).

Layout: a text header ``#binvox 1``, ``dim d h w``, ``translate tx ty tz``, ``scale s``,
``data``, then run-length encoded bytes: pairs (value 0 or 1, run length 1-255). The voxels run
with y fastest, then z, then x: flat index ``x * (w * h) + z * w + y`` with x < d, z < h, y < w
(the binvox documentation; binvox_rw reshapes the data to ``dims`` = [x, z, y] and transposes
it to [x, y, z]). Arrays here are always indexed [x, y, z], of shape (d, w, h): for the cubic
grids binvox makes, simply (n, n, n). A voxel (i, j, k) has its centre at
``scale * ((i, j, k) + 0.5) / n + translate`` in the model's coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from geomkit.errors import InputError
from geomkit.io import atomic_write, require_file

_MAGIC = b"#binvox"
_MAX_RUN = 255


class BinvoxGrid(NamedTuple):
    """A binvox file's content: occupancy (X, Y, Z) bool indexed [x, y, z]; translate (3,)
    float64 and scale float (see the module docstring)."""

    occupancy: np.ndarray
    translate: np.ndarray
    scale: float


def read_binvox(path: str | os.PathLike) -> np.ndarray:
    """The occupancy grid of a .binvox file: (X, Y, Z) bool indexed [x, y, z].

    Raises:
        InputError: missing file, bad header, or RLE data that does not fill the grid.
    """
    return load_binvox(path).occupancy


def load_binvox(path: str | os.PathLike) -> BinvoxGrid:
    """A .binvox file with its header values.

    Args:
        path: the file.

    Returns:
        BinvoxGrid(occupancy (X, Y, Z) bool [x, y, z], translate (3,) float64, scale float).

    Raises:
        InputError: missing file, not binvox, malformed header, values other than 0/1, zero
            run lengths, or runs that do not add up to X * Y * Z; names the file.
    """
    path = require_file(path, "binvox file")
    data = path.read_bytes()
    dims, translate, scale, body_start = _parse_header(data, path)
    runs = np.frombuffer(data, dtype=np.uint8, offset=body_start)
    if len(runs) % 2:
        raise InputError(
            f"{path}: binvox data has an odd number of bytes ({len(runs)}); truncated?"
        )
    values, lengths = runs[0::2], runs[1::2]
    if (values > 1).any():
        raise InputError(f"{path}: binvox data has voxel values other than 0 and 1; corrupt file")
    if (lengths == 0).any():
        raise InputError(f"{path}: binvox data has runs of length 0; corrupt file")
    total = int(lengths.sum(dtype=np.int64))
    if total != int(np.prod(dims)):
        raise InputError(
            f"{path}: binvox runs cover {total} voxels but dim {' '.join(map(str, dims))} needs "
            f"{int(np.prod(dims))}; truncated or corrupt file"
        )
    x_z_y = np.repeat(values.astype(bool), lengths).reshape(dims)
    return BinvoxGrid(np.ascontiguousarray(x_z_y.transpose(0, 2, 1)), translate, scale)


def write_binvox(
    path: str | os.PathLike,
    occupancy: np.ndarray,
    translate=(0.0, 0.0, 0.0),
    scale: float = 1.0,
) -> None:
    """Write a .binvox file (replaced atomically).

    Args:
        path: target file.
        occupancy: (X, Y, Z) bool (or 0/1) indexed [x, y, z], at least one voxel.
        translate: (3,) float, see the module docstring.
        scale: float > 0, the length of the whole grid in model units.
    """
    occupancy = np.asarray(occupancy)
    if occupancy.ndim != 3 or occupancy.size == 0:
        raise ValueError(f"occupancy must be a non-empty (X, Y, Z) grid, got {occupancy.shape}")
    translate = np.asarray(translate, dtype=np.float64).reshape(3)
    if not (np.isfinite(translate).all() and np.isfinite(scale) and scale > 0):
        raise ValueError(f"translate must be finite and scale positive, got {translate}, {scale}")
    n_x, n_y, n_z = occupancy.shape
    header = (
        "#binvox 1\n"
        f"dim {n_x} {n_z} {n_y}\n"
        f"translate {' '.join(repr(float(t)) for t in translate)}\n"
        f"scale {float(scale)!r}\n"
        "data\n"
    )
    flat = occupancy.astype(bool).transpose(0, 2, 1).reshape(-1)
    with atomic_write(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(_run_length_encode(flat).tobytes())


def _parse_header(data: bytes, path: Path) -> tuple[tuple[int, int, int], np.ndarray, float, int]:
    """(dims, translate, scale, offset of the RLE data) of a binvox file's bytes."""
    if not data.startswith(_MAGIC):
        raise InputError(f"{path}: not a binvox file (first line is not '#binvox <version>')")
    lines, position = [], 0
    while len(lines) < 5:
        end = data.find(b"\n", position)
        if end < 0:
            raise InputError(f"{path}: binvox header ends early (expected 5 lines up to 'data')")
        lines.append(data[position:end].strip())
        position = end + 1
    dims = _header_numbers(lines[1], b"dim", 3, int, path)
    translate = _header_numbers(lines[2], b"translate", 3, float, path)
    (scale,) = _header_numbers(lines[3], b"scale", 1, float, path)
    if lines[4] != b"data":
        raise InputError(f"{path}: binvox header line 5 must be 'data', got {lines[4][:40]!r}")
    if min(dims) <= 0:
        raise InputError(f"{path}: binvox dims must be positive, got {dims}")
    return tuple(dims), np.asarray(translate, dtype=np.float64), float(scale), position


def _header_numbers(line: bytes, keyword: bytes, count: int, kind, path: Path) -> list:
    words = line.split()
    if len(words) != count + 1 or words[0] != keyword:
        raise InputError(
            f"{path}: binvox header line {line[:60]!r} should be '{keyword.decode()}' followed by "
            f"{count} number(s)"
        )
    try:
        return [kind(w) for w in words[1:]]
    except ValueError:
        raise InputError(
            f"{path}: binvox header line {line[:60]!r} has a malformed number"
        ) from None


def _run_length_encode(flat: np.ndarray) -> np.ndarray:
    """binvox RLE of a 1-D bool array: uint8 pairs (value, length), lengths 1-255."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [len(flat)])))
    values = flat[starts]
    # Runs longer than 255 become several pairs: full 255-runs, then the remainder.
    pieces = (lengths + _MAX_RUN - 1) // _MAX_RUN
    piece_values = np.repeat(values, pieces)
    piece_lengths = np.full(int(pieces.sum()), _MAX_RUN, dtype=np.int64)
    last_piece = np.cumsum(pieces) - 1
    piece_lengths[last_piece] = lengths - (pieces - 1) * _MAX_RUN
    return np.stack([piece_values.astype(np.uint8), piece_lengths.astype(np.uint8)], axis=1)
