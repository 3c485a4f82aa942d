"""OpenCV cameras: ``x_cam = R_w2c x_world + t_w2c`` (column vectors), ``K`` in OpenCV pixels.

OpenCV camera axes are x right, y down, z forward, i.e. ``(-X, -Y, Z)`` of our view space, and
its pixel convention puts the centre of the top-left pixel at (0, 0), so ``cx_ours = cx_K + 0.5``
(same for cy).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomkit.cameras.base import (
    Cameras,
    as_float_tensor,
    batch_image_size,
    find_non_rotation,
    require_shape,
)
from geomkit.errors import InputError

# Diagonal of the axis flip between OpenCV camera space and our view space (its own inverse).
_FLIP_XY = (-1.0, -1.0, 1.0)


class OpenCVCameras(NamedTuple):
    """Cameras in OpenCV form (see :func:`to_opencv`); distortion stays in ``Cameras.distortion``.

    Attributes:
        R_w2c: (N, 3, 3) world-to-camera rotation, column vectors, OpenCV axes.
        t_w2c: (N, 3) world-to-camera translation.
        K: (N, 3, 3) intrinsics, OpenCV pixel convention (top-left pixel centre at (0, 0)).
    """

    R_w2c: torch.Tensor
    t_w2c: torch.Tensor
    K: torch.Tensor


def from_opencv(R_w2c, t_w2c, K, image_size, distortion=None) -> Cameras:
    """Cameras from OpenCV extrinsics and intrinsics (as used by cv2.projectPoints).

    Args:
        R_w2c: (N, 3, 3) float world-to-camera rotation, ``x_cam = R_w2c @ x_world + t_w2c``.
        t_w2c: (N, 3) float translation.
        K: (N, 3, 3) ``[[fx, skew, cx], [0, fy, cy], [0, 0, 1]]`` in OpenCV pixels (centre of
            the top-left pixel at (0, 0)); a K scaled by K[2, 2] != 1 is normalised.
        image_size: (N, 2) or (2,) int (H, W).
        distortion: (N, 4) OpenCV (k1, k2, p1, p2), or None.

    Returns:
        Cameras with the dtype of R_w2c (float32 for integer input).
    """
    R_w2c = as_float_tensor(R_w2c)
    dtype, device = R_w2c.dtype, R_w2c.device
    t_w2c = as_float_tensor(t_w2c, dtype, device)
    K = as_float_tensor(K, dtype, device)
    n = R_w2c.shape[0] if R_w2c.dim() == 3 else -1
    require_shape(R_w2c, (None, 3, 3), "R_w2c")
    require_shape(t_w2c, (n, 3), "t_w2c")
    require_shape(K, (n, 3, 3), "K")
    K = _normalized_K(K)
    bad = find_non_rotation(R_w2c)
    if bad is not None:
        raise InputError(f"R_w2c{bad}; pass the world-to-camera rotation of x_cam = R x + t")
    flip = R_w2c.new_tensor(_FLIP_XY)
    if distortion is not None:
        distortion = as_float_tensor(distortion, dtype, device)
        require_shape(distortion, (n, 4), "distortion")
    return Cameras(
        R=R_w2c.transpose(1, 2) * flip,
        T=t_w2c * flip,
        focal_length=torch.stack((K[:, 0, 0], K[:, 1, 1]), -1),
        principal_point=K[:, :2, 2] + 0.5,
        image_size=batch_image_size(image_size, n, device),
        skew=K[:, 0, 1].clone(),
        distortion=distortion,
    )


def to_opencv(cameras: Cameras) -> OpenCVCameras:
    """OpenCV extrinsics and K of ``cameras`` (inverse of :func:`from_opencv`).

    Returns:
        OpenCVCameras(R_w2c (N, 3, 3), t_w2c (N, 3), K (N, 3, 3)), dtype of the cameras. The
        distortion coefficients are ``cameras.distortion`` unchanged (same order as OpenCV).
    """
    flip = cameras.R.new_tensor(_FLIP_XY)
    R_w2c = (cameras.R * flip).transpose(1, 2)
    return OpenCVCameras(R_w2c=R_w2c, t_w2c=cameras.T * flip, K=cameras.K_opencv())


def _normalized_K(K: torch.Tensor) -> torch.Tensor:
    scale = K[:, 2, 2]
    if bool((scale == 0).any()):
        raise InputError(
            "K[:, 2, 2] must be non-zero (expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]])"
        )
    K = K / scale[:, None, None]
    lower = torch.stack((K[:, 1, 0], K[:, 2, 0], K[:, 2, 1]), -1)
    if bool((lower.abs() > 1e-6 * K[:, 0, 0, None].abs()).any()):
        raise InputError(
            "K must be upper triangular, [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]; "
            "a transposed K is a common cause"
        )
    return K
