"""Training visualisations: each object's input beside a render of the occupancy the network
predicts on a 32^3 grid (the authors' visualize step, as PNGs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from geomkit.mesh import marching_cubes
from geomkit.render import render_mesh
from geomkit.synth.camera_paths import look_at_c2w_opengl, pinhole_cameras
from geomkit.viz import save_image_grid
from onet.training import make_3d_grid

GRID = 32
PADDING = 0.1


def predicted_mesh(network, inputs: torch.Tensor, threshold: float, device, resolution=GRID):
    """Marching cubes of the occupancy probabilities on a resolution^3 grid over the padded box
    (one object: inputs with a batch dimension of 1)."""
    box = 0.5 * (1 + PADDING)
    grid = make_3d_grid((-box,) * 3, (box,) * 3, (resolution,) * 3).to(device)[None]
    with torch.no_grad():
        network.eval()
        probs = torch.sigmoid(network(grid, inputs.to(device), sample=False))[0]
    volume = probs.reshape((resolution,) * 3).cpu().numpy()
    return marching_cubes(volume, threshold, (-box,) * 3, (box,) * 3, inside="above")


def render_preview(mesh, size: int = 128) -> np.ndarray:
    """(size, size, 3) grey Lambertian render from a fixed oblique view; white if empty."""
    if mesh.is_empty:
        return np.ones((size, size, 3), np.float32)
    eye = 2.0 * np.array([[math.cos(0.8), math.sin(0.8), 0.6]])
    cameras = pinhole_cameras(look_at_c2w_opengl(eye), (size, size), fov_x_deg=40.0)
    return render_mesh(mesh, cameras).rgb[0].numpy()


def input_preview(inputs: torch.Tensor, size: int = 128) -> np.ndarray:
    """An image input as (H, W, 3); other inputs as a blank tile."""
    if inputs.dim() == 3 and inputs.shape[0] == 3:
        return inputs.permute(1, 2, 0).cpu().numpy()
    return np.ones((size, size, 3), np.float32)


def save_visualization(
    network, batch: dict, folder: Path, it: int, threshold: float, device, max_objects: int = 8
) -> Path:
    """A PNG with, per object of the batch, the input and the predicted shape."""
    inputs = batch.get("inputs", torch.empty(len(batch["points"]), 0))
    tiles = []
    for i in range(min(max_objects, len(inputs))):
        tiles.append(input_preview(inputs[i]))
        tiles.append(render_preview(predicted_mesh(network, inputs[i : i + 1], threshold, device)))
    path = Path(folder) / f"it_{it:07d}.png"
    save_image_grid(path, tiles, ncols=2)
    return path
