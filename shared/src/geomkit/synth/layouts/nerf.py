"""NeRF synthetic (Blender) layout: ``transforms_{train,val,test}.json`` with ``camera_angle_x``
and OpenGL camera-to-world ``transform_matrix`` per frame (also the instant-ngp intrinsics
keys), RGBA PNGs whose alpha is the mask, plus ``_depth``/``_normal`` PNGs beside each image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from geomkit.cameras import to_nerf_transforms
from geomkit.io import save_json, write_image
from geomkit.synth.layouts.common import write_extras
from geomkit.synth.scene import Views


def write_nerf(out: Path, train: Views, test: Views) -> None:
    """Train views, and held-out views written as both ``val`` and ``test``."""
    for split, views in (("train", train), ("val", test), ("test", test)):
        paths = [f"./{split}/r_{i}" for i in range(len(views))]
        for i, path in enumerate(paths):
            stem = out / path
            rgba = np.concatenate([views.rgb[i], views.mask[i][..., None]], axis=-1)
            write_image(stem.with_suffix(".png"), rgba)
            write_extras(views, i, Path(f"{stem}_depth.png"), Path(f"{stem}_normal.png"))
        meta = to_nerf_transforms(views.cameras, paths)
        width = float(views.cameras.image_size[0, 1])
        focal = float(views.cameras.focal_length[0, 0])
        save_json(
            out / f"transforms_{split}.json",
            {"camera_angle_x": 2 * math.atan(0.5 * width / focal), **meta},
        )
