"""Render a shape from a set of cameras into the images every dataset layout is made of."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geomkit.cameras import Cameras
from geomkit.render import render_mesh
from geomkit.synth.shapes import Shape

DEPTH_SCALE = 1000.0  # depth PNGs store round(depth * DEPTH_SCALE) in uint16


@dataclass
class Views:
    """N rendered views with their exact cameras.

    rgb (N, H, W, 3) float32 in [0, 1], white background; depth (N, H, W) float32 view z, 0
    where empty; mask (N, H, W) bool; normals (N, H, W, 3) float32 unit world normals, 0 where
    empty.
    """

    cameras: Cameras
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    normals: np.ndarray

    def __len__(self) -> int:
        return len(self.rgb)


def render_views(
    shape: Shape, cameras: Cameras, mesh_resolution: int = 128, batch: int = 8
) -> Views:
    """Lambertian rendering (headlight, ambient 0.3) of the shape's procedural colours."""
    mesh = shape.mesh(mesh_resolution)
    parts = []
    for start in range(0, len(cameras), batch):
        result = render_mesh(
            mesh,
            cameras[start : start + batch],
            color=shape.color,
            light="camera",
            ambient=0.3,
            background=(1.0, 1.0, 1.0),
        )
        parts.append(
            [
                np.asarray(x.detach().cpu(), dtype=np.float32)
                for x in (result.rgb, result.depth, result.mask, result.normals)
            ]
        )
    rgb, depth, mask, normals = (np.concatenate(p) for p in zip(*parts, strict=True))
    return Views(cameras, rgb, depth, mask.astype(bool), normals)
