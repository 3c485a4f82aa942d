"""Where pretrained weight files live. Nothing is ever downloaded: a missing file is an error
that names the file, the folders it was looked for in, and where to get it.

A file is looked up in $GEOMKIT_WEIGHTS (default ``~/.cache/geomkit/weights``), then in
torch hub's cache (``~/.cache/torch/hub/checkpoints``, where torchvision and timm keep what
they once downloaded), so weights a user already has are found where they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from geomkit.errors import CheckpointError

WEIGHTS_ENV_VAR = "GEOMKIT_WEIGHTS"


def weights_dir() -> Path:
    """$GEOMKIT_WEIGHTS, else ``~/.cache/geomkit/weights`` (it may not exist)."""
    configured = os.environ.get(WEIGHTS_ENV_VAR, "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/geomkit/weights"


def hub_checkpoints_dir() -> Path:
    """torch hub's download folder (``$TORCH_HOME/hub/checkpoints``; it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> list[Path]:
    """The folders a weight file is looked up in, in order."""
    return [weights_dir(), hub_checkpoints_dir()]


def find_weight_file(path: str | os.PathLike | None, default_name: str, source: str) -> Path:
    """``path`` if given, else ``default_name`` in the first of :func:`search_dirs` holding it.

    Args:
        path: an explicit file, or None for the default locations.
        default_name: file name looked up in the weight folders.
        source: where the file comes from, for the error message.

    Raises:
        CheckpointError: the file is missing.
    """
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise CheckpointError(f"weight file {found} not found; it is {source}")
        return found
    for folder in search_dirs():
        if (folder / default_name).is_file():
            return folder / default_name
    folders = " or ".join(str(folder) for folder in search_dirs())
    raise CheckpointError(
        f"weight file {default_name} not found in {folders}: it is {source}; put it in one of "
        f"them, set {WEIGHTS_ENV_VAR} to the folder holding it, or pass its path"
    )


def torchvision_weight_file(weights, path: str | os.PathLike | None = None) -> Path:
    """The local file of a torchvision weights member (``ResNet18_Weights.IMAGENET1K_V1``):
    ``path`` if given, else the file name of its URL in the weight folders (torchvision's own
    download name, so a file it once fetched is found in torch hub's cache)."""
    name = weights.url.rsplit("/", 1)[-1]
    return find_weight_file(path, name, f"torchvision's {weights} ({weights.url})")
