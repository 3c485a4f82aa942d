"""The Vis stage: a SIREN-style network predicting whether a secondary ray from a surface point
escapes the scene, the labels it is trained on (NeuS-marching the frozen SDF along the ray)
and its cross-entropy loss.

Class 1 of the network's two logits means "visible" (the ray escapes), class 0 "occluded", as
the original's loss target ``(~gt_vis).long()`` with gt_vis = occluded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from geomkit.errors import InputError
from sfd.models.sg import tangent_frame

SdfFn = Callable[[torch.Tensor], torch.Tensor]


class FiLMLayer(nn.Module):
    """sin(freq * (W x + b) + phase) with one learnt frequency (30 + 15 * ``freq``) and one phase
    (clipped to [-pi, pi]) for the whole layer."""

    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.layer = nn.Linear(input_dim, output_dim)
        self.freq = nn.Parameter(torch.ones(1))
        self.phase_shift = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freq = self.freq * 15.0 + 30.0
        return torch.sin(freq * self.layer(x) + self.phase_shift.clamp(-math.pi, math.pi))


class SirenVisNetwork(nn.Module):
    """(world point, unit direction) -> 2 logits [occluded, visible] through FiLM-sine layers of
    widths ``dims`` (config ``model.visibility_network.dims``) and a linear head. Every linear
    weight starts uniform in +-sqrt(6 / fan_in) / 25 (the original's frequency_init(25))."""

    def __init__(self, dims: Sequence[int] = (256, 256, 256, 256)):
        super().__init__()
        if len(dims) == 0 or any(int(d) < 1 for d in dims):
            raise InputError(f"model.visibility_network.dims must be positive widths, got {dims}")
        layers: list[nn.Module] = []
        width = 6
        for d in dims:
            layers.append(FiLMLayer(width, int(d)))
            width = int(d)
        layers.append(nn.Linear(width, 2))
        self.vis_layer = nn.Sequential(*layers)
        self.vis_layer.apply(_frequency_init(25.0))

    def forward(self, points_world: torch.Tensor, view_dirs_world: torch.Tensor) -> torch.Tensor:
        """(K, 3) points and (K, 3) unit directions -> (K, 2) logits."""
        return self.vis_layer(torch.cat([points_world, view_dirs_world], dim=-1))

    def prob_visible(self, points_world: torch.Tensor, dirs_world: torch.Tensor) -> torch.Tensor:
        """(K,) probability that the ray from each point along its direction escapes; the
        ``vis_fn`` that :func:`sfd.models.sg.sg_light_visibility` takes."""
        return torch.softmax(self(points_world, dirs_world), dim=-1)[:, 1]


def _frequency_init(freq: float):
    def init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            bound = math.sqrt(6.0 / module.weight.shape[-1]) / freq
            with torch.no_grad():
                module.weight.uniform_(-bound, bound)

    return init


def hemisphere_directions(
    normals: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(P, n, 3) random unit directions above each (P, 3) unit normal, distributed as the
    original's label rays: azimuth uniform, sine of the angle to the normal uniform in
    [0, 0.95] (so none within 18 degrees of the tangent plane)."""
    if normals.ndim != 2 or normals.shape[-1] != 3:
        raise InputError(f"normals must be (P, 3), got {tuple(normals.shape)}")
    shape = (normals.shape[0], n)
    azimuth = torch.rand(shape, generator=generator) * 2.0 * math.pi
    sin_polar = torch.rand(shape, generator=generator) * 0.95
    azimuth, sin_polar = azimuth.to(normals), sin_polar.to(normals)
    cos_polar = torch.sqrt(1.0 - sin_polar**2)
    axis = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u, v = tangent_frame(axis)
    u, v, w = u[:, None], v[:, None], axis[:, None]
    sin_polar, cos_polar, azimuth = sin_polar[..., None], cos_polar[..., None], azimuth[..., None]
    return (torch.cos(azimuth) * u + torch.sin(azimuth) * v) * sin_polar + w * cos_polar


@torch.no_grad()
def visibility_labels(
    sdf_fn: SdfFn,
    inv_s: float | torch.Tensor,
    points: torch.Tensor,
    dirs: torch.Tensor,
    far: float | torch.Tensor,
    n_samples: int = 64,
    threshold: float = 0.95,
    chunk: int = 4096,
) -> torch.Tensor:
    """Which secondary rays are occluded, by NeuS-rendering the SDF along them.

    Each ray x + t d, t in [0.02 far, far] (the original: far = the scene diameter), is sampled at
    ``n_samples`` evenly spaced t (the original's 32 uniform + 32 importance samples make 64);
    NeuS's discrete opacity between consecutive samples, alpha = (Phi(s f_i) - Phi(s f_i+1)) /
    Phi(s f_i) with Phi the logistic and s = inv_s, accumulates to the ray's opacity
    1 - prod(1 - alpha); the ray is occluded when that exceeds ``threshold`` (0.95).

    Args:
        sdf_fn: (K, 3) world points -> (K,) or (K, 1) signed distances.
        inv_s: NeuS sharpness s (``deviation_network``'s exp(10 variance)).
        points, dirs: (P, 3) ray origins (surface points) and unit directions.
        far: float or (P,) ray lengths.
        chunk: rays per ``sdf_fn`` call (times ``n_samples`` points).

    Returns:
        (P,) bool, True where occluded.
    """
    if points.ndim != 2 or points.shape[-1] != 3 or dirs.shape != points.shape:
        raise InputError(
            f"points and dirs must both be (P, 3), got {tuple(points.shape)} and "
            f"{tuple(dirs.shape)}"
        )
    if n_samples < 2:
        raise InputError(f"visibility_labels needs n_samples >= 2, got {n_samples}")
    far = torch.as_tensor(far, dtype=points.dtype, device=points.device).reshape(-1)
    if far.numel() not in (1, points.shape[0]):
        raise InputError(f"far must be a number or hold one value per ray, got {far.numel()}")
    far = far.expand(points.shape[0])
    if (far <= 0).any():
        raise InputError("visibility_labels: far must be positive")
    fractions = torch.linspace(0.0, 1.0, n_samples, dtype=points.dtype, device=points.device)
    opacity = []
    for s in range(0, points.shape[0], chunk):
        f = far[s : s + chunk, None]
        t = 0.02 * f + 0.98 * f * fractions  # (C, S)
        samples = points[s : s + chunk, None] + dirs[s : s + chunk, None] * t[..., None]
        sdf = sdf_fn(samples.reshape(-1, 3)).reshape(t.shape)
        opacity.append(neus_opacity(sdf, inv_s))
    if not opacity:
        return torch.zeros(0, dtype=torch.bool, device=points.device)
    return torch.cat(opacity) > threshold


def neus_opacity(sdf: torch.Tensor, inv_s: float | torch.Tensor) -> torch.Tensor:
    """(R, S) SDF values at consecutive ray samples -> (R,) NeuS opacity 1 - prod(1 - alpha_i),
    alpha_i = clip((Phi(s f_i) - Phi(s f_i+1) + 1e-5) / (Phi(s f_i) + 1e-5), 0, 1)."""
    cdf = torch.sigmoid(sdf * inv_s)
    alpha = ((cdf[:, :-1] - cdf[:, 1:] + 1e-5) / (cdf[:, :-1] + 1e-5)).clamp(0.0, 1.0)
    return 1.0 - torch.prod(1.0 - alpha, dim=-1)


def visibility_loss(logits: torch.Tensor, occluded: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (K, 2) logits against the labels (K,) bool occluded (target class 1 =
    visible), averaged; 0 when there is no ray (a batch without surface hits)."""
    if logits.shape[0] != occluded.reshape(-1).shape[0]:
        raise InputError(
            f"visibility_loss: {logits.shape[0]} predictions for {occluded.numel()} labels"
        )
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, 2), (~occluded.reshape(-1).bool()).long())
