"""Features of rotated crops (upright SIFT through pycolmap, CPU; SuperPoint in matchers.py),
SIFT descriptor matching, and the maps from crop pixels back to the full image.

SIFT is made upright (no orientation assignment) on purpose: like SuperPoint/SuperGlue, the
matcher then only works when two crops show their objects at about the same in-plane angle,
which is what steps 1-3 measure (matches per trial rotation) and then correct (step 4).

Pixel positions are COLMAP's: the corner of the image at (0, 0), pixel centres at +0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Features:
    """Keypoints and descriptors of one image.

    xy: (K, 2) float64 pixel positions (x right, y down, corner origin).
    descriptors: (K, D) float32, unit length (D = 128 for SIFT, 256 for SuperPoint).
    scores: (K,) float32 detector confidences, where the matcher uses them (SuperGlue).
    image_size: (height, width) of the image, where the matcher uses it (SuperGlue).
    """

    xy: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray | None = None
    image_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.xy)


@dataclass
class SiftSettings:
    """max_num_features: per image; peak_threshold: DoG contrast threshold (COLMAP: 1/150);
    first_octave: -1 doubles the image first (COLMAP's default: more, finer features), 0 is
    about 4x faster."""

    max_num_features: int = 2048
    first_octave: int = -1
    peak_threshold: float = 1.0 / 150.0


class UprightSift:
    """A reusable pycolmap SIFT extractor without orientation assignment."""

    def __init__(self, settings: SiftSettings | None = None):
        import pycolmap

        self.settings = settings or SiftSettings()
        options = pycolmap.FeatureExtractionOptions()
        options.num_threads = 1
        options.max_image_size = -1
        options.sift.upright = True
        options.sift.max_num_features = self.settings.max_num_features
        options.sift.peak_threshold = self.settings.peak_threshold
        options.sift.first_octave = self.settings.first_octave
        self._extractor = pycolmap.FeatureExtractor.create(options, pycolmap.Device.cpu)

    def __call__(self, gray: np.ndarray) -> Features:
        """Features of a (H, W) uint8 image."""
        keypoints, descriptors = self._extractor.extract_from_uint8_array(
            np.ascontiguousarray(gray, dtype=np.uint8)
        )
        xy = np.array([(k.x, k.y) for k in keypoints], dtype=np.float64).reshape(-1, 2)
        descriptors = np.asarray(descriptors.data, dtype=np.float32).reshape(len(xy), -1)
        norm = np.linalg.norm(descriptors, axis=1, keepdims=True)
        return Features(xy, descriptors / np.maximum(norm, 1e-12))


def match(a: Features, b: Features, max_ratio: float = 0.8) -> np.ndarray:
    """Mutual nearest neighbours that pass Lowe's ratio test both ways.

    Returns:
        (len(a),) int64: index into ``b`` of each feature of ``a``, -1 where unmatched (the
        layout of SuperGlue's ``matches0``).
    """
    matches0 = np.full(len(a), -1, dtype=np.int64)
    if len(a) < 2 or len(b) < 2:
        return matches0
    similarity = a.descriptors @ b.descriptors.T
    distance = np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0))
    best_ab, ok_ab = _ratio_nearest(distance, max_ratio)
    best_ba, ok_ba = _ratio_nearest(distance.T, max_ratio)
    rows = np.arange(len(a))
    mutual = ok_ab & (best_ba[best_ab] == rows) & ok_ba[best_ab]
    matches0[mutual] = best_ab[mutual]
    return matches0


def _ratio_nearest(distance: np.ndarray, max_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(nearest column per row, whether it passes the ratio test)."""
    two = np.partition(distance, 1, axis=1)[:, :2]
    return np.argmin(distance, axis=1), two[:, 0] < max_ratio * two[:, 1]


def rotation_matrix(size: int, angle_deg: float) -> np.ndarray:
    """(2, 3) OpenCV map from pixel indices of a square ``size`` image to those of the image
    rotated by ``angle_deg`` (counter-clockwise on screen) about its centre."""
    centre = (size - 1) / 2.0
    return cv2.getRotationMatrix2D((centre, centre), float(angle_deg), 1.0)


def rotate_image(image: np.ndarray, angle_deg: float) -> np.ndarray:
    """A square image rotated by ``angle_deg`` about its centre (corners filled with 0)."""
    size = image.shape[0]
    return cv2.warpAffine(
        image, rotation_matrix(size, angle_deg), (size, size), flags=cv2.INTER_LINEAR
    )


def unrotate_points(xy: np.ndarray, size: int, angle_deg: float) -> np.ndarray:
    """(K, 2) positions in the image rotated by :func:`rotate_image` -> the unrotated image."""
    inverse = cv2.invertAffineTransform(rotation_matrix(size, angle_deg))
    index = np.asarray(xy, dtype=np.float64).reshape(-1, 2) - 0.5
    return index @ inverse[:, :2].T + inverse[:, 2] + 0.5


def crop_to_train(xy: np.ndarray, center: np.ndarray, crop_size: int, scale: float) -> np.ndarray:
    """(K, 2) crop pixel positions -> training-image pixel positions.

    Args:
        center: (2,) (row, col) of the crop centre in the raw image, as
            ``object_center_crop_size_*.npy`` stores it (raw = crop - (crop - 1) / 2 + center).
        scale: train_res / raw resolution.
    """
    offset = np.asarray(center, dtype=np.float64)[::-1] - (crop_size - 1) / 2.0
    return (np.asarray(xy, dtype=np.float64) + offset) * scale
