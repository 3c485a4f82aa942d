"""The Mat stage (the authors' ``trainer/train_material.py``): with geometry and visibility
frozen, fit the canonical material network and the 128 spherical-Gaussian lights to the image,
shading each surface hit with direct SG light attenuated by the learnt visibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from geomkit.checkpoint import load_state_dict_strict
from geomkit.viz import save_image_grid
from sfd.data import Scene
from sfd.models.material import NeuSMatLoss
from sfd.models.renderer import DupNeuSRenderer
from sfd.models.sg import render_with_sg, sg_light_visibility, sg_to_envmap
from sfd.runs import previous_stage_weights
from sfd.training import EVAL_CHUNK, StageRunner

SHADE_KEYS = (
    "sg_rgb",
    "sg_diffuse_rgb",
    "sg_specular_rgb",
    "diffuse_albedo",
    "roughness",
    "normal",
    "hit",
)


def shade(
    model: DupNeuSRenderer, scene: Scene, pixels: torch.Tensor, use_vis: bool = True, perturb=None
) -> dict:
    """Render ``pixels`` with the material network: geometry without gradients, material with.

    Returns per-pixel (P, .) tensors (zeros where the ray misses): ``sg_rgb`` (linear),
    its diffuse and specular parts, ``diffuse_albedo``, ``roughness``, world ``normal``, ``hit``,
    and ``material`` (the network's dict at the hits, for the losses).
    """
    rays = scene.rays(pixels)
    near = torch.full((len(pixels), 1), scene.near * 0.95)
    far = torch.full((len(pixels), 1), scene.far * 1.05)
    with torch.no_grad():
        geometry = model(
            rays.origins,
            rays.directions,
            near,
            far,
            scene.seg.reshape(-1)[pixels],
            "Mat",
            perturb=perturb,
        )
    hit = geometry["network_object_mask"]
    points, normals = geometry["surface_points"][hit], geometry["surface_normal"][hit]
    viewdirs = -rays.directions[hit]
    material = model.envmap_material_network(geometry["surface_points_local"][hit])
    visibility = None
    if use_vis and len(points):
        visibility = sg_light_visibility(
            model.visibility_network.prob_visible, points, normals, viewdirs,
            material["sg_lgtSGs"].detach(), material["sg_roughness"].detach(),
        )  # fmt: skip
    shaded = render_with_sg(
        material["sg_lgtSGs"], material["sg_specular_reflectance"], material["sg_roughness"],
        material["sg_diffuse_albedo"], normals, viewdirs, visibility,
    )  # fmt: skip
    out = {"hit": hit, "material": material}
    values = {**shaded, "diffuse_albedo": material["sg_diffuse_albedo"],
              "roughness": material["sg_roughness"].expand(-1, 3), "normal": normals}  # fmt: skip
    for key, value in values.items():
        full = torch.zeros(len(pixels), 3, dtype=value.dtype)
        full[hit] = value
        out[key] = full
    return out


def render_material_views(
    model: DupNeuSRenderer, scene: Scene, level: int = 1, use_vis: bool = True
) -> dict:
    """``shade`` over every ``level``-th pixel, as (h, w, 3) images (no gradients)."""
    rows, cols = torch.arange(0, scene.height, level), torch.arange(0, scene.width, level)
    pixels = (rows[:, None] * scene.width + cols[None]).reshape(-1)
    was_training = model.training
    model.eval()
    parts = {k: [] for k in SHADE_KEYS}
    with torch.no_grad():
        for chunk in pixels.split(EVAL_CHUNK):
            out = shade(model, scene, chunk, use_vis, perturb=0.0)
            for key in SHADE_KEYS:
                parts[key].append(out[key])
    model.train(was_training)
    shape = (len(rows), len(cols))
    images = {k: torch.cat(v).reshape(*shape, -1) for k, v in parts.items()}
    images["hit"] = images["hit"][..., 0]
    images["pixels"] = pixels.reshape(shape)
    return images


def write_material_plots(
    folder: Path, iteration: int, images: dict, model: DupNeuSRenderer, scene: Scene
) -> None:
    pixels = images["pixels"].reshape(-1)
    gt = scene.rgb.reshape(-1, 3)[pixels].reshape(*images["pixels"].shape, 3)
    hit = images["hit"][..., None].float()

    def tone(x):
        return x.clip(0, 1) ** (1 / 2.2)

    normal = (images["normal"] + 1) / 2 * hit
    tiles = [
        tone(gt),
        tone(images["sg_rgb"]),
        tone(images["diffuse_albedo"]),
        images["roughness"],
        normal,
    ]
    save_image_grid(folder / f"material_{iteration}.png", [np.asarray(t) for t in tiles], ncols=5)
    envmap = sg_to_envmap(model.envmap_material_network.get_light().detach(), 128, 256)
    save_image_grid(folder / f"envmap_{iteration}.png", [np.asarray(tone(envmap))], ncols=1)


class MaterialRunner(StageRunner):
    stage, iterations_key, pixels_key, plot_key = (
        "Mat",
        "sg_iter",
        "mat_num_pixels",
        "mat_plot_freq",
    )
    forbid_vis = False

    def start_from_previous_stage(self) -> None:
        path, state = previous_stage_weights(
            self.options.exps_folder_name, self.stage, self.options.expname
        )
        load_state_dict_strict(self.model, state, source=str(path))

    def is_trained(self, name: str) -> bool:
        return name.startswith("envmap_material_network.")

    def build_optimizer(self) -> torch.optim.Optimizer:
        lr = float(self.conf["train"]["sg_learning_rate"])
        self.loss = NeuSMatLoss(**self.conf["mat_loss"])
        return torch.optim.Adam(self.model.envmap_material_network.parameters(), lr=lr)

    def step(self) -> dict:
        pixels = self.sample_pixels()
        out = shade(self.model, self.scene, pixels, not self.forbid_vis)
        hit = out["hit"]
        rgb = self.scene.rgb.reshape(-1, 3)[pixels][hit]
        inside = (self.scene.seg.reshape(-1)[pixels] > 0)[hit]
        losses = self.loss(out["material"], out["sg_rgb"][hit], rgb, inside)
        self.optimizer.zero_grad()
        losses["sg_total_loss"].backward()
        self.optimizer.step()
        return {
            "loss": losses["sg_total_loss"].detach(),
            **{k: v.detach() for k, v in losses.items()},
        }

    def plot(self) -> None:
        level = int(self.conf["train"]["validate_resolution_level"])
        images = render_material_views(self.model, self.scene, level, not self.forbid_vis)
        write_material_plots(self.run.plots, self.cur_iter, images, self.model, self.scene)
