"""Step 0: check the input, write the training images and cut one crop per instance.

Each instance gets its masked full image (others zeroed), that image at train_res
(``temp/resized``, the SfM "images") and a crop_size square crop with its bounding box in the
middle (``temp/cropped``, what the matcher sees). ``object_center_crop_size_{crop}.npy`` maps
the instance index to the raw-image (row, col) of the crop centre, so that
``raw = crop - (crop_size - 1) / 2 + centre``.
"""

from __future__ import annotations

import cv2
import numpy as np

from geomkit.errors import ConfigError, InputError
from geomkit.io import read_image, write_image
from geomkit.io.files import atomic_write
from sfd.preprocess.layout import Layout


def read_raw(layout: Layout, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (S, S, 3) uint8, labels (S, S) int64 0..n) of ``raw/``.

    Raises:
        InputError: unreadable or non-square image, a segmentation of another size, or one
            whose non-zero values do not give exactly ``n`` instances.
    """
    rgb = _to_uint8(read_image(layout.raw_rgb))
    height, width = rgb.shape[:2]
    if height != width:
        raise InputError(
            f"{layout.raw_rgb} is {width}x{height} px; SfD needs a square image (crop it first)"
        )
    seg = _to_uint8(read_image(layout.raw_seg))[..., 0]
    if seg.shape != rgb.shape[:2]:
        raise InputError(f"{layout.raw_seg} is {seg.shape[::-1]} px but the image {width}x{height}")
    values = np.unique(seg[seg > 0])
    if len(values) != n:
        raise InputError(
            f"{layout.raw_seg} holds {len(values)} instance values {values.tolist()[:12]} but "
            f"--instances is {n} (background 0, instance k stored as round(k/{n}*255))"
        )
    labels = np.searchsorted(values, seg) + 1
    labels[seg == 0] = 0
    return rgb, labels.astype(np.int64)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_segmentation(labels: np.ndarray, n: int) -> np.ndarray:
    """(H, W) uint8 round(k / n * 255), the authors' instance_seg.png values."""
    return np.rint(labels.astype(np.float64) / n * 255.0).astype(np.uint8)


def crop_placement(mask: np.ndarray, crop_size: int, index: int) -> tuple[slice, slice, tuple]:
    """Bounding box of ``mask`` and the crop centre (row, col) in the raw image.

    Raises:
        InputError: the box does not fit a crop_size square.
    """
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if r1 - r0 > crop_size or c1 - c0 > crop_size:
        raise InputError(
            f"instance {index} does not fit a {crop_size} px crop (its box is "
            f"{r1 - r0}x{c1 - c0} px); pass a larger --crop_size"
        )
    top, left = (crop_size - (r1 - r0)) // 2, (crop_size - (c1 - c0)) // 2
    half = (crop_size - 1) / 2.0
    centre = (float(r0 - top + half), float(c0 - left + half))
    return slice(r0, r1), slice(c0, c1), centre


def cut(image: np.ndarray, box: tuple[slice, slice], crop_size: int) -> np.ndarray:
    """The boxed part of ``image`` in the middle of a black crop_size square."""
    part = image[box]
    canvas = np.zeros((crop_size, crop_size) + image.shape[2:], dtype=image.dtype)
    top, left = (crop_size - part.shape[0]) // 2, (crop_size - part.shape[1]) // 2
    canvas[top : top + part.shape[0], left : left + part.shape[1]] = part
    return canvas


def run(layout: Layout, n: int, train_res: int) -> None:
    """Write step 0's files (see the module docstring)."""
    rgb, labels = read_raw(layout, n)
    size = rgb.shape[0]
    if train_res > size:
        raise ConfigError(
            f"--train_res {train_res} is larger than the {size} px input {layout.raw_rgb}; "
            "the input should be at least train_res (about 4x is best)"
        )
    placements = [crop_placement(labels == i + 1, layout.crop_size, i) for i in range(n)]
    small = (train_res, train_res)
    small_labels = cv2.resize(labels.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST)
    write_image(layout.train / "000_rgb.png", cv2.resize(rgb, small, interpolation=cv2.INTER_AREA))
    write_image(layout.train / "000_instance_seg.png", encode_segmentation(small_labels, n))
    write_image(layout.train / "000_mask.png", small_labels > 0)
    centres = {}
    for i, (rows, cols, centre) in enumerate(placements):
        inside = labels == i + 1
        masked = np.where(inside[..., None], rgb, 0).astype(np.uint8)
        write_image(layout.masked(i), masked)
        write_image(layout.mask(i), inside)
        write_image(layout.resized(i), cv2.resize(masked, small, interpolation=cv2.INTER_AREA))
        write_image(layout.cropped(i), cut(masked, (rows, cols), layout.crop_size))
        write_image(layout.cropped_mask(i), cut(inside, (rows, cols), layout.crop_size))
        centres[i] = centre
    with atomic_write(layout.centers) as handle:
        np.save(handle, centres, allow_pickle=True)
    print(f"step 0: {n} instances cropped to {layout.crop_size} px, training image {train_res} px")


def read_centres(layout: Layout, n: int) -> dict[int, np.ndarray]:
    """Instance index -> (row, col) crop centre from step 0."""
    try:
        centres = np.load(layout.centers, allow_pickle=True).item()
    except (OSError, ValueError, AttributeError) as err:
        raise InputError(f"{layout.centers} is not step 0's centre dict ({err})") from None
    missing = [i for i in range(n) if i not in centres]
    if missing:
        raise InputError(f"{layout.centers} has no centre for instances {missing}; rerun step 0")
    return {i: np.asarray(centres[i], dtype=np.float64) for i in range(n)}


def read_gray(path) -> np.ndarray:
    """(S, S) uint8 grey image."""
    return cv2.cvtColor(_to_uint8(read_image(path)), cv2.COLOR_RGB2GRAY)
