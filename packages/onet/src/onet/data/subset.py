"""A chosen few objects of a dataset (one named object, or a seeded random sample), keeping the
dataset's per-object interface so the generation and evaluation loops run on it unchanged."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from geomkit.errors import InputError


class ObjectSubset(torch.utils.data.Dataset):
    """Objects ``indices`` of ``dataset``. Each sample is the dataset's own sample of that
    object (drawn with the object's index in the whole split), so an object looks the same here
    as in the full split."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.metadata = dataset.metadata

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> dict:
        return self.dataset[self.indices[idx]]

    def model_info(self, idx: int) -> dict:
        return self.dataset.model_info(self.indices[idx])


def object_names(dataset) -> list[str]:
    """``<category>_<model>`` of every object, the name project-noisypixel gives its files."""
    return [
        f"{info['category']}_{info['model']}"
        for info in map(dataset.model_info, range(len(dataset)))
    ]


def find_object(dataset, name: str) -> int:
    """Index of the object called ``<category>_<model>``, ``<category>/<model>`` or ``<model>``
    (with or without ``.h5``).

    Raises:
        InputError: no object, or more than one, has that name.
    """
    wanted = name.removesuffix(".h5").replace("/", "_")
    names = object_names(dataset)
    matches = [i for i, full in enumerate(names) if wanted in (full, full.split("_", 1)[1])]
    if len(matches) != 1:
        what = "no object" if not matches else f"{len(matches)} objects"
        examples = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(
            f"{what} called {name!r} in this split ({len(names)} objects, e.g. {examples})"
        )
    return matches[0]


def random_objects(dataset, count: int, seed: int) -> ObjectSubset:
    """``count`` objects drawn without replacement with ``seed`` (all of them, in order, when
    ``count`` is 0 or at least the dataset's size)."""
    if count < 0:
        raise InputError(f"the number of objects must be >= 0, got {count}")
    if count == 0 or count >= len(dataset):
        return ObjectSubset(dataset, range(len(dataset)))
    chosen = np.random.default_rng(seed).choice(len(dataset), size=count, replace=False)
    return ObjectSubset(dataset, sorted(chosen.tolist()))
