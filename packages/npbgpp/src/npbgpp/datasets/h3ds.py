"""H3DS, read without the ``h3ds`` package: ``{scene}/image/img_{v:04d}.jpg``,
``mask/mask_{v:04d}.jpg`` (``.png``, as H3DS v0.4 ships them, is accepted too), ``cameras.npz``
with ``world_mat_{v}`` = K [R | t] (H3DS's own file, in its own frame), ``mvs_pc.ply``.

Which views (the original asked the ``h3ds`` package for the scene's ``default_views_configs``
entry ``views_config_id``, '32' by default; the split indices are positions in that list):

1. ``{scene}/views.txt``: the view ids, separated by spaces, commas or newlines (copy the
   scene's ``default_views_configs."32"`` list from H3DS's config_v2.toml);
2. else, when the ``h3ds`` package is installed, its config, as the original;
3. else every view of ``cameras.npz`` in order, with a warning that the split indices then
   refer to all views, not to the 32-view configuration.

Cameras as DTU (one averaged K, the inverse of the H3DS pose, i.e. the decomposed
world-to-camera), images composited on white where mask < 0.5. The original hard-coded
512 x 512; the size is read from the images here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from geomkit.errors import InputError
from geomkit.io import load_npz
from npbgpp.datasets.dtu import MaskedScene, image_size_of, scene_options, world_mat_cameras
from npbgpp.datasets.splits import scene_splits

log = logging.getLogger(__name__)

VIEWS_FILE = "views.txt"


class H3DSScene(MaskedScene):
    pass


def build_h3ds_scene(cfg: Mapping, scene_name: str) -> H3DSScene:
    """The H3DS scene ``data_root/scene_name`` (see the module docstring)."""
    root = Path(str(cfg["data_root"])) / scene_name
    cameras_npz = root / "cameras.npz"
    if not cameras_npz.is_file():
        raise InputError(f"H3DS scene {scene_name}: {cameras_npz} not found")
    views = view_ids(root, str(cfg.get("views_config_id", "32")), cameras_npz)
    labels = [f"{v:04d}" for v in views]
    image_paths = [root / "image" / f"img_{label}.jpg" for label in labels]
    missing = [str(p) for p in image_paths if not p.is_file()]
    if missing:
        raise InputError(
            f"H3DS scene {scene_name}: {len(missing)} of {len(views)} images missing, first "
            f"{missing[0]} (expected image/img_%04d.jpg for every view in use)"
        )
    mask_paths = [_mask_path(root, label) for label in labels]
    cameras = world_mat_cameras(cameras_npz, views, image_size_of(image_paths[0]), False)
    return H3DSScene(
        scene_name,
        root,
        cameras,
        labels,
        root / str(cfg.get("pc_name") or "mvs_pc.ply"),
        scene_splits(cfg, len(views), scene_name),
        image_paths=image_paths,
        mask_paths=mask_paths,
        **scene_options(cfg),
    )


def view_ids(root: Path, views_config_id: str, cameras_npz: Path) -> list[int]:
    """The scene's view ids (see the module docstring for where they come from)."""
    views_file = root / VIEWS_FILE
    if views_file.is_file():
        words = [w for w in re.split(r"[\s,\[\]]+", views_file.read_text()) if w]
        if not words or not all(w.isdigit() for w in words):
            raise InputError(f"{views_file} must list view ids (integers), got {words[:5]}")
        return [int(w) for w in words]
    from_package = _views_from_h3ds_package(root, views_config_id)
    if from_package is not None:
        return from_package
    count = sum(1 for k in load_npz(cameras_npz) if k.startswith("world_mat_"))
    log.warning(
        "%s: no %s and no h3ds package; using all %d views, so datasets.val_indices and "
        "holdout_indices index all views, not H3DS's %s-view configuration",
        root,
        VIEWS_FILE,
        count,
        views_config_id,
    )
    return list(range(count))


def _views_from_h3ds_package(root: Path, views_config_id: str) -> list[int] | None:
    try:
        from h3ds.dataset import H3DS  # optional, as in the original
    except ImportError:
        return None
    config = H3DS(path=str(root.parent)).helper._config
    return [int(v) for v in config["scenes"][root.name]["default_views_configs"][views_config_id]]


def _mask_path(root: Path, label: str) -> Path:
    for suffix in (".jpg", ".png"):
        path = root / "mask" / f"mask_{label}{suffix}"
        if path.is_file():
            return path
    raise InputError(f"H3DS mask {root / 'mask' / f'mask_{label}.jpg'} (or .png) not found")
