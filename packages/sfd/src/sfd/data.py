"""One SfD scene: the single image of N identical objects, its instance segmentation, the real
camera, the per-instance poses and the SfM points (the authors' ``datasets/neus_dataset.py``).

Layout of a data folder (the authors' ``data/airplane``):
``train/000_rgb.png`` (sRGB photo) or ``_rgb.exr`` (linear, synthetic),
``train/000_instance_seg.png`` (background 0, instance k of N = k/N*255), optional
``train/000_normal.png`` (ground truth) and ``train/000_normal_pretrain.png`` (monocular prior),
``transforms_train.json`` (one frame, camera-to-world in OpenGL axes, the focal as a number or
a string), ``object_pred_pose.json`` and
``object_scale_matrix.json`` (SfM poses), ``blender_object_gt_pose.json`` (ground truth, synthetic),
``non_empty_indexes.txt`` and ``points_world.npy``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geomkit.errors import InputError
from geomkit.io.arrays import load_json
from geomkit.io.images import read_exr, read_image

GAMMA = 2.2


@dataclass
class Rays:
    origins: torch.Tensor  # (R, 3)
    directions: torch.Tensor  # (R, 3), unit
    pixels: torch.Tensor  # (R,) flat pixel indices


@dataclass
class Scene:
    root: Path
    rgb: torch.Tensor  # (H, W, 3) linear radiance
    seg: torch.Tensor  # (H, W) long: 0 background, k = instance k (1-based)
    c2w: torch.Tensor  # (4, 4) OpenGL camera-to-world
    focal: float
    n_instances: int
    points_world: dict[str, np.ndarray]
    near: float
    far: float
    scene_center: torch.Tensor  # (3,)
    scene_radius: float
    normal: torch.Tensor | None = None  # (H, W, 3) in [0, 1], camera frame
    normal_pretrain: torch.Tensor | None = None
    real_world: bool = True

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def mask(self) -> torch.Tensor:
        return self.seg > 0

    def rays(self, pixels: torch.Tensor) -> Rays:
        """Rays through integer pixel positions (u, v) (the original samples pixel corners:
        no half-pixel offset, principal point W/2, H/2)."""
        u = (pixels % self.width).float()
        v = torch.div(pixels, self.width, rounding_mode="floor").float()
        cam = torch.stack(
            [
                (u - self.width / 2) / self.focal,
                -(v - self.height / 2) / self.focal,
                -torch.ones_like(u),
            ],
            dim=-1,
        )
        directions = torch.nn.functional.normalize(cam @ self.c2w[:3, :3].T, dim=-1)
        origins = self.c2w[:3, 3].expand_as(directions)
        return Rays(origins, directions, pixels)

    def random_pixels(self, count: int) -> torch.Tensor:
        """``count`` distinct pixels from the global torch RNG, as the original draws them."""
        return torch.randperm(self.height * self.width)[:count]

    def all_pixels(self) -> torch.Tensor:
        return torch.arange(self.height * self.width)


def load_scene(root: str | Path, visible_num: int = -1, use_pretrain_normal: bool = False) -> Scene:
    """Read and check a data folder (see the module docstring).

    Raises:
        InputError: a missing or malformed file, a segmentation whose values do not match the
            instance count of the pose files, a non-numeric focal, missing points_world.npy.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder {root} not found")
    c2w, focal, stem = read_camera(root / "transforms_train.json")
    rgb, real_world = _read_rgb(root, stem)
    n = instance_count(root)
    seg = registered_segmentation(root, stem, n)
    if seg.shape != rgb.shape[:2]:
        raise InputError(
            f"{root / stem}_instance_seg.png is {seg.shape}, the image {rgb.shape[:2]}"
        )
    if visible_num > 0:
        seg[seg > visible_num] = 0
    points = read_points_world(root / "points_world.npy")
    near, far = depth_range(points["points_world_all"], c2w)
    center, radius = points_bbox(points["points_world_all"])
    normal = _read_optional(root / f"{stem}_normal.png")
    prior = None
    if use_pretrain_normal:
        prior_path = root / f"{stem}_normal_pretrain.png"
        if not prior_path.is_file():
            raise InputError(
                f"--use_pretrain_normal needs {prior_path} (made by preprocessing step 8 with an "
                "Omnidata checkpoint); drop the flag to train without the normal prior"
            )
        prior = _read_optional(prior_path)
    return Scene(
        root=root, rgb=rgb, seg=seg, c2w=c2w, focal=focal, n_instances=n, points_world=points,
        near=near, far=far, scene_center=center, scene_radius=radius, normal=normal,
        normal_pretrain=prior, real_world=real_world,
    )  # fmt: skip


