"""onet.data.binvox against hand-made files laid out by the binvox documentation."""

from __future__ import annotations

import numpy as np
import pytest

from geomkit.errors import InputError
from onet.data.binvox import load_binvox, read_binvox, write_binvox
from tests.helpers import assert_close, assert_raises_naming


def _hand_rle(flat: list[int]) -> bytes:
    """binvox run-length encoding written out plainly: (value, count <= 255) pairs."""
    pairs = []
    for value in flat:
        if pairs and pairs[-1][0] == value and pairs[-1][1] < 255:
            pairs[-1][1] += 1
        else:
            pairs.append([value, 1])
    return bytes(b for pair in pairs for b in pair)


def _hand_file(occupied_xyz, d: int, h: int, w: int, translate="0 0 0", scale="1") -> bytes:
    """A binvox file with the given [x, y, z] voxels set, by the documented index
    x * (w * h) + z * w + y (x < d, z < h, y < w)."""
    flat = [0] * (d * h * w)
    for x, y, z in occupied_xyz:
        flat[x * (w * h) + z * w + y] = 1
    header = f"#binvox 1\ndim {d} {h} {w}\ntranslate {translate}\nscale {scale}\ndata\n"
    return header.encode() + _hand_rle(flat)


def test_reader_follows_documented_xzy_layout(tmp_path):
    # Non-cubic (d, h, w) = (2, 3, 4) so that any swapped axis shows up.
    occupied = [(0, 0, 0), (1, 2, 0), (0, 3, 2), (1, 1, 1)]
    path = tmp_path / "hand.binvox"
    path.write_bytes(_hand_file(occupied, 2, 3, 4, translate="-0.5 0.25 1", scale="2.5"))
    grid = load_binvox(path)
    assert grid.occupancy.shape == (2, 4, 3)  # [x, y, z] = (d, w, h)
    expected = np.zeros((2, 4, 3), dtype=bool)
    for x, y, z in occupied:
        expected[x, y, z] = True
    np.testing.assert_array_equal(grid.occupancy, expected)
    assert_close(grid.translate, np.array([-0.5, 0.25, 1.0]), atol=0.0, what="translate")
    assert grid.scale == 2.5


def test_writer_produces_documented_bytes(tmp_path):
    occupancy = np.zeros((2, 4, 3), dtype=bool)  # [x, y, z] for (d, h, w) = (2, 3, 4)
    occupied = [(1, 3, 2), (0, 1, 0), (0, 2, 0)]
    for x, y, z in occupied:
        occupancy[x, y, z] = True
    path = tmp_path / "ours.binvox"
    write_binvox(path, occupancy, translate=(0.0, 0.0, 0.0), scale=1.0)
    data = path.read_bytes()
    header_end = data.index(b"data\n") + len(b"data\n")
    assert data[:header_end].split(b"\n")[:2] == [b"#binvox 1", b"dim 2 3 4"]
    expected_body = _hand_file(occupied, 2, 3, 4).split(b"data\n", 1)[1]
    assert data[header_end:] == expected_body


def test_long_runs_split_at_255(tmp_path):
    path = tmp_path / "full.binvox"
    write_binvox(path, np.ones((32, 32, 32), dtype=bool))
    body = path.read_bytes().split(b"data\n", 1)[1]
    # 32768 voxels = 128 runs of 255 + one of 128.
    assert body == bytes([1, 255]) * 128 + bytes([1, 128])
    assert read_binvox(path).all()


@pytest.mark.parametrize("shape", [(32, 32, 32), (5, 7, 3)])
def test_round_trip(tmp_path, shape):
    rng = np.random.default_rng(0)
    occupancy = rng.random(shape) < 0.3
    path = tmp_path / "grid.binvox"
    write_binvox(path, occupancy, translate=(0.1, -0.2, 0.3), scale=0.75)
    grid = load_binvox(path)
    np.testing.assert_array_equal(grid.occupancy, occupancy)
    assert_close(grid.translate, np.array([0.1, -0.2, 0.3]), atol=0.0, what="translate")
    assert grid.scale == 0.75


def test_read_matches_binvox_rw_decoding(tmp_path):
    """binvox_rw's read_as_3d_array: repeat values by counts, reshape to dims, then
    transpose (0, 2, 1); re-done here with numpy on a random file of ours."""
    rng = np.random.default_rng(1)
    occupancy = rng.random((6, 6, 6)) < 0.5
    path = tmp_path / "grid.binvox"
    write_binvox(path, occupancy)
    raw = np.frombuffer(path.read_bytes().split(b"data\n", 1)[1], dtype=np.uint8)
    decoded = np.repeat(raw[::2], raw[1::2]).astype(bool).reshape(6, 6, 6).transpose(0, 2, 1)
    np.testing.assert_array_equal(read_binvox(path), decoded)
    np.testing.assert_array_equal(decoded, occupancy)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"#notbinvox\n", "not a binvox file"),
        (b"#binvox 1\ndim 2 2\ntranslate 0 0 0\nscale 1\ndata\n", "'dim' followed by 3"),
        (b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n\x00\x05", "cover 5 voxels"),
        (b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n\x02\x08", "other than 0"),
        (b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n\x00\x00\x00\x08", "length 0"),
        (b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\n", "header ends early"),
        (b"#binvox 1\ndim 2 2 2\ntranslate 0 x 0\nscale 1\ndata\n\x00\x08", "malformed"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.binvox"
    path.write_bytes(content)
    assert_raises_naming(InputError, lambda: read_binvox(path), str(path), fragment)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.binvox"
    assert_raises_naming(InputError, lambda: read_binvox(path), str(path), "not found")
