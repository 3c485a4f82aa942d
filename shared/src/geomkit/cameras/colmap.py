"""COLMAP sparse models: read through pycolmap, write COLMAP's text and binary formats.

COLMAP poses are ``cam_from_world``: ``x_cam = R x_world + t`` with OpenCV camera axes (x right,
y down, z forward). COLMAP's pixel convention is ours (the centre of the top-left pixel is
(0.5, 0.5)), so principal points are copied unchanged. Supported camera models and their
parameters (https://colmap.github.io/cameras.html):

* SIMPLE_PINHOLE: f, cx, cy
* PINHOLE: fx, fy, cx, cy
* SIMPLE_RADIAL: f, cx, cy, k (= OpenCV k1)
* RADIAL: f, cx, cy, k1, k2
* OPENCV: fx, fy, cx, cy, k1, k2, p1, p2

The writers produce the model files of https://colmap.github.io/format.html (``cameras``,
``images`` with empty 2D point lists, empty ``points3D``), without the ``rigs``/``frames``
files of COLMAP >= 3.12: pycolmap 4.2 reads such models and creates one trivial rig per camera.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import torch

from geomkit.cameras.base import Cameras
from geomkit.cameras.opencv import from_opencv, to_opencv
from geomkit.errors import InputError, OutputExistsError
from geomkit.io.files import atomic_write, require_dir
from geomkit.transforms import matrix_to_quaternion

# COLMAP model name -> model id, from colmap/src/colmap/sensor/models.h.
_MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4}
_MODEL_FILES = ("cameras", "images", "points3D")


def from_colmap(model, dtype: torch.dtype = torch.float32) -> tuple[Cameras, list[str]]:
    """Cameras of the registered images of a COLMAP model, sorted by image name.

    Args:
        model: a folder with ``cameras/images/points3D`` ``.bin`` or ``.txt`` (binary preferred,
            as COLMAP does), or a ``pycolmap.Reconstruction``.
        dtype: float dtype of the cameras (parsing is in float64).

    Returns:
        (cameras, names): N cameras and the N image names, sorted by name. Distortion is set
        (zeros for pinhole cameras) when any camera has a distortion model, otherwise None.

    Raises:
        InputError: missing or unreadable model, unsupported camera model (named), no
            registered image.
    """
    reconstruction = _read_reconstruction(model) if isinstance(model, (str, os.PathLike)) else model
    images = sorted(
        (image for image in reconstruction.images.values() if _is_registered(image)),
        key=lambda image: image.name,
    )
    if not images:
        raise InputError(f"COLMAP model {model} has no registered image")
    rotations, translations, Ks, sizes, distortions = [], [], [], [], []
    for image in images:
        camera = reconstruction.cameras[image.camera_id]
        K, distortion = _intrinsics(camera, image.name)
        pose = image.cam_from_world
        matrix = torch.as_tensor((pose() if callable(pose) else pose).matrix(), dtype=torch.float64)
        rotations.append(matrix[:, :3])
        translations.append(matrix[:, 3])
        Ks.append(K)
        sizes.append((camera.height, camera.width))
        distortions.append(distortion)
    has_distortion = any(d is not None for d in distortions)
    cameras = from_opencv(
        torch.stack(rotations),
        torch.stack(translations),
        torch.stack(Ks),
        torch.tensor(sizes),
        distortion=(
            torch.tensor([d or [0.0] * 4 for d in distortions], dtype=torch.float64)
            if has_distortion
            else None
        ),
    )
    return cameras.to(dtype=dtype), [image.name for image in images]


def write_colmap_text(
    folder: str | os.PathLike, cameras: Cameras, names: Sequence[str], overwrite: bool = False
) -> None:
    """Write ``cameras.txt``, ``images.txt``, ``points3D.txt`` (no 3D points) into ``folder``.

    One COLMAP camera per distinct intrinsics: PINHOLE without distortion, else OPENCV. Numbers
    are written with full (round-trip) precision.

    Args:
        folder: created if needed.
        cameras: N cameras with zero skew (COLMAP has no skew parameter).
        names: N unique image names without whitespace (COLMAP's text format splits on spaces).
        overwrite: replace existing model files (else OutputExistsError).
    """
    for name in names:
        if not name or any(ch.isspace() for ch in name):
            raise InputError(f"image name {name!r} cannot be written to COLMAP text: no whitespace")
    camera_rows, image_rows = _model_rows(cameras, names)
    paths = _output_paths(folder, ".txt", overwrite)
    camera_lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(camera_rows)}",
    ]
    for camera_id, model, width, height, params in camera_rows:
        camera_lines.append(" ".join(map(str, (camera_id, model, width, height, *params))))
    image_lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(image_rows)}, mean observations per image: 0",
    ]
    for image_id, qvec, tvec, camera_id, name in image_rows:
        image_lines.append(" ".join(map(str, (image_id, *qvec, *tvec, camera_id, name))))
        image_lines.append("")
    point_lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        "# Number of points: 0, mean track length: 0",
    ]
    for path, lines in zip(paths, (camera_lines, image_lines, point_lines), strict=True):
        with atomic_write(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")


def write_colmap_binary(
    folder: str | os.PathLike, cameras: Cameras, names: Sequence[str], overwrite: bool = False
) -> None:
    """Write ``cameras.bin``, ``images.bin``, ``points3D.bin`` (no 3D points) into ``folder``.

    Little-endian, as COLMAP writes them. Same camera grouping and checks as
    :func:`write_colmap_text`; names may contain spaces but not NUL.
    """
    for name in names:
        if not name or "\0" in name:
            raise InputError(f"image name {name!r} cannot be written to COLMAP binary")
    camera_rows, image_rows = _model_rows(cameras, names)
    paths = _output_paths(folder, ".bin", overwrite)
    with atomic_write(paths[0]) as handle:
        handle.write(struct.pack("<Q", len(camera_rows)))
        for camera_id, model, width, height, params in camera_rows:
            handle.write(struct.pack("<iiQQ", camera_id, _MODEL_IDS[model], width, height))
            handle.write(struct.pack(f"<{len(params)}d", *params))
    with atomic_write(paths[1]) as handle:
        handle.write(struct.pack("<Q", len(image_rows)))
        for image_id, qvec, tvec, camera_id, name in image_rows:
            handle.write(struct.pack("<I7dI", image_id, *qvec, *tvec, camera_id))
            handle.write(name.encode("utf-8") + b"\0")
            handle.write(struct.pack("<Q", 0))
    with atomic_write(paths[2]) as handle:
        handle.write(struct.pack("<Q", 0))


def _read_reconstruction(folder: str | os.PathLike):
    import pycolmap  # here, not at the top: it takes 0.2 s to import and only readers need it

    folder = require_dir(folder, "COLMAP model folder")
    if not any((folder / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
        raise InputError(
            f"{folder} is not a COLMAP model: no cameras.bin or cameras.txt (point at the "
            "folder holding cameras/images/points3D, e.g. sparse/0)"
        )
    try:
        return pycolmap.Reconstruction(str(folder))
    except Exception as err:  # pycolmap raises plain RuntimeError/ValueError on corrupt files
        raise InputError(f"cannot read COLMAP model {folder}: {err}") from err


def _is_registered(image) -> bool:
    # Recent pycolmap (4.2 here) says has_pose; older releases such as 0.6 say registered.
    return image.has_pose if hasattr(image, "has_pose") else image.registered


def _intrinsics(camera, image_name: str) -> tuple[torch.Tensor, list[float] | None]:
    """OpenCV-convention K (cx - 0.5) and (k1, k2, p1, p2) or None of a pycolmap camera."""
    model = camera.model.name
    p = [float(v) for v in camera.params]
    if model == "SIMPLE_PINHOLE":
        (fx, cx, cy), fy, distortion = p, p[0], None
    elif model == "PINHOLE":
        (fx, fy, cx, cy), distortion = p, None
    elif model == "SIMPLE_RADIAL":
        fx, cx, cy, k = p
        fy, distortion = fx, [k, 0.0, 0.0, 0.0]
    elif model == "RADIAL":
        fx, cx, cy, k1, k2 = p
        fy, distortion = fx, [k1, k2, 0.0, 0.0]
    elif model == "OPENCV":
        fx, fy, cx, cy, *distortion = p
    else:
        raise InputError(
            f"COLMAP camera model {model} (image {image_name}) is not supported; use one of "
            f"{', '.join(_MODEL_IDS)} or undistort the images (colmap image_undistorter)"
        )
    K = torch.tensor(
        [[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    return K, distortion


def _model_rows(cameras: Cameras, names: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
    """COLMAP camera rows (id, model, W, H, params) and image rows (id, q, t, camera id, name)."""
    if len(names) != len(cameras):
        raise InputError(f"got {len(names)} image names for {len(cameras)} cameras")
    if len(set(names)) != len(names):
        raise InputError("image names must be unique in a COLMAP model")
    if bool((cameras.skew != 0).any()):
        raise InputError("COLMAP cannot store skew; cameras.skew must be zero")
    cameras = cameras.to(dtype=torch.float64)
    R_w2c, t_w2c, _ = to_opencv(cameras)
    quaternions = matrix_to_quaternion(R_w2c)
    camera_ids: dict[tuple, int] = {}
    camera_rows, image_rows = [], []
    for i, name in enumerate(names):
        key = _camera_key(cameras, i)
        if key not in camera_ids:
            camera_ids[key] = len(camera_ids) + 1
            camera_rows.append((camera_ids[key], *key))
        qvec = quaternions[i].tolist()
        image_rows.append((i + 1, qvec, t_w2c[i].tolist(), camera_ids[key], name))
    return camera_rows, image_rows


def _camera_key(cameras: Cameras, i: int) -> tuple:
    height, width = (int(v) for v in cameras.image_size[i])
    params = cameras.focal_length[i].tolist() + cameras.principal_point[i].tolist()
    if cameras.distortion is not None and bool((cameras.distortion[i] != 0).any()):
        return ("OPENCV", width, height, tuple(params + cameras.distortion[i].tolist()))
    return ("PINHOLE", width, height, tuple(params))


def _output_paths(folder: str | os.PathLike, ext: str, overwrite: bool) -> list[Path]:
    folder = Path(folder)
    paths = [folder / f"{stem}{ext}" for stem in _MODEL_FILES]
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exist; pass --overwrite to replace")
    folder.mkdir(parents=True, exist_ok=True)
    return paths
