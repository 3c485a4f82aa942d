"""project-noisypixel's HDF5 layout (their ``hdf_data/``), read through ONet's fields.

The folder holds one ``<synset>_<model>.h5`` per object and flat ``<split>.lst`` files naming
them (``subtrain.lst`` too, when written); the category is the text before the first "_". An
object's file, as ``python -m onet.data_process`` writes it:

- ``/images`` (n_views, H, W, 3) uint8: the object's img_choy2016 views, in file-name order;
- ``/camera/world_mat_{i}`` (3, 4), ``/camera/camera_mat_{i}`` (3, 3): its cameras.npz;
- ``/points/{points,occupancies,loc,scale}``: its points.npz;
- ``/pointcloud/{points,normals,loc,scale}``: its pointcloud.npz.

:class:`HDF5Object` shows such a file to the fields as if it were the object's folder (an npz
name reads the group of its stem, the image folder reads /images), so a sample is the one
:class:`~onet.data.shapenet.ShapeNetDataset` gives for the same object, seed and config.
Files are opened per sample and closed after it (an h5py handle must not cross a fork into a
DataLoader worker); a sample reads one view of /images, not all of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from geomkit.errors import InputError
from geomkit.log import progress
from onet.data.fields import check_shapes
from onet.data.shapenet import ShapeNetDataset

# npz stem -> group, where they differ (cameras.npz is stored as /camera).
GROUPS = {"cameras": "camera"}
IMAGES = "images"


def object_file(category: str, model: str) -> str:
    """The file name project-noisypixel gives an object."""
    return f"{category}_{model}.h5"


def parse_entry(entry: str, where: Path) -> tuple[str, str]:
    """(category, model) of a list entry ``<synset>_<model>.h5`` (``.h5`` optional)."""
    category, sep, model = entry.removesuffix(".h5").partition("_")
    if not (sep and category and model):
        raise InputError(f"{where}: entry {entry!r} is not <synset>_<model>.h5")
    return category, model


class HDF5Object:
    """One object's open .h5 file, with the reading interface of an object folder."""

    def __init__(self, handle: h5py.File, path: Path):
        self.handle, self.path = handle, path

    def where(self, name: str) -> str:
        return f"{self.path}:/{self._group_name(name)}"

    def layout(self, name: str) -> h5py.Group:
        """The group holding npz file ``name``'s arrays (names and shapes; nothing is read)."""
        group = self.handle.get(self._group_name(name))
        if not isinstance(group, h5py.Group):
            raise InputError(f"{self.where(name)}: no such group (it holds {name}'s arrays)")
        return group

    def arrays(self, name: str, spec: dict[str, tuple]) -> dict:
        """Every array of ``name``'s group, checked against ``spec`` (key -> shape)."""
        group = self.layout(name)
        check_shapes(group, spec, self.where(name))
        return {
            key: np.asarray(self._read(item, ()))
            for key, item in group.items()
            if isinstance(item, h5py.Dataset)
        }

    def n_views(self, name: str, extension: str) -> int:
        return self._images().shape[0]

    def image(self, name: str, extension: str, view: int) -> Image.Image:
        return Image.fromarray(self._read(self._images(), view), "RGB")

    def _images(self) -> h5py.Dataset:
        images = self.handle.get(IMAGES)
        where = f"{self.path}:/{IMAGES}"
        if not isinstance(images, h5py.Dataset):
            raise InputError(f"{where}: no such dataset (the object's views)")
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise InputError(
                f"{where}: {images.dtype} array of shape {images.shape}, expected uint8 "
                "(n_views, H, W, 3)"
            )
        return images

    def _read(self, dataset: h5py.Dataset, selection):
        try:
            return dataset[selection]
        except OSError as err:
            raise InputError(f"{self.path}:{dataset.name}: unreadable ({err})") from None

    @staticmethod
    def _group_name(name: str) -> str:
        stem = Path(name).stem
        return GROUPS.get(stem, stem)


class HDF5Dataset(ShapeNetDataset):
    """The objects of ``<root>/<split>.lst`` in categories ``categories`` (None: every category
    with a file in the folder), in the order ShapeNetDataset gives the same objects: by
    category, then list order.

    Every listed file is checked when the dataset is built, from names and shapes only (no
    data is read): a missing, unopenable (truncated, not HDF5) or wrongly laid out file raises
    one InputError naming it, or, with ``skip_incomplete``, is left out with a warning line.
    """

    def find_categories(self) -> list[str]:
        names = (p.name for p in self.root.glob("*.h5") if not p.name.startswith("."))
        return sorted({parse_entry(name, self.root)[0] for name in names})

    def read_split(self, category: str, split: str) -> list[str]:
        path = self.root / f"{split}.lst"
        if not path.is_file():
            raise InputError(f"split file not found: {path}")
        if not any(self.root.glob(object_file(category, "*"))):
            raise InputError(f"no {object_file(category, '*')} files in {self.root} (data.classes)")
        entries = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        pairs = [parse_entry(entry, path) for entry in entries]
        return [model for cat, model in pairs if cat == category]

    @contextlib.contextmanager
    def open_object(self, info: dict) -> Iterator[HDF5Object]:
        path = self.root / object_file(info["category"], info["model"])
        if not path.is_file():
            raise InputError(f"{path}: not found (it is named in the split list)")
        try:
            handle = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"{path}: cannot be opened as HDF5 ({err})") from None
        with handle:
            yield HDF5Object(handle, path)

    def _check_complete(self, skip: bool) -> None:
        checks = progress(self.models, desc="check .h5 files", unit="file", delay=2)
        bad = [(info, problem) for info in checks if (problem := self._problem(info))]
        if not bad:
            return
        more = f" (and {len(bad) - 1} more bad files)" if len(bad) > 1 else ""
        if not skip:
            raise InputError(f"{bad[0][1]}{more}")
        broken = {id(info) for info, _ in bad}
        self.models = [info for info in self.models if id(info) not in broken]
        print(f"warning: left out {len(bad)} bad objects ({bad[0][1]}{more})")

    def _problem(self, info: dict) -> str | None:
        """What is wrong with object ``info``'s file for these fields, or None."""
        try:
            with self.open_object(info) as store:
                for field in self.fields.values():
                    field.check(store)
        except InputError as err:
            return str(err)
        return None
