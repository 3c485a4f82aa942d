"""IDR/VolSDF layout: ``image/{i:06d}.png``, ``mask/{i:03d}.png``, ``cameras.npz`` with
``world_mat_i`` (4x4 ``[K [R|t]; 0 0 0 1]``, OpenCV pixels) and ``scale_mat_i`` (normalised ->
world: the object's bounding sphere, enlarged 10%, becomes the unit sphere); extras in
``depth/`` and ``normal/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from geomkit.cameras import to_idr
from geomkit.io import save_npz, write_image
from geomkit.structures import TriMesh
from geomkit.synth.layouts.common import on_white, write_extras
from geomkit.synth.scene import Views


def volsdf_scale_mat(mesh: TriMesh, margin: float = 1.1) -> np.ndarray:
    """(4, 4) similarity mapping the unit sphere onto the mesh's bounding sphere x margin."""
    center = (mesh.vertices.min(0) + mesh.vertices.max(0)) / 2
    radius = np.linalg.norm(mesh.vertices - center, axis=1).max() * margin
    scale_mat = np.diag([radius, radius, radius, 1.0])
    scale_mat[:3, 3] = center
    return scale_mat


def write_volsdf(out: Path, views: Views, mesh: TriMesh, margin: float = 1.1) -> None:
    world_mats = to_idr(views.cameras.to(dtype=torch.float64)).numpy()
    scale_mat = volsdf_scale_mat(mesh, margin)
    arrays = {}
    for i in range(len(views)):
        write_image(out / "image" / f"{i:06d}.png", on_white(views, i))
        write_extras(
            views,
            i,
            out / "depth" / f"{i:06d}.png",
            out / "normal" / f"{i:06d}.png",
            out / "mask" / f"{i:03d}.png",
        )
        arrays[f"world_mat_{i}"] = world_mats[i]
        arrays[f"scale_mat_{i}"] = scale_mat
    save_npz(Path(out) / "cameras.npz", **arrays)
