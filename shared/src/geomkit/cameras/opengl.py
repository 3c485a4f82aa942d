"""OpenGL / Blender camera-to-world poses (camera x right, y up, z backward).

Our view space is +X left, +Y up, +Z forward, i.e. ``(-x, y, -z)`` of OpenGL camera space.
Intrinsics are given in our pixel convention (top-left pixel centre at (0.5, 0.5)).
"""

from __future__ import annotations

import torch

from geomkit.cameras.base import (
    Cameras,
    as_float_tensor,
    batch_image_size,
    find_non_rotation,
    require_shape,
)
from geomkit.errors import InputError

# Diagonal of the axis flip between OpenGL camera space and our view space (its own inverse).
_FLIP_XZ = (-1.0, 1.0, -1.0)


def from_opengl_c2w(
    c2w_opengl,
    focal_length,
    principal_point,
    image_size,
    skew=None,
    distortion=None,
) -> Cameras:
    """Cameras from OpenGL/Blender camera-to-world matrices.

    Args:
        c2w_opengl: (N, 4, 4) or (N, 3, 4) float ``[R_c2w | camera centre]``, camera axes x right,
            y up, z backward (NeRF/Blender/nerfstudio ``transform_matrix``). The rotation part
            must be orthonormal (no scale).
        focal_length: (N, 2) (fx, fy) pixels.
        principal_point: (N, 2) (cx, cy) pixels, our convention (top-left pixel centre at 0.5).
        image_size: (N, 2) or (2,) int (H, W).
        skew: (N,) pixels or None.
        distortion: (N, 4) OpenCV (k1, k2, p1, p2) or None.

    Returns:
        Cameras with the dtype of c2w_opengl (float32 for integer input).
    """
    c2w_opengl = as_float_tensor(c2w_opengl)
    dtype, device = c2w_opengl.dtype, c2w_opengl.device
    if c2w_opengl.dim() != 3 or c2w_opengl.shape[1:] not in ((4, 4), (3, 4)):
        raise InputError(
            f"c2w_opengl must have shape (N, 4, 4) or (N, 3, 4), got {tuple(c2w_opengl.shape)}"
        )
    if not bool(torch.isfinite(c2w_opengl).all()):
        raise InputError("c2w_opengl has non-finite values (NaN or inf)")
    n = c2w_opengl.shape[0]
    rotation_c2w = c2w_opengl[:, :3, :3]
    centre = c2w_opengl[:, :3, 3]
    bad = find_non_rotation(rotation_c2w)
    if bad is not None:
        raise InputError(
            f"c2w_opengl{bad}: remove any scale from the pose and check the axis convention "
            "(OpenGL: x right, y up, z backward)"
        )
    R = rotation_c2w * rotation_c2w.new_tensor(_FLIP_XZ)
    optional = {}
    for name, value, shape in (("skew", skew, (n,)), ("distortion", distortion, (n, 4))):
        if value is not None:
            optional[name] = as_float_tensor(value, dtype, device)
            require_shape(optional[name], shape, name)
    focal_length = as_float_tensor(focal_length, dtype, device)
    principal_point = as_float_tensor(principal_point, dtype, device)
    require_shape(focal_length, (n, 2), "focal_length")
    require_shape(principal_point, (n, 2), "principal_point")
    return Cameras(
        R=R,
        T=-(centre[:, None, :] @ R)[:, 0],
        focal_length=focal_length,
        principal_point=principal_point,
        image_size=batch_image_size(image_size, n, device),
        **optional,
    )


def to_opengl_c2w(cameras: Cameras) -> torch.Tensor:
    """(N, 4, 4) OpenGL camera-to-world matrices of ``cameras`` (inverse of from_opengl_c2w).

    The intrinsics are ``cameras.focal_length``, ``principal_point``, ``skew``, ``distortion``.
    """
    c2w = cameras.R.new_zeros(len(cameras), 4, 4)
    c2w[:, :3, :3] = cameras.R * cameras.R.new_tensor(_FLIP_XZ)
    c2w[:, :3, 3] = cameras.camera_center()
    c2w[:, 3, 3] = 1.0
    return c2w
