"""Progress bars, a short text log and TensorBoard, on rank 0 only."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from geomkit.dist import is_main_process


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """tqdm that only draws on rank 0 (other ranks iterate silently)."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", not is_main_process())
    return tqdm(iterable, **kwargs)


def text_logger(folder: str | Path | None = None, name: str = "geomkit") -> logging.Logger:
    """A logger printing to stderr on rank 0, and appending to ``folder/log.txt`` when given."""
    logger = logging.getLogger(f"{name}.{folder}" if folder else name)
    if logger.handlers:
        return logger
    logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if folder is not None and is_main_process():
        Path(folder).mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(Path(folder) / "log.txt")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


class Board:
    """TensorBoard scalars and images in ``folder``; a no-op on ranks other than 0.

    The writer is created on first use, so constructing a Board costs nothing.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._writer = None

    def _get(self):
        if not is_main_process():
            return None
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder))
        return self._writer

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        writer = self._get()
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(f"{prefix}{name}", float(value), step)

    def image(self, name: str, image, step: int) -> None:
        """``image`` (H, W, 3) float in [0, 1] (numpy or torch)."""
        writer = self._get()
        if writer is not None:
            array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
            writer.add_image(name, np.clip(np.asarray(array), 0, 1), step, dataformats="HWC")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
