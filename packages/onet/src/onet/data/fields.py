"""Fields of an ONet object: each loads one kind of data for one object.

A field reads its arrays from a store, the object's data in some container: ``ObjectFolder``
for ONet's ShapeNet layout (one folder per object, as here), ``onet.data.hdf5.HDF5Object`` for
project-noisypixel's one-file-per-object layout. The field names what it reads by ONet's file
names (``points.npz``, ``img_choy2016``); the store finds it. The processing after the read
(jitter, subsampling, image transforms) is the field's, so both layouts give the same samples.

A field returns a value or a dict; the dataset names dict entries ``field.key`` (the key None
is the field itself), as im2mesh does: ``points``, ``points.occ``, ``inputs``, ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from geomkit.errors import InputError
from geomkit.io import load_npz
from onet.data.binvox import read_binvox

POINTS_SPEC = {"points": (None, 3), "occupancies": (None,)}
POINTCLOUD_SPEC = {"points": (None, 3), "normals": (None, 3)}
TRANSFORM_KEYS = ("loc", "scale")


class ObjectFolder:
    """One object of ONet's ShapeNet layout: a folder holding each field's file."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def where(self, name: str) -> str:
        return str(self.folder / name)

    def arrays(self, name: str, spec: dict[str, tuple]) -> dict:
        """The arrays of the .npz file ``name``, checked against ``spec`` (key -> shape)."""
        return load_npz(self.folder / name, spec)

    def n_views(self, name: str, extension: str) -> int:
        return len(self._images(name, extension))

    def image(self, name: str, extension: str, view: int) -> Image.Image:
        """View ``view`` of the sorted images in folder ``name``, as RGB (alpha dropped, grey
        repeated, as the original's PIL convert)."""
        path = self._images(name, extension)[view]
        try:
            with Image.open(path) as handle:
                return handle.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"cannot read image {path}: {err}") from err

    def _images(self, name: str, extension: str) -> list[Path]:
        return sorted((self.folder / name).glob(f"*.{extension}"))


def as_store(source):
    """A store for ``source``: an object folder given as a path, else ``source`` itself."""
    return ObjectFolder(source) if isinstance(source, str | os.PathLike) else source


def check_shapes(arrays: Mapping, spec: dict[str, tuple], where: str) -> None:
    """Raise InputError naming ``where`` unless every key of ``spec`` is in ``arrays`` with
    that shape (None = any size). Only ``.shape`` is looked at, so an HDF5 group is checked
    without reading its data."""
    for key, expected in spec.items():
        shown = "(" + ", ".join("?" if d is None else str(d) for d in expected) + ")"
        if key not in arrays:
            raise InputError(
                f"{where}: missing array '{key}' (expected shape {shown}); "
                f"present: {', '.join(arrays) or 'none'}"
            )
        actual = tuple(arrays[key].shape)
        fits = len(actual) == len(expected) and all(
            e is None or a == e for a, e in zip(actual, expected, strict=True)
        )
        if not fits:
            raise InputError(f"{where}: array '{key}' has shape {actual}, expected {shown}")


class Field:
    """Loads one kind of data; ``files`` lists what must exist in the object folder."""

    files: tuple[str, ...] = ()

    def load(self, source, idx: int, category: int, rng: np.random.Generator):
        """The field's value for the object in ``source`` (a store or an object folder)."""
        return self.read(as_store(source), idx, category, rng)

    def read(self, store, idx: int, category: int, rng: np.random.Generator):
        raise NotImplementedError

    def check(self, store) -> None:
        """Raise InputError if ``store`` lacks what :meth:`read` needs. Looks at names and
        shapes only (``store.layout``), so a dataset can check every object when it is built;
        only stores that list shapes cheaply (HDF5 files) are checked this way."""


class IndexField(Field):
    def read(self, store, idx, category, rng):
        return idx


class CategoryField(Field):
    def read(self, store, idx, category, rng):
        return category


