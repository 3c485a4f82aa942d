"""Whole views rendered in chunks of rays, with the codebook attention computed once."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from geomkit.log import progress


@torch.no_grad()
def eval_latents(model) -> dict:
    """The model in eval mode and its codebook-attention outputs, once for a whole evaluation."""
    model.eval()
    return model.latents()


@torch.no_grad()
def render_view(model, dataset, view: int, chunk: int, latents: Mapping | None = None,
                show_progress: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """``rgb`` and ``normal`` (H, W, 3) and ``opacity`` (H, W) of one view, in [0, 1] (normals
    n mapped to (n + 1) / 2, as the original's normal maps)."""
    latents = eval_latents(model) if latents is None else latents
    model.eval()
    height, width = dataset.image_size
    pixels = torch.arange(height * width)
    parts: dict[str, list[torch.Tensor]] = {"rgb_values": [], "normal_map": [], "opacity": []}
    chunks = pixels.split(chunk)
    for ids in progress(chunks, desc=f"view {view}", leave=False, disable=not show_progress):
        origins, directions = dataset.rays(view, ids)
        device = next(model.parameters()).device
        outputs = model(origins.to(device), directions.to(device), latents)
        for key, values in parts.items():
            values.append(outputs[key].cpu())
    rgb = torch.cat(parts["rgb_values"]).reshape(height, width, 3)
    normal = torch.cat(parts["normal_map"]).reshape(height, width, 3)
    opacity = torch.cat(parts["opacity"]).reshape(height, width)
    return {"rgb": rgb.clamp(0, 1), "normal": ((normal + 1) / 2).clamp(0, 1), "opacity": opacity}
