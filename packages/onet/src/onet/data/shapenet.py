"""ONet's ShapeNet layout (``data/ShapeNet``): metadata.yaml, per-category split lists, one folder
per object holding the fields' files."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import yaml

from geomkit.errors import InputError
from onet.data.fields import Field, ObjectFolder


def read_metadata(root: Path, categories: list[str]) -> dict:
    """metadata.yaml (category id -> {id, name}); names 'n/a' when the file is absent."""
    path = root / "metadata.yaml"
    if not path.exists():
        return {c: {"id": c, "name": "n/a"} for c in categories}
    try:
        metadata = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from err
    for c in categories:
        metadata.setdefault(c, {"id": c, "name": "n/a"})
    return metadata


def read_split(root: Path, category: str, split: str) -> list[str]:
    """Object ids of ``<category>/<split>.lst``. Blank lines are skipped (im2mesh turned them
    into empty ids that failed to load and were dropped by its collate function)."""
    path = root / category / f"{split}.lst"
    if not path.is_file():
        raise InputError(f"split file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class ShapeNetDataset(torch.utils.data.Dataset):
    """Objects of ``categories`` (all sub-folders when None) in ``split``.

    Every sample draws its randomness (points subset, view, noise) from a generator seeded by
    (seed, epoch, index): reproducible with any number of workers and across resumes. Call
    set_epoch(e) at the start of each epoch.

    Objects missing a field's file raise one InputError listing them, or, with
    ``skip_incomplete``, are left out with a warning line (the original dropped them silently
    at load time).

    Other layouts of the same data (onet.data.hdf5) override find_categories, read_split,
    open_object and _check_complete.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        fields: dict[str, Field],
        split: str,
        categories: list[str] | None = None,
        seed: int = 0,
        skip_incomplete: bool = False,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"dataset folder not found: {self.root} (set data.path)")
        self.fields = fields
        self.seed = seed
        self.epoch = 0
        self.categories = list(self.find_categories() if categories is None else categories)
        self.metadata = read_metadata(self.root, self.categories)
        self.models = [
            {"category": c, "category_idx": i, "model": m}
            for i, c in enumerate(self.categories)
            for m in self.read_split(c, split)
        ]
        self._check_complete(skip_incomplete)

    def find_categories(self) -> list[str]:
        """All categories of the dataset (data.classes null): its sub-folders."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def read_split(self, category: str, split: str) -> list[str]:
        """Object ids of ``category`` in ``split``, in list order."""
        return read_split(self.root, category, split)

    @contextlib.contextmanager
    def open_object(self, info: dict) -> Iterator:
        """The store the fields read object ``info`` from (here its folder)."""
        yield ObjectFolder(self.root / info["category"] / info["model"])

    def _check_complete(self, skip: bool) -> None:
        required = [name for field in self.fields.values() for name in field.files]
        broken = [
            (m, f)
            for m in self.models
            for f in required
            if not (self.root / m["category"] / m["model"] / f).exists()
        ]
        if not broken:
            return
        listing = ", ".join(f"{m['category']}/{m['model']}/{f}" for m, f in broken[:5])
        more = f" (+{len(broken) - 5} more)" if len(broken) > 5 else ""
        if not skip:
            raise InputError(f"{len(broken)} missing files in {self.root}: {listing}{more}")
        bad = {id(m) for m, _ in broken}
        self.models = [m for m in self.models if id(m) not in bad]
        print(f"warning: left out {len(bad)} incomplete objects ({listing}{more})")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, idx: int) -> dict:
        info = self.models[idx]
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        data = {}
        with self.open_object(info) as store:
            for name, field in self.fields.items():
                value = field.load(store, idx, info["category_idx"], rng)
                if isinstance(value, dict):
                    for key, item in value.items():
                        data[name if key is None else f"{name}.{key}"] = item
                else:
                    data[name] = value
        return data

    def model_info(self, idx: int) -> dict:
        """{'category', 'category_idx', 'model'} of sample idx."""
        return self.models[idx]
