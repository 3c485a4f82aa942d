"""Accuracy of the SfM object poses and camera against ground truth (synthetic scenes).

The predicted world is a similarity S (scale s, rotation R_s, translation t_s) of the true
one: the camera C' = S C and the instance motions O_i = S M_i S^-1, with M_i = G_i G_0^-1 the
true motion from instance 0 to instance i. SfD defines its world by the camera, so R_s is the
camera's (R_s = R_C' R_C^T; the instance rotations alone would leave it free about a shared
axis, e.g. copies turned about the ground normal); s and t_s are fitted by least squares to the
camera centre c' = s R_s c + t_s and the instance translations
t'_i = s R_s t_i + (I - R_s R_i R_s^T) t_s. The errors are what remains: each instance's
rotation as seen from the camera, and its translation in ground-truth units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PoseErrors:
    """rotation_deg, translation: (N,) per instance; translation is in ground-truth units
    (divide by ``scene_size``, the median distance of the instances' origins from instance
    0's, for a relative error). scale: the fitted s."""

    rotation_deg: np.ndarray
    translation: np.ndarray
    scene_size: float
    scale: float


def relative_pose_errors(
    pred: np.ndarray, pred_c2w: np.ndarray, true_object_to_world: np.ndarray, true_c2w: np.ndarray
) -> PoseErrors:
    """Errors of predicted object-to-world poses O_i (N, 4, 4) and camera-to-world (4, 4)
    against the true G_i (N, 4, 4) and camera (4, 4) (any camera axes, the same for both)."""
    true = true_object_to_world @ np.linalg.inv(true_object_to_world[0])
    R_s = pred_c2w[:3, :3] @ true_c2w[:3, :3].T
    aligned_R = R_s @ true[:, :3, :3] @ R_s.T
    rows = [np.concatenate([(R_s @ true_c2w[:3, 3])[:, None], np.eye(3)], axis=1)]
    rows += [
        np.concatenate([(R_s @ t)[:, None], np.eye(3) - r], axis=1)
        for t, r in zip(true[:, :3, 3], aligned_R, strict=True)
    ]
    A = np.concatenate(rows)
    b = np.concatenate([pred_c2w[:3, 3], pred[:, :3, 3].reshape(-1)])
    x, *_ = np.linalg.lstsq(A, b, rcond=None)
    scale = float(x[0])
    residual = (b - A @ x)[3:].reshape(-1, 3)
    cos = (np.einsum("nij,nij->n", pred[:, :3, :3], aligned_R) - 1.0) / 2.0
    origins = true_object_to_world[:, :3, 3]
    distances = np.linalg.norm(origins - origins[0], axis=1)
    return PoseErrors(
        rotation_deg=np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))),
        translation=np.linalg.norm(residual, axis=1) / abs(scale),
        scene_size=float(np.median(distances[1:])) if len(distances) > 1 else 0.0,
        scale=scale,
    )
