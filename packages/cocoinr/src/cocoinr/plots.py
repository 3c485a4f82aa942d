"""The images and meshes the original writes to ``plots/<epoch>/``: ``rendering_<i>.png``
(prediction above ground truth), ``rendering_img<i>.png``, ``rendering_gt<i>.png``,
``normal_<i>.png``, and a surface mesh in the normalised frame (``surface_<epoch>.ply``,
once per plot instead of once per view)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cocoinr.meshing import extract_mesh
from cocoinr.render import eval_latents, render_view
from geomkit.io import write_image, write_ply


def write_view_images(out_dir: Path, view: int, images: dict, gt: np.ndarray) -> None:
    """The original's four PNGs of one view (``images`` from render_view, gt (H, W, 3))."""
    rgb, normal = images["rgb"].numpy(), images["normal"].numpy()
    write_image(out_dir / f"rendering_{view}.png", np.concatenate([rgb, gt], axis=0))
    write_image(out_dir / f"rendering_img{view}.png", rgb)
    write_image(out_dir / f"rendering_gt{view}.png", gt)
    write_image(out_dir / f"normal_{view}.png", normal)


def plot_view(model, data, view: int, conf: dict, out_dir: Path) -> dict:
    """Render ``view``, write its images and the plot-resolution surface; returns the images."""
    out_dir.mkdir(parents=True, exist_ok=True)
    latents = eval_latents(model)
    images = render_view(model, data, view, int(conf["train"]["split_n_pixels"]), latents)
    write_view_images(out_dir, view, images, ground_truth(data, view))
    lo, hi = conf["plot"]["grid_boundary"]
    mesh = extract_mesh(
        lambda p: model.sdf(p, latents), int(conf["plot"]["resolution"]), (lo,) * 3, (hi,) * 3,
        coarse_resolution=None, keep_largest=False, device=next(model.parameters()).device,
    )  # fmt: skip
    if len(mesh.faces):
        write_ply(out_dir / f"surface_{out_dir.name}.ply", mesh)
    return images


def ground_truth(data, view: int) -> np.ndarray:
    """(H, W, 3) the view's image."""
    return data.images[view].reshape(*data.image_size, 3).numpy()
