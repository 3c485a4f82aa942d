"""NeRF-Synthetic (Blender): ``{scene}/transforms_{train,val,test}.json`` and the RGBA PNGs
they name (``{file_path}.png``), ``mvs_pc.ply``.

As the original (BlenderScene): the three files concatenated in the order train, val, test
(views 0-99, 100-199, 200-399 of the real scenes); focal length from ``camera_angle_x``,
principal point at the image centre (geomkit.cameras.from_nerf_transforms); the alpha channel
is the mask, and with ``white_bg`` the image is composited on white (``rgb * a + 1 - a``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from geomkit.cameras import Cameras, from_nerf_transforms
from geomkit.errors import InputError
from geomkit.io import load_json, read_image
from npbgpp.datasets.base import Scene, cat_cameras, load_rgba, require_image
from npbgpp.datasets.dtu import scene_options
from npbgpp.datasets.splits import scene_splits

SPLIT_FILES = ("train", "val", "test")


class BlenderScene(Scene):
    """RGBA views: the mask is alpha >= 0.5."""

    has_mask = True

    def __init__(self, *args, image_paths, white_bg: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.image_paths = list(image_paths)
        self.white_bg = bool(white_bg)

    def _rgba(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return load_rgba(require_image(self.image_paths[i], "image"), self.image_size(i))

    def _read_rgb(self, i: int) -> torch.Tensor:
        rgb, alpha = self._rgba(i)
        return rgb * alpha + (1.0 - alpha) if self.white_bg else rgb

    def _read_mask(self, i: int) -> torch.Tensor:
        return self._rgba(i)[1] >= 0.5


def read_transforms(root: Path) -> tuple[Cameras, list[str], list[Path]]:
    """Cameras, view labels (``train-r_0``, as the original) and image paths of all splits."""
    metas = [load_json(root / f"transforms_{split}.json", ["frames"]) for split in SPLIT_FILES]
    first = metas[0]["frames"][0] if metas[0]["frames"] else None
    if first is None:
        raise InputError(f"{root / 'transforms_train.json'} has no frames")
    size = read_image(_image_path(root, first.get("file_path", ""))).shape[:2]
    parts, paths = [], []
    for split, meta in zip(SPLIT_FILES, metas, strict=True):
        if not meta["frames"]:
            raise InputError(f"{root / f'transforms_{split}.json'} has no frames")
        cameras, file_paths = from_nerf_transforms(meta, image_size=size)
        parts.append(cameras)
        paths += file_paths
    labels = ["-".join(p.split("/")[1:]) for p in paths]
    return cat_cameras(parts), labels, [_image_path(root, p) for p in paths]


def build_blender_scene(cfg: Mapping, scene_name: str) -> BlenderScene:
    """The NeRF-Synthetic scene ``data_root/scene_name`` (see the module docstring)."""
    root = Path(str(cfg["data_root"])) / scene_name
    cameras, labels, image_paths = read_transforms(root)
    missing = [str(p) for p in image_paths if not p.is_file()]
    if missing:
        raise InputError(
            f"NeRF scene {scene_name}: {len(missing)} of {len(image_paths)} images named in "
            f"transforms_*.json are missing, first {missing[0]}"
        )
    white_bg = cfg.get("white_bg")
    return BlenderScene(
        scene_name,
        root,
        cameras,
        labels,
        root / str(cfg.get("pc_name") or "mvs_pc.ply"),
        scene_splits(cfg, len(labels), scene_name),
        image_paths=image_paths,
        white_bg=True if white_bg is None else white_bg,
        **scene_options(cfg),
    )


def _image_path(root: Path, file_path: str) -> Path:
    path = root / f"{file_path}.png"
    return path if path.is_file() or not (root / file_path).is_file() else root / file_path
