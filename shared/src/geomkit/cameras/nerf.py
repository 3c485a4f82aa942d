"""NeRF ``transforms.json`` (Blender synthetic, instant-ngp, nerfstudio).

Keys understood, globally or per frame (a frame's keys override the global ones):

* ``transform_matrix`` (per frame): 4x4 OpenGL camera-to-world (x right, y up, z backward).
* ``file_path`` (per frame), returned as written.
* ``w``, ``h``: image size in pixels.
* ``fl_x``, ``fl_y``: focal lengths in pixels (``fl_y`` defaults to ``fl_x``); otherwise
  ``camera_angle_x`` (and ``camera_angle_y``): ``f = 0.5 * W / tan(0.5 * angle_x)``,
  ``fy = 0.5 * H / tan(0.5 * angle_y)`` (``fy = fx`` without ``camera_angle_y``). ``fl_x`` wins
  over ``camera_angle_x`` when both are present.
* ``cx``, ``cy``: principal point in the continuous convention (already ours); defaults to the
  image centre ``(W/2, H/2)``, which is also what the original Blender loaders use.
* ``k1``, ``k2``, ``p1``, ``p2``: OpenCV distortion (missing ones are 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from geomkit.cameras.base import Cameras
from geomkit.cameras.opengl import from_opengl_c2w, to_opengl_c2w
from geomkit.errors import InputError

_DISTORTION_KEYS = ("k1", "k2", "p1", "p2")
_UNSUPPORTED_DISTORTION_KEYS = ("k3", "k4", "k5", "k6")
_SUPPORTED_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")


def from_nerf_transforms(
    meta: Mapping, image_size=None, dtype: torch.dtype = torch.float32
) -> tuple[Cameras, list[str]]:
    """Cameras and file paths of a parsed ``transforms.json``.

    Args:
        meta: the JSON object (dict) of a transforms file.
        image_size: (H, W), or (N, 2) per frame, used when the file has no ``w``/``h``
            (Blender synthetic files); when both exist they must agree.
        dtype: float dtype of the cameras.

    Returns:
        (cameras (N = number of frames, in file order), file_paths list[str] as written).

    Raises:
        InputError: no ``frames``, a frame without ``file_path``/``transform_matrix``, no focal
            length key, unknown image size, a non-numeric value, or an unsupported camera model.
    """
    if not isinstance(meta, Mapping):
        raise InputError(f"transforms must be a JSON object, got {type(meta).__name__}")
    frames = meta.get("frames")
    if not isinstance(frames, Sequence) or isinstance(frames, str) or len(frames) == 0:
        raise InputError("transforms has no 'frames' list (or it is empty)")
    defaults = {key: value for key, value in meta.items() if key != "frames"}
    sizes = _given_image_sizes(image_size, len(frames))
    poses, paths, intrinsics = [], [], []
    for i, frame in enumerate(frames):
        if not isinstance(frame, Mapping):
            raise InputError(f"transforms frames[{i}] must be an object")
        keys = {**defaults, **frame}
        where = f"frames[{i}]"
        paths.append(_required(keys, "file_path", where))
        poses.append(_pose(_required(keys, "transform_matrix", where), where))
        intrinsics.append(_intrinsics(keys, sizes[i], where))
    distortions = [values["distortion"] for values in intrinsics]
    has_distortion = any(d is not None for d in distortions)

    def column(name: str) -> torch.Tensor:
        return torch.tensor([values[name] for values in intrinsics], dtype=torch.float64)

    cameras = from_opengl_c2w(
        torch.tensor(poses, dtype=torch.float64),
        column("focal_length"),
        column("principal_point"),
        column("image_size"),
        distortion=(
            torch.tensor([d or [0.0] * 4 for d in distortions], dtype=torch.float64)
            if has_distortion
            else None
        ),
    ).to(dtype=dtype)
    return cameras, [str(path) for path in paths]


def to_nerf_transforms(cameras: Cameras, file_paths: Sequence[str]) -> dict:
    """A ``transforms.json`` object (instant-ngp/nerfstudio keys) for ``cameras``.

    Intrinsics shared by all cameras are written once at the top level, otherwise per frame.

    Args:
        cameras: N cameras with zero skew (transforms.json cannot store skew).
        file_paths: N paths, written as given.

    Returns:
        dict with ``camera_model`` "OPENCV", ``fl_x, fl_y, cx, cy, w, h``, ``k1, k2, p1, p2``
        when ``cameras.distortion`` is set, and ``frames`` (file_path, transform_matrix as
        OpenGL camera-to-world 4x4 lists).
    """
    if len(file_paths) != len(cameras):
        raise ValueError(f"got {len(file_paths)} file_paths for {len(cameras)} cameras")
    if bool((cameras.skew != 0).any()):
        raise ValueError("transforms.json cannot represent skew; cameras.skew must be zero")
    per_camera = [_intrinsics_keys(cameras, i) for i in range(len(cameras))]
    shared = all(keys == per_camera[0] for keys in per_camera)
    c2w = to_opengl_c2w(cameras).tolist()
    frames = []
    for i, path in enumerate(file_paths):
        frame = {"file_path": str(path), "transform_matrix": c2w[i]}
        if not shared:
            frame.update(per_camera[i])
        frames.append(frame)
    meta = {"camera_model": "OPENCV"}
    if shared:
        meta.update(per_camera[0])
    meta["frames"] = frames
    return meta


def _intrinsics_keys(cameras: Cameras, i: int) -> dict:
    height, width = (int(v) for v in cameras.image_size[i])
    fx, fy = cameras.focal_length[i].tolist()
    cx, cy = cameras.principal_point[i].tolist()
    keys = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": width, "h": height}
    if cameras.distortion is not None:
        keys.update(zip(_DISTORTION_KEYS, cameras.distortion[i].tolist(), strict=True))
    return keys


def _given_image_sizes(image_size, n: int) -> list[tuple[int, int] | None]:
    if image_size is None:
        return [None] * n
    size = torch.as_tensor(image_size)
    if size.dim() == 1:
        size = size.expand(n, -1)
    if tuple(size.shape) != (n, 2):
        raise InputError(
            f"image_size must be (H, W) or have shape ({n}, 2), got {tuple(size.shape)}"
        )
    return [(int(h), int(w)) for h, w in size.tolist()]


def _intrinsics(keys: Mapping, given_size: tuple[int, int] | None, where: str) -> dict:
    _check_model(keys, where)
    height, width = _image_size(keys, given_size, where)
    fx = _focal(keys, "fl_x", "camera_angle_x", width, where)
    if "fl_y" in keys or "camera_angle_y" in keys:
        fy = _focal(keys, "fl_y", "camera_angle_y", height, where)
    else:
        fy = fx
    cx = _number(keys, "cx", where) if "cx" in keys else width / 2.0
    cy = _number(keys, "cy", where) if "cy" in keys else height / 2.0
    distortion = None
    if any(key in keys for key in _DISTORTION_KEYS):
        distortion = [_number(keys, key, where) if key in keys else 0.0 for key in _DISTORTION_KEYS]
    return {
        "focal_length": (fx, fy),
        "principal_point": (cx, cy),
        "image_size": (height, width),
        "distortion": distortion,
    }


def _check_model(keys: Mapping, where: str) -> None:
    model = keys.get("camera_model", "OPENCV")
    if model not in _SUPPORTED_MODELS:
        raise InputError(
            f"transforms {where}: camera_model {model!r} is not supported "
            f"(supported: {', '.join(_SUPPORTED_MODELS)}); undistort the images first"
        )
    if keys.get("is_fisheye"):
        raise InputError(f"transforms {where}: fisheye cameras ('is_fisheye') are not supported")
    for key in _UNSUPPORTED_DISTORTION_KEYS:
        if key in keys and _number(keys, key, where) != 0.0:
            raise InputError(
                f"transforms {where}: distortion key {key!r} is not supported (only k1, k2, p1, "
                "p2); undistort the images first"
            )


def _image_size(keys: Mapping, given: tuple[int, int] | None, where: str) -> tuple[int, int]:
    if "w" in keys and "h" in keys:
        size = (round(_number(keys, "h", where)), round(_number(keys, "w", where)))
        if given is not None and given != size:
            raise InputError(
                f"transforms {where}: 'h', 'w' say {size} but image_size is {given}; the "
                "intrinsics are for the size in the file, so rescale them or the images"
            )
        return size
    if given is None:
        raise InputError(
            f"transforms {where}: no image size ('w' and 'h' keys); pass image_size=(H, W) "
            "read from the images"
        )
    return given


def _focal(keys: Mapping, focal_key: str, angle_key: str, size: int, where: str) -> float:
    if focal_key in keys:
        return _number(keys, focal_key, where)
    if angle_key in keys:
        return 0.5 * size / math.tan(0.5 * _number(keys, angle_key, where))
    raise InputError(
        f"transforms {where}: no focal length; need key {focal_key!r} or {angle_key!r}"
    )


def _pose(matrix, where: str) -> list[list[float]]:
    try:
        pose = torch.tensor(matrix, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"transforms {where}: 'transform_matrix' is not a matrix ({err})") from err
    if tuple(pose.shape) not in ((4, 4), (3, 4)):
        raise InputError(
            f"transforms {where}: 'transform_matrix' must be 4x4 (or 3x4), got {tuple(pose.shape)}"
        )
    if pose.shape[0] == 3:
        pose = torch.cat((pose, pose.new_tensor([[0.0, 0.0, 0.0, 1.0]])))
    return pose.tolist()


def _required(keys: Mapping, key: str, where: str):
    if key not in keys:
        raise InputError(f"transforms {where} has no {key!r}")
    return keys[key]


def _number(keys: Mapping, key: str, where: str) -> float:
    value = keys[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"transforms {where}: {key!r} must be a finite number, got {value!r}")
    return float(value)
