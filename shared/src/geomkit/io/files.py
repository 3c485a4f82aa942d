"""Safe file handling shared by every writer: atomic replacement and no silent overwrites."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geomkit.errors import InputError, OutputExistsError


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise InputError naming it when it is not a file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not path.is_file():
        raise InputError(f"{what} is not a file: {path}")
    return path


def require_dir(path: str | os.PathLike, what: str = "folder") -> Path:
    """Return ``path`` as a Path, or raise InputError naming it when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{what} not found or not a folder: {path}")
    return path


def check_can_write(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing file or non-empty folder unless ``overwrite``."""
    path = Path(path)
    exists = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if exists and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    return path


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create an output folder; an existing non-empty one needs ``overwrite``.

    Existing files are never deleted here: with ``overwrite`` they are replaced one by one
    as the new outputs are written (atomically, see :func:`atomic_write`).
    """
    path = check_can_write(path, overwrite)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    A crash or an exception leaves ``path`` as it was (old content or absent), never half
    written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _target_mode(path))
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_write` for writers that need a file name (cv2, numpy, torch).

    Yields a temporary path with the same suffix as ``path``; it is renamed over ``path``
    when the block ends without an exception.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, _target_mode(path))
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _target_mode(path: Path) -> int:
    """Permissions for the new file: the replaced file's, else what open() would give.

    (mkstemp creates files readable by their owner only.)
    """
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
