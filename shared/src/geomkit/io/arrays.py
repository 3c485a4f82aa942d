"""NPZ archives and JSON files, checked on reading and written atomically."""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

from geomkit.errors import InputError
from geomkit.io.files import atomic_write, require_file


def load_npz(path: str | os.PathLike, spec: dict[str, tuple] | None = None) -> dict:
    """Load every array of an .npz archive, checking required keys and their shapes.

    Pickled (object) arrays are refused: loading them could run code from the file.

    Args:
        path: the .npz file.
        spec: required key -> expected shape, None for a dimension of any size; e.g.
            ``{"points": (None, 3), "scale": ()}``. Keys not in spec are returned unchecked.

    Returns:
        dict key -> np.ndarray, for all keys in the archive.

    Raises:
        InputError: missing or corrupt file, a pickled array, a missing key or a wrong shape;
            the message names the file, the key, and the expected and actual shape.
    """
    path = require_file(path, "NPZ file")
    with open(path, "rb") as handle:
        return _read_npz(handle, path, spec or {})


def _read_npz(handle, path, spec: dict[str, tuple]) -> dict:
    # numpy is given an open handle, so the file is closed even when the archive is corrupt
    magic = handle.read(6)
    handle.seek(0)
    if magic == b"\x93NUMPY":
        raise InputError(f"{path} is a single .npy array, not an .npz archive of named arrays")
    if not magic.startswith(b"PK"):
        raise InputError(
            f"{path} is not an NPZ archive (no zip signature): corrupt or another format"
        )
    arrays, key = {}, None
    try:
        with np.load(handle, allow_pickle=False) as archive:
            for key in archive.files:
                arrays[key] = archive[key]
    except ValueError as err:
        if "pickle" in str(err):
            raise InputError(
                f"{path}: array '{key}' holds pickled Python objects, which are not loaded "
                "because that could run code; save plain numeric arrays instead"
            ) from None
        raise InputError(f"{path}: corrupt NPZ archive ({err})") from None
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as err:
        raise InputError(f"{path}: corrupt or truncated NPZ archive ({err})") from None
    _check_spec(arrays, spec, path)
    return arrays


def save_npz(path: str | os.PathLike, *, compressed: bool = False, **arrays) -> None:
    """Save arrays to an .npz archive (np.savez or np.savez_compressed), atomically.

    Args:
        path: target file, written as given (no .npz is appended), replaced if it exists.
        compressed: deflate the arrays (smaller, slower).
        **arrays: key -> array-like; object arrays are refused (they would need pickle).
    """
    for key, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise ValueError(f"array '{key}' has dtype object, which NPZ can only pickle")
    save = np.savez_compressed if compressed else np.savez
    with atomic_write(path, "wb") as handle:
        save(handle, **arrays)


def load_json(path: str | os.PathLike, required_keys=()) -> dict | list:
    """Load a JSON file.

    Args:
        path: the .json file (UTF-8).
        required_keys: keys the top-level object must have.

    Returns:
        The parsed object (dict or list).

    Raises:
        InputError: missing file, invalid JSON (with line and column), not UTF-8, or a
            missing required key (or a top level that is not an object when keys are required).
    """
    path = require_file(path, "JSON file")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    required = list(required_keys)
    if required and not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a JSON object with keys {', '.join(required)}, "
            f"got a {type(data).__name__}"
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise InputError(
            f"{path}: missing key(s) {', '.join(missing)}; present: {', '.join(data) or 'none'}"
        )
    return data


def save_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Write ``obj`` as UTF-8 JSON (numpy scalars and arrays as numbers and lists), atomically.

    Args:
        path: target file, replaced if it exists.
        obj: JSON-serialisable data; numpy values are converted.
        indent: spaces per nesting level.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=_numpy_to_json)
    with atomic_write(path, "wb") as handle:
        handle.write((text + "\n").encode("utf-8"))


def _numpy_to_json(value):
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_spec(arrays: dict, spec: dict[str, tuple], path) -> None:
    for key, expected in spec.items():
        expected = tuple(expected)
        shown = "(" + ", ".join("?" if d is None else str(d) for d in expected) + ")"
        if key not in arrays:
            raise InputError(
                f"{path}: missing array '{key}' (expected shape {shown}); "
                f"present: {', '.join(arrays) or 'none'}"
            )
        actual = arrays[key].shape
        fits = len(actual) == len(expected) and all(
            e is None or a == e for a, e in zip(actual, expected, strict=True)
        )
        if not fits:
            raise InputError(
                f"{path}: array '{key}' has shape {actual}, expected {shown} (? = any size)"
            )
