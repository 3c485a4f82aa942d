"""CoCo-INR's SDF network (``ImplicitAttentionNetwork``; keys ``codebook_attn``,
``coordinate_attn``, ``mlp.<i>``): NeRF-encoded xyz reads the codebook's latents through
coordinate attention; [encoding, attention] goes through a weight-normed Softplus(100) MLP to
[sdf, features]. Geometric init starts it as a sphere with the attention branch disconnected
(only the first layer's raw-xyz columns are non-zero).

Without a codebook (``codebook_dim=None``) it is VolSDF's plain network: the encoding alone
goes through the MLP, with IDR's skip connections where ``skip_in`` asks for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cocoinr.models.attention import CodebookAttention, CoordinateAttention
from geomkit.sdf import embedding_width, geometric_init_, nerf_embedding, with_weight_norm


class ImplicitAttentionNetwork(nn.Module):
    """The SDF network, built from the config's ``implicit_network`` block.

    The codebook itself is held by the model that owns the networks (it is stored once per
    checkpoint); :meth:`latents` reads it. The latents depend on no input: compute them once
    per optimisation step and pass them to every call.
    """

    def __init__(self, codebook_dim: int | None, feature_vector_size: int,
                 sdf_bounding_sphere: float, d_in: int, d_out: int, dims: Sequence[int],
                 geometric_init: bool = True, bias: float = 1.0, skip_in: Sequence[int] = (),
                 weight_norm: bool = True, multires: int = 0, sphere_scale: float = 1.0,
                 depth: int = 1, num_latents: int = 512, latent_dim: int = 256,
                 latent_heads: int = 8, latent_dim_head: int = 64, num_cross_depth: int = 1,
                 activation: str = "softplus", cross_heads: int = 1, cross_dim_head: int = 64,
                 decoder_ff: bool = True):  # fmt: skip
        super().__init__()
        self.attention = codebook_dim is not None
        if skip_in and self.attention:
            raise ValueError(
                "implicit_network.skip_in must be empty with the attention on: the original's "
                "skip connection concatenates an undefined input (its configs use none)"
            )
        self.sdf_bounding_sphere, self.sphere_scale = sdf_bounding_sphere, sphere_scale
        self.multires, self.skip_in = multires, tuple(skip_in)
        width = embedding_width(d_in, multires)
        if self.attention:
            self.codebook_attn = CodebookAttention(codebook_dim, depth, num_latents, latent_dim,
                                                   latent_heads, latent_dim_head, cross_heads,
                                                   cross_dim_head)  # fmt: skip
            self.coordinate_attn = CoordinateAttention(
                width, num_cross_depth, activation, latent_dim, cross_heads, cross_dim_head,
                decoder_ff, twice_differentiable=True,
            )  # fmt: skip
        d_mlp = 2 * width if self.attention else width
        sizes = [d_mlp, *dims, d_out + feature_vector_size]
        # a layer feeding a skip layer leaves room for the re-injected input (IDR)
        outs = [b - d_mlp if i + 1 in self.skip_in else b for i, b in enumerate(sizes[1:])]
        layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], outs, strict=True)]
        if geometric_init:
            geometric_init_(layers, bias, n_raw=d_in, embedded=multires > 0, skip_in=skip_in)
        self.mlp = nn.ModuleList(with_weight_norm(x) if weight_norm else x for x in layers)
        self.softplus = nn.Softplus(beta=100)

    def latents(self, codebook: torch.Tensor) -> torch.Tensor:
        """(1, num_latents, latent_dim): the codebook attention's output."""
        return self.codebook_attn(codebook[None])

    def forward(self, points: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d_in) points -> (..., d_out + feature_vector_size) [sdf, features]."""
        encoded = nerf_embedding(points, self.multires)
        x = encoded
        if self.attention:
            flat = encoded.reshape(1, -1, encoded.shape[-1])
            attended = self.coordinate_attn(flat, latents).reshape(encoded.shape)
            x = torch.cat([encoded, attended], dim=-1)
        for index, layer in enumerate(self.mlp):
            if index in self.skip_in:
                x = torch.cat([x, encoded], dim=-1) / math.sqrt(2)
            x = layer(x)
            if index < len(self.mlp) - 1:
                x = self.softplus(x)
        return x

    def sdf(self, points: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """(..., 1) signed distances."""
        return self._clamped(self(points, latents)[..., :1], points)

    def _clamped(self, sdf: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """The SDF clamped by the bounding sphere when it is set, so every ray ends inside."""
        if self.sdf_bounding_sphere <= 0:
            return sdf
        sphere = self.sdf_bounding_sphere - points.norm(dim=-1, keepdim=True)
        return torch.minimum(sdf, self.sphere_scale * sphere)

    def get_outputs(self, points: torch.Tensor, latents: torch.Tensor | None = None,
                    create_graph: bool = True):  # fmt: skip
        """(sdf, features, d sdf / d points); ``create_graph`` keeps the gradient
        differentiable (the eikonal loss and the RGB loss through the normals need it)."""
        with torch.enable_grad():
            points = points.detach().requires_grad_(True)
            output = self(points, latents)
            sdf, features = self._clamped(output[..., :1], points), output[..., 1:]
            (gradient,) = torch.autograd.grad(sdf, points, torch.ones_like(sdf),
                                              create_graph=create_graph)  # fmt: skip
        return sdf, features, gradient

    def gradient(self, points: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """d sdf / d points, differentiable again (the eikonal points)."""
        return self.get_outputs(points, latents)[2]
