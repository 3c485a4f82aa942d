"""Where pretrained weight files live. Nothing is ever downloaded: a missing file is an error
that names the file, the folder it was looked for in, and where to get it."""

from __future__ import annotations

import os
from pathlib import Path

from geomkit.errors import CheckpointError

WEIGHTS_ENV_VAR = "GEOMKIT_WEIGHTS"


def weights_dir() -> Path:
    """$GEOMKIT_WEIGHTS, else ``~/.cache/geomkit/weights`` (it may not exist)."""
    configured = os.environ.get(WEIGHTS_ENV_VAR, "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/geomkit/weights"


def find_weight_file(path: str | os.PathLike | None, default_name: str, source: str) -> Path:
    """``path`` if given, else ``default_name`` in :func:`weights_dir`; it must exist.

    Args:
        path: an explicit file, or None for the default location.
        default_name: file name looked up in the weights folder.
        source: where the file comes from, for the error message.

    Raises:
        CheckpointError: the file is missing.
    """
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise CheckpointError(f"weight file {found} not found; it is {source}")
        return found
    found = weights_dir() / default_name
    if not found.is_file():
        raise CheckpointError(
            f"weight file {default_name} not found in {weights_dir()}: it is {source}; put it "
            f"there, set {WEIGHTS_ENV_VAR} to the folder holding it, or pass its path"
        )
    return found
