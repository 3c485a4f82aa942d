"""IDR / VolSDF / NeuS ``cameras.npz``: ``world_mat_i`` = K [R | t] (4x4) and ``scale_mat_i``.

``P = world_mat @ scale_mat`` projects points of the NORMALISED frame (where the object fits
in a sphere, radius 1 or 3 by method) to OpenCV pixels; ``scale_mat`` maps normalised ->
world. The originals decompose ``P[:3]`` with ``cv2.decomposeProjectionMatrix``:
``K = K / K[2, 2]`` (skew kept), ``R`` world-to-camera, camera centre ``c[:3] / c[3]``. The
cameras returned here live in the normalised frame, with K shifted by +0.5 px into our pixel
convention: the originals' rays through integer pixel coordinates of their K are ours through
pixel centres, ``geomkit.rays.pixel_grid`` with its default ``pixel_offset=0.5``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from geomkit.cameras.base import Cameras, as_float_tensor, batch_image_size, require_shape
from geomkit.cameras.opencv import from_opencv, to_opencv
from geomkit.errors import InputError


def from_idr(world_mats, scale_mats, image_size) -> Cameras:
    """Cameras in the normalised frame from IDR-style projection matrices.

    Args:
        world_mats: (N, 4, 4) (or (N, 3, 4)) ``K [R | t]`` mapping world points to OpenCV
            pixels (homogeneous).
        scale_mats: (N, 4, 4) normalised -> world similarity, or None for the identity (then
            the cameras are in the world frame).
        image_size: (N, 2) or (2,) int (H, W).

    Returns:
        Cameras (dtype of world_mats; float32 for integer input) such that
        ``cameras.project(x_norm)`` equals the pixel of ``P @ [x_norm, 1]`` plus 0.5.
    """
    world_mats = as_float_tensor(world_mats)
    dtype, device = world_mats.dtype, world_mats.device
    if world_mats.dim() != 3 or world_mats.shape[1:] not in ((4, 4), (3, 4)):
        raise InputError(f"world_mats must have shape (N, 4, 4), got {tuple(world_mats.shape)}")
    n = world_mats.shape[0]
    projections = world_mats[:, :3].to(torch.float64)
    if scale_mats is not None:
        scale_mats = as_float_tensor(scale_mats, torch.float64, device)
        require_shape(scale_mats, (n, 4, 4), "scale_mats")
        projections = projections @ scale_mats
    require_shape(projections, (n, 3, 4), "world_mats @ scale_mats")
    decomposed = [_decompose(P, i) for i, P in enumerate(projections.cpu().numpy())]
    K, R_w2c, centres = (
        torch.from_numpy(np.stack(parts)) for parts in zip(*decomposed, strict=True)
    )
    t_w2c = -(R_w2c @ centres[..., None])[..., 0]
    cameras = from_opencv(R_w2c, t_w2c, K, batch_image_size(image_size, n))
    return cameras.to(device=device, dtype=dtype)


def to_idr(cameras: Cameras, scale_mats=None) -> torch.Tensor:
    """IDR ``world_mat``s: ``K4 @ [[R_w2c, t_w2c], [0, 0, 0, 1]] @ inv(scale_mat)``.

    Args:
        cameras: N cameras in the normalised frame, without distortion (IDR has none).
        scale_mats: (N, 4, 4) normalised -> world, or None for the identity.

    Returns:
        (N, 4, 4) world_mats (dtype of the cameras), K in OpenCV pixels (c - 0.5), skew kept.
    """
    if cameras.distortion is not None and bool((cameras.distortion != 0).any()):
        raise InputError("IDR cameras cannot store distortion; undistort the images first")
    R_w2c, t_w2c, K = to_opencv(cameras)
    n = len(cameras)
    extrinsics = cameras.R.new_zeros(n, 4, 4)
    extrinsics[:, :3, :3] = R_w2c
    extrinsics[:, :3, 3] = t_w2c
    extrinsics[:, 3, 3] = 1.0
    K4 = torch.eye(4, dtype=cameras.dtype, device=cameras.device).repeat(n, 1, 1)
    K4[:, :3, :3] = K
    world_mats = K4 @ extrinsics
    if scale_mats is not None:
        scale_mats = as_float_tensor(scale_mats, cameras.dtype, cameras.device)
        require_shape(scale_mats, (n, 4, 4), "scale_mats")
        world_mats = world_mats @ torch.linalg.inv(scale_mats)
    return world_mats


def _decompose(P: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K normalised to K[2, 2] = 1 with positive diagonal, R_w2c proper rotation, centre)."""
    # P and -P are the same projective camera; pick the sign that makes K R a proper rotation
    # times an upper-triangular matrix with positive diagonal.
    det = np.linalg.det(P[:, :3])
    if det == 0:
        raise InputError(f"world_mat {index} (times scale_mat) is singular: not a camera")
    P = P * np.sign(det)
    K, R, centre_h = cv2.decomposeProjectionMatrix(P)[:3]
    signs = np.sign(np.diag(K))
    K = K * signs[None, :]
    R = R * signs[:, None]
    K = K / K[2, 2]
    return K, R, centre_h[:3, 0] / centre_h[3, 0]
