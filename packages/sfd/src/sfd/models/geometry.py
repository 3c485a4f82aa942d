"""The Geo-stage networks under the authors' module and key names: the NeuS SDF MLP
(``sdf_network.lin0..``), the learnt sharpness (``deviation_network.variance``), the proxy colour
network (``rendering_network``) and the instance classifier (``point_classify_network``).

Coarse-to-fine: ``progress`` in [0, 1] fades in the positional-encoding bands (BARF's cosine
window). The original multiplies the encoded features reshaped to (-1, multires), which mixes
bands and window entries; here band k's sin and cos columns get window k.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geomkit.sdf import embedding_width, geometric_init_, nerf_embedding, with_weight_norm


def band_window(multires: int, progress: float, device=None) -> torch.Tensor:
    """(multires,) weights: 1 for bands below multires*progress, a cosine ramp, then 0."""
    alpha = multires * float(min(max(progress, 0.0), 1.0))
    k = torch.arange(multires, dtype=torch.float32, device=device)
    return (1 - torch.cos((alpha - k).clamp(0, 1) * math.pi)) / 2


def encode(x: torch.Tensor, multires: int, progress: float = 1.0) -> torch.Tensor:
    """NeRF encoding of (N, 3) points with the coarse-to-fine window applied."""
    if multires <= 0:
        return x
    encoded = nerf_embedding(x, multires)
    if progress >= 1.0:
        return encoded
    window = band_window(multires, progress, x.device).repeat_interleave(2 * x.shape[-1])
    return torch.cat([encoded[:, :3], encoded[:, 3:] * window], dim=-1)


class ImplicitNetwork(nn.Module):
    """IDR's SDF MLP: Softplus(beta=100), a skip connection, geometric init (a sphere of radius
    ``bias``), weight norm; outputs [sdf, feature_vector_size features]."""

    def __init__(
        self,
        feature_vector_size: int,
        d_in: int,
        dims: list[int],
        geometric_init: bool = True,
        bias: float = 1.0,
        skip_in: tuple[int, ...] = (),
        weight_norm: bool = True,
        multires: int = 0,
    ):
        super().__init__()
        self.multires = multires
        self.skip_in = tuple(skip_in)
        self.progress = 1.0
        width = [embedding_width(d_in, multires), *dims, 1 + feature_vector_size]
        layers = []
        for l in range(len(width) - 1):
            out = width[l + 1] - width[0] if l + 1 in self.skip_in else width[l + 1]
            layers.append(nn.Linear(width[l], out))
        if geometric_init:
            geometric_init_(layers, bias, embedded=multires > 0, skip_in=self.skip_in)
        for l, layer in enumerate(layers):
            setattr(self, f"lin{l}", with_weight_norm(layer) if weight_norm else layer)
        self.num_layers = len(layers)
        self.softplus = nn.Softplus(beta=100)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) canonical points -> (N, 1 + F)."""
        inputs = encode(points, self.multires, self.progress)
        x = inputs
        for l in range(self.num_layers):
            if l in self.skip_in:
                x = torch.cat([x, inputs], dim=-1) / math.sqrt(2)
            x = getattr(self, f"lin{l}")(x)
            if l < self.num_layers - 1:
                x = self.softplus(x)
        return x

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        return self.forward(points)[:, 0]


class SingleVarianceNetwork(nn.Module):
    """NeuS's sharpness: inv_s = exp(10 * variance)."""

    def __init__(self, init_val: float):
        super().__init__()
        self.variance = nn.Parameter(torch.tensor(float(init_val)))

    def inv_s(self) -> torch.Tensor:
        return torch.exp(self.variance * 10.0).clip(1e-6, 1e6)


class MappingNetwork(nn.Module):
    """Four linear layers with LeakyReLU(0.2) (keys ``network.0/2/4/6``)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        act = nn.LeakyReLU(0.2)
        self.network = nn.Sequential(
            nn.Linear(d_in, d_hidden), act, nn.Linear(d_hidden, d_hidden), act,
            nn.Linear(d_hidden, d_hidden), act, nn.Linear(d_hidden, d_out),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.network(z)


class FourierColorNetwork(nn.Module):
    """The proxy colour of the Geo stage: an albedo shared by all instances (from the canonical
    point, normal and SDF feature) times a scalar shading that depends on the world position,
    view and normal: colour = sigmoid(albedo MLP) * (relu(s + 1) + 0.01)."""

    def __init__(
        self,
        feature_vector_size: int,
        d_out: int,
        dims: list[int],
        weight_norm: bool = True,
        multires_view: int = 0,
        multires_point: int = 4,
    ):
        super().__init__()
        self.progress = 1.0
        self.multires_view, self.multires_point = multires_view, multires_point
        style_in = (
            feature_vector_size
            + embedding_width(3, multires_point)
            + 2 * embedding_width(3, multires_view)
        )
        self.mapping_network = MappingNetwork(style_in, 128, 1)
        width = [6 + feature_vector_size, *dims, d_out]
        for l in range(len(width) - 1):
            layer = nn.Linear(width[l], width[l + 1])
            setattr(self, f"lin{l}", with_weight_norm(layer) if weight_norm else layer)
        self.render_num_layers = len(width) - 1
        self.relu = nn.ReLU()
        if feature_vector_size > 0:
            # Built and saved by the original but never called: kept so its state dicts load.
            width_pe = embedding_width(3, 6)
            self.linears = nn.Sequential(
                nn.Linear(width_pe, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 3),
            )  # fmt: skip

    def forward(
        self, points_local, normals_local, features, points_world, normals_world, dirs_world
    ):
        style = torch.cat(
            [
                encode(points_world, self.multires_point, self.progress),
                encode(dirs_world, self.multires_view, self.progress),
                encode(normals_world, self.multires_view, self.progress),
                features,
            ],
            dim=-1,
        )
        shading = torch.relu(self.mapping_network(style)[:, :1] + 1.0) + 1e-2
        x = torch.cat([points_local, normals_local, features], dim=-1)
        for l in range(self.render_num_layers):
            x = getattr(self, f"lin{l}")(x)
            if l < self.render_num_layers - 1:
                x = self.relu(x)
        albedo = torch.sigmoid(x[:, :3])
        return {"color": albedo * shading, "albedo": albedo}


class Regression(nn.Module):
    """The instance classifier: a small MLP giving a proxy SDF of the canonical shape; a world
    point belongs to the instance in whose frame this proxy SDF is lowest."""

    def __init__(self, h_dim: int, n_layers: int, multires: int = 6):
        super().__init__()
        self.multires = multires
        layers, width = [], embedding_width(3, multires)
        for _ in range(n_layers - 1):
            layers += [nn.Linear(width, h_dim), nn.ReLU()]
            width = h_dim
        layers.append(nn.Linear(width, 1))
        self.linears = nn.Sequential(*layers)

    def forward(self, points_local: torch.Tensor) -> torch.Tensor:
        """(..., 3) canonical points -> (...) proxy SDF."""
        shape = points_local.shape[:-1]
        flat = points_local.reshape(-1, 3)
        return self.linears(encode(flat, self.multires)).reshape(shape)
