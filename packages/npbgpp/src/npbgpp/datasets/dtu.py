"""DTU as IDR prepared it (the 15 masked scans): ``{scan}/image/{i:06d}.png``,
``mask/{i:03d}.png``, ``cameras.npz`` (``world_mat_i`` = K [R | t]), ``mvs_pc.ply``.

As the original (DTUScene): one camera per file in ``image/``, ``world_mat_i`` decomposed into
K, R, t (geomkit.cameras.from_idr, ``scale_mat_i`` ignored: the scene stays in DTU's own units,
millimetres), ONE intrinsic matrix for all views (the mean of fx, fy, cx, cy; skew dropped as
the original's NDC intrinsics have none), images composited on white where mask < 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from geomkit.cameras import Cameras, from_idr
from geomkit.errors import InputError
from geomkit.io import load_npz, read_image, require_dir
from npbgpp.datasets.base import Scene, composite_on_white, load_mask, load_rgb, require_image
from npbgpp.datasets.splits import scene_splits


class MaskedScene(Scene):
    """Views with mask files; images composited on white outside the mask (DTU, H3DS)."""

    has_mask = True

    def __init__(self, *args, image_paths, mask_paths, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.image_paths = list(image_paths)
        self.mask_paths = list(mask_paths)

    def _read_rgb(self, i: int) -> torch.Tensor:
        rgb = load_rgb(require_image(self.image_paths[i], "image"), self.image_size(i))
        return composite_on_white(rgb, self.mask(i))

    def _read_mask(self, i: int) -> torch.Tensor:
        return load_mask(require_image(self.mask_paths[i], "mask"), self.image_size(i))


class DTUScene(MaskedScene):
    pass


def world_mat_cameras(
    cameras_npz: Path, ids: list[int], image_size: tuple[int, int], check_count: bool = True
) -> Cameras:
    """Cameras of ``world_mat_{i}`` for i in ids, in the file's frame, with one averaged K.

    ``check_count``: the file must hold no other ``world_mat`` (DTU: one per image).

    Raises:
        InputError: a missing ``world_mat_{i}`` (names the file, the key and the image count).
    """
    arrays = load_npz(cameras_npz)
    missing = [i for i in ids if f"world_mat_{i}" not in arrays]
    if missing:
        raise InputError(
            f"{cameras_npz} has no world_mat_{missing[0]} but there are images for views "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}: the camera and image counts "
            "disagree; remove the extra images or add their cameras"
        )
    extra = sorted(
        int(k[len("world_mat_") :])
        for k in arrays
        if k.startswith("world_mat_") and k[len("world_mat_") :].isdigit()
    )
    extra = [i for i in extra if i not in set(ids)]
    if extra and check_count:
        raise InputError(
            f"{cameras_npz} has {len(ids) + len(extra)} cameras but there are {len(ids)} "
            f"images (no image for world_mat_{extra[0]}): the camera and image counts "
            "disagree; restore the missing images or remove their cameras"
        )
    world_mats = np.stack([np.asarray(arrays[f"world_mat_{i}"], dtype=np.float64) for i in ids])
    return average_intrinsics(from_idr(world_mats, None, image_size))


def average_intrinsics(cameras: Cameras) -> Cameras:
    """The cameras with the mean focal length and principal point of all, and no skew."""
    n = len(cameras)
    return Cameras(
        R=cameras.R,
        T=cameras.T,
        focal_length=cameras.focal_length.mean(0, keepdim=True).expand(n, 2).clone(),
        principal_point=cameras.principal_point.mean(0, keepdim=True).expand(n, 2).clone(),
        image_size=cameras.image_size,
    )


def image_size_of(path: Path) -> tuple[int, int]:
    height, width = read_image(path).shape[:2]
    return int(height), int(width)


def build_dtu_scene(cfg: Mapping, scene_name: str) -> DTUScene:
    """The DTU scan ``data_root/scene_name`` (see the module docstring)."""
    root = Path(str(cfg["data_root"])) / scene_name
    image_dir = require_dir(root / "image", f"DTU scene {scene_name}: image folder")
    files = sorted(p for p in image_dir.iterdir() if not p.name.startswith("."))
    if not files:
        raise InputError(f"{image_dir} has no images (expected image/000000.png ...)")
    ids = list(range(len(files)))
    image_paths = [image_dir / f"{i:06d}.png" for i in ids]
    for path in image_paths:
        require_image(path, f"DTU scene {scene_name}: image (named %06d.png, 0..{len(ids) - 1})")
    mask_paths = [root / "mask" / f"{i:03d}.png" for i in ids]
    for path in mask_paths:
        require_image(path, f"DTU scene {scene_name}: mask (named %03d.png like the images)")
    cameras_npz = root / "cameras.npz"
    if not cameras_npz.is_file():
        raise InputError(f"DTU scene {scene_name}: {cameras_npz} not found (IDR's cameras.npz)")
    cameras = world_mat_cameras(cameras_npz, ids, image_size_of(image_paths[0]))
    return DTUScene(
        scene_name,
        root,
        cameras,
        [str(i) for i in ids],
        root / str(cfg.get("pc_name") or "mvs_pc.ply"),
        scene_splits(cfg, len(ids), scene_name),
        image_paths=image_paths,
        mask_paths=mask_paths,
        **scene_options(cfg),
    )


def scene_options(cfg: Mapping) -> dict:
    """Scene keyword arguments shared by every dataset, from the ``datasets`` config."""
    return {
        "n_point": cfg.get("n_point"),
        "noise_sigma": cfg.get("noise_sigma"),
        "image_margin": cfg.get("image_margin"),
        "cache_images": bool(cfg.get("cache_images") or False),
    }
