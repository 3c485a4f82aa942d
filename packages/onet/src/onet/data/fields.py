"""Fields of an ONet object folder: each loads one kind of data for one object.

A field returns a value or a dict; the dataset names dict entries ``field.key`` (the key None
is the field itself), as im2mesh does: ``points``, ``points.occ``, ``inputs``, ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from geomkit.errors import InputError
from geomkit.io import load_npz
from onet.data.binvox import read_binvox


class Field:
    """Loads one kind of data; ``files`` lists what must exist in the object folder."""

    files: tuple[str, ...] = ()

    def load(self, folder: Path, idx: int, category: int, rng: np.random.Generator):
        raise NotImplementedError


class IndexField(Field):
    def load(self, folder, idx, category, rng):
        return idx


class CategoryField(Field):
    def load(self, folder, idx, category, rng):
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

    def load(self, folder, idx, category, rng):
        path = folder / self.files[0]
        arrays = load_npz(path, {"points": (None, 3), "occupancies": (None,)})
        points = arrays["points"]
        if points.dtype == np.float16:
            points = points.astype(np.float32) + 1e-4 * rng.standard_normal(points.shape)
        points = points.astype(np.float32)
        occ = arrays["occupancies"]
        if self.unpackbits:
            occ = np.unpackbits(occ)
            if len(occ) < len(points):
                raise InputError(f"{path}: {len(occ)} occupancy bits for {len(points)} points")
            occ = occ[: len(points)]
        elif len(occ) != len(points):
            raise InputError(f"{path}: {len(occ)} occupancies for {len(points)} points")
        data = {None: points, "occ": occ.astype(np.float32)}
        if self.with_transforms:
            data.update(_loc_scale(arrays, path))
        return self.transform(data, rng) if self.transform else data


class PointCloudField(Field):
    """pointcloud.npz: surface points and normals (N, 3), loc, scale."""

    def __init__(self, file_name: str, transform=None, with_transforms=False):
        self.files = (file_name,)
        self.transform = transform
        self.with_transforms = with_transforms

    def load(self, folder, idx, category, rng):
        path = folder / self.files[0]
        arrays = load_npz(path, {"points": (None, 3), "normals": (None, 3)})
        data = {
            None: arrays["points"].astype(np.float32),
            "normals": arrays["normals"].astype(np.float32),
        }
        if self.with_transforms:
            data.update(_loc_scale(arrays, path))
        return self.transform(data, rng) if self.transform else data


def _loc_scale(arrays: dict, path: Path) -> dict:
    for key in ("loc", "scale"):
        if key not in arrays:
            raise InputError(f"{path} has no {key!r} (needed with data.with_transforms)")
    return {"loc": arrays["loc"].astype(np.float32), "scale": arrays["scale"].astype(np.float32)}


class ImagesField(Field):
    """One view from ``folder_name``: random in training, else the first of the sorted files.

    Images are opened as RGB (an alpha channel is dropped, as the original's PIL convert).
    With ``with_camera``: world_mat (3, 4) and camera_mat (3, 3) of that view.
    """

    def __init__(
        self, folder_name: str, transform, extension="jpg", random_view=True, with_camera=False
    ):
        self.files = (folder_name,)
        self.transform = transform
        self.extension = extension
        self.random_view = random_view
        self.with_camera = with_camera

    def load(self, folder, idx, category, rng):
        images = sorted((folder / self.files[0]).glob(f"*.{self.extension}"))
        if not images:
            raise InputError(f"no .{self.extension} images in {folder / self.files[0]}")
        view = int(rng.integers(len(images))) if self.random_view else 0
        try:
            with Image.open(images[view]) as handle:
                image = handle.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"cannot read image {images[view]}: {err}") from err
        data = {None: self.transform(image, rng)}
        if self.with_camera:
            cams = load_npz(folder / self.files[0] / "cameras.npz")
            for key, name in (
                (f"world_mat_{view}", "world_mat"),
                (f"camera_mat_{view}", "camera_mat"),
            ):
                if key not in cams:
                    raise InputError(f"{folder / self.files[0] / 'cameras.npz'} has no {key!r}")
                data[name] = cams[key].astype(np.float32)
        return data


class VoxelsField(Field):
    """model.binvox as a float32 (32, 32, 32) occupancy grid, x-y-z order."""

    def __init__(self, file_name: str):
        self.files = (file_name,)

    def load(self, folder, idx, category, rng):
        return read_binvox(folder / self.files[0]).astype(np.float32)
