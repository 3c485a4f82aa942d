"""NPZ and JSON reading and writing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geomkit.errors import InputError
from geomkit.io import load_json, load_npz, save_json, save_npz


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip_matches_numpy(tmp_path, compressed):
    rng = np.random.default_rng(8)
    arrays = {"points": rng.normal(size=(10, 3)), "ids": np.arange(4), "scale": np.float32(2.5)}
    path = tmp_path / "a.npz"
    save_npz(path, compressed=compressed, **arrays)
    with np.load(path) as reference:
        assert sorted(reference.files) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(reference[key], value)
    loaded = load_npz(path, {"points": (None, 3), "scale": (), "ids": (4,)})
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == np.asarray(value).dtype
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]  # no ".npz.npz", no temp files


def test_npz_spec_errors_name_file_key_and_shapes(tmp_path):
    path = tmp_path / "cams.npz"
    np.savez(path, points=np.zeros((5, 2)), scale=np.zeros(1))
    with pytest.raises(InputError) as error:
        load_npz(path, {"normals": (None, 3)})
    message = str(error.value)
    assert "cams.npz" in message and "'normals'" in message and "(?, 3)" in message
    assert "points" in message  # lists what is there
    with pytest.raises(InputError) as error:
        load_npz(path, {"points": (None, 3)})
    message = str(error.value)
    assert "cams.npz" in message and "'points'" in message
    assert "(5, 2)" in message and "(?, 3)" in message
    with pytest.raises(InputError, match=r"'scale' has shape \(1,\), expected \(\)"):
        load_npz(path, {"scale": ()})


def test_npz_refuses_pickles(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, ok=np.zeros(2), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="objects.npz.*'bad'.*pickled"):
        load_npz(path)
    with pytest.raises(ValueError, match="'bad'"):
        save_npz(tmp_path / "out.npz", bad=np.array([None], dtype=object))


def test_npz_corrupt_files(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, a=np.arange(1000))
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "flipped.npz": data[:60] + bytes(b ^ 0xFF for b in data[60:120]) + data[120:],
        "text.npz": b"not an archive",
        "empty.npz": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=name):
            load_npz(tmp_path / name)
    np.save(tmp_path / "single.npy", np.arange(3))
    with pytest.raises(InputError, match="single.npy.*not an .npz"):
        load_npz(tmp_path / "single.npy")
    with pytest.raises(InputError, match="missing.npz"):
        load_npz(tmp_path / "missing.npz")


def test_json_round_trip_with_numpy_values(tmp_path):
    path = tmp_path / "a.json"
    save_json(path, {"f": np.float32(0.5), "i": np.int64(3), "v": np.arange(3), "s": "é"})
    expected = {"f": 0.5, "i": 3, "v": [0, 1, 2], "s": "é"}
    assert json.loads(path.read_text(encoding="utf-8")) == expected
    assert load_json(path, required_keys=("f", "v")) == expected
    save_json(path, [1, 2])  # overwrites
    assert load_json(path) == [1, 2]
    with pytest.raises(TypeError):
        save_json(path, {"x": object()})
    assert load_json(path) == [1, 2]  # a failed write leaves the old file


def test_json_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": [1, 2,,]\n}\n')  # line 3, column 14: the second comma
    with pytest.raises(InputError, match="bad.json.*line 3, column 14"):
        load_json(path)
    (tmp_path / "keys.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match=r"keys.json.*missing key\(s\) b; present: a"):
        load_json(tmp_path / "keys.json", required_keys=("a", "b"))
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(InputError, match="list.json.*JSON object"):
        load_json(tmp_path / "list.json", required_keys=("a",))
    (tmp_path / "latin.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(InputError, match="latin.json.*UTF-8"):
        load_json(tmp_path / "latin.json")
    with pytest.raises(InputError, match="gone.json"):
        load_json(tmp_path / "gone.json")
