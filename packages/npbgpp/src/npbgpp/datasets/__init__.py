"""NPBG++'s datasets in the authors' layouts, through geomkit cameras.

``build_scene(cfg.datasets, scene_name)`` reads one scene (:class:`Scene`);
:class:`ViewSceneWrapper` turns it into training items (target crop + source views chosen by
:mod:`npbgpp.datasets.view_selection`) or validation/test items; :func:`collate_items`
batches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from geomkit.errors import ConfigError, InputError
from npbgpp.datasets.base import Scene, cat_cameras
from npbgpp.datasets.blender import BlenderScene, build_blender_scene
from npbgpp.datasets.colmap import ColmapScene, build_colmap_scene
from npbgpp.datasets.dtu import DTUScene, build_dtu_scene
from npbgpp.datasets.h3ds import H3DSScene, build_h3ds_scene
from npbgpp.datasets.ngp import NgpScene, build_ngp_scene
from npbgpp.datasets.scannet import ScanNetScene, build_scannet_scene
from npbgpp.datasets.splits import SPLITS, resolve_indices, scene_splits
from npbgpp.datasets.view_wrapper import ViewSceneWrapper, collate_items

BUILDERS = {
    "dtu": build_dtu_scene,
    "h3ds": build_h3ds_scene,
    "blender": build_blender_scene,
    "colmap": build_colmap_scene,
    "scannet": build_scannet_scene,
    "ngp": build_ngp_scene,
}


def build_scene(cfg: Mapping, scene_name: str | None = None) -> Scene:
    """One scene of the ``datasets`` config (original key names: type, data_root, pc_name,
    val_indices, holdout_indices, n_point, noise_sigma, image_margin, white_bg,
    cache_images ...); ``scene_name`` defaults to ``cfg.scene_name``."""
    kind = cfg.get("type")
    if kind not in BUILDERS:
        raise ConfigError(f"datasets.type is {kind!r}; choose one of {', '.join(BUILDERS)}")
    name = scene_name if scene_name is not None else cfg.get("scene_name")
    if not name:
        raise ConfigError("no scene: set datasets.scene_name")
    root = Path(str(cfg.get("data_root"))) / str(name)
    if not root.is_dir():
        raise InputError(
            f"scene folder {root} not found (datasets.data_root={cfg.get('data_root')}, "
            f"scene {name}); a relative data_root is relative to hydra.run.dir"
        )
    return BUILDERS[kind](cfg, str(name))


__all__ = [
    "BUILDERS",
    "SPLITS",
    "BlenderScene",
    "ColmapScene",
    "DTUScene",
    "H3DSScene",
    "NgpScene",
    "ScanNetScene",
    "Scene",
    "ViewSceneWrapper",
    "build_scene",
    "cat_cameras",
    "collate_items",
    "resolve_indices",
    "scene_splits",
]
