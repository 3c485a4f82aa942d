"""geomkit :class:`~geomkit.cameras.Cameras` <-> pycolmap cameras, poses and reconstructions.

COLMAP's pixel convention is ours (corner origin), so principal points are copied unchanged;
poses are ``cam_from_world`` in OpenCV axes (see :mod:`geomkit.cameras.colmap`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from geomkit.cameras import Cameras, to_opencv
from geomkit.errors import InputError

# Skew COLMAP cannot store; smaller skew (e.g. the rounding noise of decomposed IDR matrices)
# is dropped, as a fraction of the focal length.
_MAX_DROPPED_SKEW = 1e-3


def colmap_camera(cameras: Cameras, i: int, camera_id: int):
    """``pycolmap.Camera`` of camera ``i``: PINHOLE, or OPENCV when it has distortion.

    Raises:
        InputError: skew larger than 1e-3 of the focal length (COLMAP has no skew).
    """
    import pycolmap

    cameras = cameras.to(dtype=torch.float64)
    fx, fy = cameras.focal_length[i].tolist()
    cx, cy = cameras.principal_point[i].tolist()
    if abs(float(cameras.skew[i])) > _MAX_DROPPED_SKEW * fx:
        raise InputError(
            f"camera {i} has skew {float(cameras.skew[i]):.4g} px, which COLMAP cannot model; "
            "resample the images to zero skew first"
        )
    height, width = (int(v) for v in cameras.image_size[i])
    params = [fx, fy, cx, cy]
    model = "PINHOLE"
    if cameras.distortion is not None and bool((cameras.distortion[i] != 0).any()):
        model, params = "OPENCV", params + cameras.distortion[i].tolist()
    return pycolmap.Camera(
        camera_id=camera_id, model=model, width=width, height=height, params=params
    )


def camera_model_name(cameras: Cameras) -> str:
    """'OPENCV' when any camera has non-zero distortion, else 'PINHOLE'."""
    has_distortion = cameras.distortion is not None and bool((cameras.distortion != 0).any())
    return "OPENCV" if has_distortion else "PINHOLE"


def cam_from_world(cameras: Cameras, i: int):
    """``pycolmap.Rigid3d`` world-to-camera pose (OpenCV axes) of camera ``i``."""
    import pycolmap

    R_w2c, t_w2c, _ = to_opencv(cameras.to(dtype=torch.float64))
    matrix = np.concatenate([R_w2c[i].numpy(), t_w2c[i].numpy()[:, None]], axis=1)
    return pycolmap.Rigid3d(matrix)


def known_pose_reconstruction(
    cameras: Cameras, names: Sequence[str], image_ids: Sequence[int], camera_ids: Sequence[int]
):
    """A ``pycolmap.Reconstruction`` holding the given cameras and poses, no points.

    Image and camera ids must be those of the feature database (one camera per image, a trivial
    rig per camera and a trivial frame per image, as ``pycolmap.extract_features`` creates
    them with ``CameraMode.PER_IMAGE``).
    """
    import pycolmap

    reconstruction = pycolmap.Reconstruction()
    for i, name in enumerate(names):
        reconstruction.add_camera_with_trivial_rig(colmap_camera(cameras, i, int(camera_ids[i])))
        image = pycolmap.Image(name=name, camera_id=int(camera_ids[i]), image_id=int(image_ids[i]))
        reconstruction.add_image_with_trivial_frame(image, cam_from_world(cameras, i))
    return reconstruction


def cameras_from_reconstruction(reconstruction, names: Sequence[str]) -> Cameras:
    """float64 Cameras of the named (registered) images of a reconstruction, in that order."""
    from geomkit.cameras import from_colmap

    all_cameras, all_names = from_colmap(reconstruction, dtype=torch.float64)
    index = {name: i for i, name in enumerate(all_names)}
    missing = [name for name in names if name not in index]
    if missing:
        raise InputError(f"images not registered in the reconstruction: {missing[:5]}")
    return all_cameras[[index[name] for name in names]]