class PointsField(Field):
    """points.npz: points (N, 3), occupancies (packed bits when ``unpackbits``), loc, scale.

    float16 points get N(0, 1e-4) jitter to break ties, as in ONet.
    """

    def __init__(self, file_name: str, transform=None, with_transforms=False, unpackbits=False):
        self.files = (file_name,)
        self.transform = transform
        self.with_transforms = with_transforms
        self.unpackbits = unpackbits

    def read(self, store, idx, category, rng):
        name = self.files[0]
        arrays = store.arrays(name, POINTS_SPEC)
        points = arrays["points"]
        if points.dtype == np.float16:
            points = points.astype(np.float32) + 1e-4 * rng.standard_normal(points.shape)
        points = points.astype(np.float32)
        occ = arrays["occupancies"]
        self._check_occupancies(len(points), len(occ), store.where(name))
        if self.unpackbits:
            occ = np.unpackbits(occ)[: len(points)]
        data = {None: points, "occ": occ.astype(np.float32)}
        if self.with_transforms:
            data.update(_loc_scale(arrays, store.where(name)))
        return self.transform(data, rng) if self.transform else data

    def check(self, store):
        name = self.files[0]
        layout = store.layout(name)
        check_shapes(layout, POINTS_SPEC, store.where(name))
        n_occ = layout["occupancies"].shape[0]
        self._check_occupancies(layout["points"].shape[0], n_occ, store.where(name))
        if self.with_transforms:
            _check_transform_keys(layout, store.where(name))

    def _check_occupancies(self, n_points: int, n_occ: int, where: str) -> None:
        if self.unpackbits and 8 * n_occ < n_points:
            raise InputError(f"{where}: {8 * n_occ} occupancy bits for {n_points} points")
        if not self.unpackbits and n_occ != n_points:
            raise InputError(f"{where}: {n_occ} occupancies for {n_points} points")


class PointCloudField(Field):
    """pointcloud.npz: surface points and normals (N, 3), loc, scale."""

    def __init__(self, file_name: str, transform=None, with_transforms=False):
        self.files = (file_name,)
        self.transform = transform
        self.with_transforms = with_transforms

    def read(self, store, idx, category, rng):
        name = self.files[0]
        arrays = store.arrays(name, POINTCLOUD_SPEC)
        data = {
            None: arrays["points"].astype(np.float32),
            "normals": arrays["normals"].astype(np.float32),
        }
        if self.with_transforms:
            data.update(_loc_scale(arrays, store.where(name)))
        return self.transform(data, rng) if self.transform else data

    def check(self, store):
        name = self.files[0]
        layout = store.layout(name)
        check_shapes(layout, POINTCLOUD_SPEC, store.where(name))
        if self.with_transforms:
            _check_transform_keys(layout, store.where(name))


def _check_transform_keys(arrays: Mapping, where: str) -> None:
    for key in TRANSFORM_KEYS:
        if key not in arrays:
            raise InputError(f"{where} has no {key!r} (needed with data.with_transforms)")


def _loc_scale(arrays: dict, where: str) -> dict:
    _check_transform_keys(arrays, where)
    return {key: arrays[key].astype(np.float32) for key in TRANSFORM_KEYS}


class ImagesField(Field):
    """One view from ``folder_name``: random in training, else the first of the sorted files.

    Images are opened as RGB (an alpha channel is dropped, as the original's PIL convert).
    With ``with_camera``: world_mat (3, 4) and camera_mat (3, 3) of that view, from the
    folder's cameras.npz.
    """

    def __init__(
        self, folder_name: str, transform, extension="jpg", random_view=True, with_camera=False
    ):
        self.files = (folder_name,)
        self.transform = transform
        self.extension = extension
        self.random_view = random_view
        self.with_camera = with_camera

    def read(self, store, idx, category, rng):
        name = self.files[0]
        n_views = self._n_views(store)
        view = int(rng.integers(n_views)) if self.random_view else 0
        data = {None: self.transform(store.image(name, self.extension, view), rng)}
        if self.with_camera:
            cams = store.arrays(self._cameras, self._camera_spec([view]))
            data["world_mat"] = cams[f"world_mat_{view}"].astype(np.float32)
            data["camera_mat"] = cams[f"camera_mat_{view}"].astype(np.float32)
        return data

    def check(self, store):
        n_views = self._n_views(store)
        if self.with_camera:
            spec = self._camera_spec(range(n_views))
            check_shapes(store.layout(self._cameras), spec, store.where(self._cameras))

    @property
    def _cameras(self) -> str:
        return f"{self.files[0]}/cameras.npz"

    def _n_views(self, store) -> int:
        n_views = store.n_views(self.files[0], self.extension)
        if not n_views:
            raise InputError(f"no .{self.extension} images in {store.where(self.files[0])}")
        return n_views

    @staticmethod
    def _camera_spec(views) -> dict[str, tuple]:
        spec = {}
        for view in views:
            spec.update({f"world_mat_{view}": (3, 4), f"camera_mat_{view}": (3, 3)})
        return spec


class VoxelsField(Field):
    """model.binvox as a float32 (32, 32, 32) occupancy grid, x-y-z order (folders only)."""

    def __init__(self, file_name: str):
        self.files = (file_name,)

    def read(self, store, idx, category, rng):
        return read_binvox(store.folder / self.files[0]).astype(np.float32)
