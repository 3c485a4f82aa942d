"""Images, masks, 16-bit depth PNGs and EXR through OpenCV, as RGB float arrays.

OpenCV works in BGR(A) order; everything here takes and returns RGB(A).
"""

from __future__ import annotations

import os

# OpenCV keeps its EXR codec off unless this is set (a hardening against untrusted files), and
# reads the switch only once, so it is set before cv2 is imported by this module.
os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from geomkit.errors import InputError  # noqa: E402
from geomkit.io.files import atomic_write, require_file  # noqa: E402

_IMAGE_SUFFIXES = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg"}
_UINT16_MAX = np.iinfo(np.uint16).max


def read_image(
    path: str | os.PathLike, with_alpha: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """Read an image file as RGB float32 in [0, 1].

    Args:
        path: any format OpenCV decodes (PNG, JPEG, ...); 8-bit values are divided by 255,
            16-bit by 65535, float images kept as they are. Grey is repeated to 3 channels.
        with_alpha: also return the alpha channel.

    Returns:
        rgb (H, W, 3) float32; with ``with_alpha``, the pair (rgb, alpha) with alpha
        (H, W) float32 in [0, 1], or None when the file has no alpha channel.

    Raises:
        InputError: missing, unreadable or corrupt file, or an unsupported pixel type.
    """
    pixels = _to_float(_decode(path), path)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels in (1, 2):
        rgb = np.repeat(pixels[:, :, :1], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(pixels[:, :, 2::-1])
    if not with_alpha:
        return rgb
    alpha = pixels[:, :, -1] if channels in (2, 4) else None
    return rgb, alpha


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an 8-bit PNG or JPEG (by the suffix of ``path``), atomically.

    Args:
        path: target file ending in .png, .jpg or .jpeg; replaced if it exists.
        image: (H, W) or (H, W, 1) grey, (H, W, 3) RGB or (H, W, 4) RGBA (PNG only); uint8,
            bool (a mask: 0 or 255) or float in [0, 1] (clipped, then rounded to the nearest
            of 256 levels).
    """
    suffix = _IMAGE_SUFFIXES.get(_suffix(path))
    if suffix is None:
        raise ValueError(f"{path}: image suffix must be one of {', '.join(_IMAGE_SUFFIXES)}")
    pixels = _to_uint8(np.asarray(image))
    if pixels.ndim == 3 and pixels.shape[2] == 4 and suffix == ".jpg":
        raise ValueError(f"{path}: JPEG has no alpha channel; write RGBA images as .png")
    _encode(path, suffix, _rgb_to_bgr(pixels))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask image: a pixel is inside when its brightest colour channel exceeds 0.5.

    8-bit values above 127 and 16-bit values above 32767 are inside, except in an integer
    image whose largest value is 1: that is a 0/1 mask (as NU-MCC's seg.png), and 1 is inside.

    Args:
        path: image file, grey or colour; an alpha channel is not used.

    Returns:
        (H, W) bool.

    Raises:
        InputError: missing, unreadable or corrupt file, or an unsupported pixel type.
    """
    pixels = _decode(path)
    if pixels.ndim == 3:
        colour_channels = 1 if pixels.shape[2] == 2 else 3
        pixels = pixels[:, :, :colour_channels].max(axis=2)
    if pixels.dtype.kind == "u" and pixels.max(initial=0) == 1:
        return pixels > 0
    return _to_float(pixels, path) > 0.5


def read_depth_png(path: str | os.PathLike, scale: float = 1000.0) -> np.ndarray:
    """Read a 16-bit single-channel depth PNG as metres: value / scale.

    Args:
        path: the PNG.
        scale: stored units per metre (1000 = millimetres).

    Returns:
        (H, W) float32 depth; 0 stays 0 and means no depth.

    Raises:
        InputError: missing or corrupt file, not 16-bit, or more than one channel.
    """
    pixels = _decode(path)
    if pixels.dtype != np.uint16:
        bits = pixels.dtype.itemsize * 8
        raise InputError(
            f"{path}: depth PNG is {bits}-bit {pixels.dtype}; depth must be stored as 16-bit "
            "(uint16) values, e.g. millimetres"
        )
    if pixels.ndim != 2:
        raise InputError(
            f"{path}: depth PNG has {pixels.shape[2]} channels; depth must be one channel"
        )
    return (pixels / np.float32(scale)).astype(np.float32)


def write_depth_png(path: str | os.PathLike, depth: np.ndarray, scale: float = 1000.0) -> None:
    """Write depth in metres as a 16-bit PNG of round(depth * scale), atomically.

    Args:
        path: target .png, replaced if it exists.
        depth: (H, W) float metres, >= 0; 0 means no depth.
        scale: stored units per metre (1000 = millimetres); the depth resolution is 1 / scale.

    Raises:
        ValueError: NaN, negative values, or values whose depth * scale exceeds 65535.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    if _suffix(path) != ".png":
        raise ValueError(f"{path}: a depth image must be written as .png")
    if np.isnan(depth).any():
        raise ValueError("depth contains NaN; use 0 for pixels without depth")
    stored = np.round(depth * scale)
    if depth.size and (stored.min() < 0 or stored.max() > _UINT16_MAX):
        raise ValueError(
            f"depth must lie in [0, {_UINT16_MAX / scale:g}] m to be stored as uint16 at scale "
            f"{scale:g}; got {depth.min():g} to {depth.max():g}"
        )
    _encode(path, ".png", stored.astype(np.uint16))


def read_exr(path: str | os.PathLike) -> np.ndarray:
    """Read an OpenEXR image as float32, channels in RGB(A) order.

    Args:
        path: the .exr file.

    Returns:
        (H, W, C) float32, C = 1 (grey), 3 (RGB) or 4 (RGBA); values as stored (linear).

    Raises:
        InputError: missing or corrupt file, or an OpenCV build without the EXR codec.
    """
    _require_exr_codec(require_file(path, "EXR file"), "read")
    pixels = _decode(path).astype(np.float32, copy=False)
    if pixels.ndim == 2:
        return pixels[:, :, None]
    return _rgb_to_bgr(pixels) if pixels.shape[2] in (3, 4) else pixels


def write_exr(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a float image as OpenEXR (32-bit float channels), atomically.

    Args:
        path: target .exr, replaced if it exists.
        array: (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA float; stored as float32.

    Raises:
        InputError: an OpenCV build without the EXR codec (the message says how to get one).
    """
    pixels = np.asarray(array, dtype=np.float32)
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (1, 3, 4))):
        raise ValueError(f"EXR image must be (H, W) or (H, W, 1|3|4), got {pixels.shape}")
    _require_exr_codec(path, "write")
    _encode(path, ".exr", _rgb_to_bgr(pixels))