def read_camera(path: Path) -> tuple[torch.Tensor, float, str]:
    """(c2w, focal, image stem) of a one-frame ``transforms_*.json``."""
    meta = load_json(path, required_keys=("focal", "frames"))
    frames = meta["frames"]
    if not isinstance(frames, list) or len(frames) != 1:
        raise InputError(f"{path}: SfD uses exactly one frame, found {len(frames)}")
    try:
        focal = float(meta["focal"])
    except (TypeError, ValueError):
        raise InputError(f"{path}: focal {meta['focal']!r} is not a number") from None
    if not np.isfinite(focal) or focal <= 0:
        raise InputError(f"{path}: focal must be a positive number, got {focal}")
    frame = frames[0]
    try:
        c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float32)
        stem = str(frame["file_path"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"{path}: the frame needs file_path and a 4x4 transform_matrix ({err})"
        ) from None
    if c2w.shape != (4, 4) or not torch.isfinite(c2w).all():
        raise InputError(f"{path}: transform_matrix must be a finite 4x4 matrix")
    return c2w, focal, stem.removeprefix("./")


def instance_count(root: Path) -> int:
    """The number of instances the pose files list (SfM poses, else ground truth)."""
    for name in ("object_pred_pose.json", "blender_object_gt_pose.json"):
        if (root / name).is_file():
            return len(load_json(root / name))
    raise InputError(
        f"{root} has neither object_pred_pose.json nor blender_object_gt_pose.json "
        "(run python -m sfd.preprocess first)"
    )


def registered_segmentation(root: Path, stem: str, n_poses: int) -> torch.Tensor:
    """Instance ids 1..n_poses, one per pose. When SfM registered only some instances,
    ``non_empty_indexes.txt`` lists them (0-based ids in the segmentation): they are renumbered
    in that order and the others become background, as the original drops them."""
    path = root / f"{stem}_instance_seg.png"
    registered = read_registered(root / "non_empty_indexes.txt")
    if registered is None or len(registered) == n_poses and registered == list(range(n_poses)):
        return decode_segmentation(path, n_poses)
    if len(registered) != n_poses:
        raise InputError(
            f"{root / 'non_empty_indexes.txt'} lists {len(registered)} registered instances "
            f"but the pose file has {n_poses}"
        )
    full = decode_segmentation(path, _stored_instances(path))
    relabelled = torch.zeros_like(full)
    for new_id, old_index in enumerate(registered, start=1):
        relabelled[full == old_index + 1] = new_id
    return relabelled


def read_registered(path: Path) -> list[int] | None:
    if not path.is_file():
        return None
    try:
        values = np.atleast_1d(np.loadtxt(path))
    except ValueError as err:
        raise InputError(f"{path}: expected one instance index per line ({err})") from None
    return [int(v) for v in values]


def _stored_instances(path: Path) -> int:
    return len(np.unique(np.rint(read_image(path)[..., 0] * 255))) - 1


def decode_segmentation(path: Path, n: int) -> torch.Tensor:
    """Instance ids 0..n from stored values k/n*255 (truncated or rounded: the authors' files
    hold 127 for 3/6); a missing instance or any other value is an error."""
    raw = np.rint(read_image(path)[..., 0] * 255).astype(np.int64)
    values = np.unique(raw)
    ids = np.rint(values / 255 * n).astype(np.int64)
    stray = values[np.abs(values - ids * 255 / n) > 1]
    missing = sorted(set(range(n + 1)) - set(ids.tolist()))
    if len(stray) or missing or len(set(ids.tolist())) != len(values):
        expected = [int(k * 255 / n) for k in range(n + 1)]
        raise InputError(
            f"{path}: a segmentation of {n} instances holds the values {expected} (k/{n}*255); "
            f"instances missing: {missing or 'none'}, unexpected values: {stray.tolist() or 'none'}"
        )
    return torch.from_numpy(np.rint(raw / 255 * n).astype(np.int64))


def read_points_world(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(
            f"{path} not found: rebuild it from the poses with `python -m sfd.points_world "
            f"{path.parent}` or run preprocessing"
        )
    try:
        data = np.load(path, allow_pickle=True).item()
    except (OSError, ValueError, pickle.UnpicklingError, AttributeError) as err:
        raise InputError(f"{path} is not a pickled dict of point arrays ({err})") from None
    points = data.get("points_world_all") if isinstance(data, dict) else None
    if points is None or np.ndim(points) != 2 or np.shape(points)[1] != 3 or len(points) < 4:
        raise InputError(f"{path} needs points_world_all, an (M, 3) array with M >= 4")
    return data


def depth_range(points: np.ndarray, c2w: torch.Tensor) -> tuple[float, float]:
    """Nearest and farthest distance of the SfM points from the camera centre."""
    depth = np.linalg.norm(points - c2w[:3, 3].numpy()[None], axis=1)
    return float(depth.min()), float(depth.max())


def points_bbox(points: np.ndarray, keep_ratio: float = 0.95) -> tuple[torch.Tensor, float]:
    """Centre and radius (half the bounding-box diagonal) of the ``keep_ratio`` points nearest to
    the centroid (the original's one-cluster KMeans, whose centre is the centroid)."""
    distance = np.linalg.norm(points - points.mean(0), axis=1)
    kept = points[np.argsort(distance)[: int(len(points) * keep_ratio)]]
    radius = 0.5 * float(np.linalg.norm(kept.max(0) - kept.min(0)))
    return torch.from_numpy(kept.mean(0)).float(), radius


def _read_rgb(root: Path, stem: str) -> tuple[torch.Tensor, bool]:
    png, exr = root / f"{stem}_rgb.png", root / f"{stem}_rgb.exr"
    if png.is_file():
        return torch.from_numpy(read_image(png)).float() ** GAMMA, True
    if exr.is_file():
        return torch.from_numpy(read_exr(exr)[..., :3]).float(), False
    raise InputError(f"image not found: {png} (or {exr.name})")


def _read_optional(path: Path) -> torch.Tensor | None:
    return torch.from_numpy(read_image(path)).float() if path.is_file() else None