def _suffix(path: str | os.PathLike) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _decode(path: str | os.PathLike) -> np.ndarray:
    """The file's pixels as OpenCV decodes them unchanged: (H, W) or (H, W, C), BGR(A)."""
    path = require_file(path, "image")
    encoded = np.fromfile(path, dtype=np.uint8)
    try:
        pixels = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if len(encoded) else None
    except cv2.error as err:
        raise InputError(f"{path}: OpenCV cannot decode the image: {err}") from None
    if pixels is None:
        raise InputError(f"{path}: cannot decode the image (corrupt, empty or not an image)")
    return pixels


def _encode(path: str | os.PathLike, suffix: str, pixels: np.ndarray) -> None:
    ok, encoded = cv2.imencode(suffix, pixels)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {pixels.dtype} image as {suffix}")
    with atomic_write(path, "wb") as handle:
        handle.write(encoded.tobytes())


def _to_float(pixels: np.ndarray, path) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / float(_UINT16_MAX)
    if pixels.dtype.kind == "f":
        return pixels.astype(np.float32, copy=False)
    raise InputError(f"{path}: unsupported pixel type {pixels.dtype}; expected 8- or 16-bit")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if image.dtype.kind != "f":
        raise TypeError(f"image must be uint8, bool or float in [0, 1], got {image.dtype}")
    if np.isnan(image).any():
        raise ValueError("image contains NaN")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _rgb_to_bgr(pixels: np.ndarray) -> np.ndarray:
    """Swap the first and third channel of (H, W, 3|4) arrays (the swap is its own inverse).

    Checks the shape: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
    """
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
        return pixels
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(
            f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {pixels.shape}"
        )
    order = [2, 1, 0, 3][: pixels.shape[2]]
    return np.ascontiguousarray(pixels[:, :, order])


def _require_exr_codec(path, action: str) -> None:
    if cv2.haveImageWriter("probe.exr"):
        return
    raise InputError(
        f"cannot {action} {path}: this OpenCV build ({cv2.__version__}) has no OpenEXR codec; "
        "the opencv-python(-headless) 5.x wheels are built without it: install "
        "'opencv-python-headless>=4.10,<5'"
    )
