"""CoCo-INR's SDF network (``ImplicitAttentionNetwork``; keys ``codebook``, ``codebook_attn``,
``coordinate_attn``, ``mlp.<i>``): NeRF-encoded xyz reads the codebook's latents through
coordinate attention; [encoding, attention] goes through a weight-normed Softplus(100) MLP to
[sdf, features]. Geometric init starts it as a sphere with the attention branch disconnected
(only the first layer's raw-xyz columns are non-zero)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cocoinr.models.attention import CodebookAttention, CoordinateAttention
from geomkit.sdf import embedding_width, geometric_init_, nerf_embedding, with_weight_norm


class ImplicitAttentionNetwork(nn.Module):
    """The SDF network, built from the config's ``implicit_network`` block.

    ``codebook`` (n_codes, codebook_dim) is a frozen buffer. ``latents``, the codebook
    attention's output, depend on no input: pass them (from :meth:`latents`) to compute them
    once per step; without them each call computes them, as the original does.
    """

    def __init__(self, codebook: torch.Tensor, feature_vector_size: int,
                 sdf_bounding_sphere: float, d_in: int, d_out: int, dims: Sequence[int],
                 geometric_init: bool = True, bias: float = 1.0, skip_in: Sequence[int] = (),
                 weight_norm: bool = True, multires: int = 0, sphere_scale: float = 1.0,
                 depth: int = 1, num_latents: int = 512, latent_dim: int = 256,
                 latent_heads: int = 8, latent_dim_head: int = 64, num_cross_depth: int = 1,
                 activation: str = "softplus", cross_heads: int = 1, cross_dim_head: int = 64,
                 decoder_ff: bool = True):  # fmt: skip
        super().__init__()
        if skip_in:
            raise ValueError(
                "implicit_network.skip_in must be empty: the original's skip connection "
                "concatenates an undefined input (its configs use none)"
            )
        self.register_buffer("codebook", codebook)
        self.sdf_bounding_sphere, self.sphere_scale = sdf_bounding_sphere, sphere_scale
        self.multires = multires
        width = embedding_width(d_in, multires)
        self.codebook_attn = CodebookAttention(codebook.shape[1], depth, num_latents, latent_dim,
                                               latent_heads, latent_dim_head, cross_heads,
                                               cross_dim_head)  # fmt: skip
        self.coordinate_attn = CoordinateAttention(width, num_cross_depth, activation, latent_dim,
                                                   cross_heads, cross_dim_head, decoder_ff,
                                                   twice_differentiable=True)  # fmt: skip
        sizes = [2 * width, *dims, d_out + feature_vector_size]
        layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        if geometric_init:
            geometric_init_(layers, bias, n_raw=d_in, embedded=True)
        self.mlp = nn.ModuleList(with_weight_norm(x) if weight_norm else x for x in layers)
        self.softplus = nn.Softplus(beta=100)

    def latents(self) -> torch.Tensor:
        """(1, num_latents, latent_dim): the codebook attention's output."""
        return self.codebook_attn(self.codebook[None])

    def forward(self, points: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d_in) points -> (..., d_out + feature_vector_size) [sdf, features]."""
        encoded = nerf_embedding(points, self.multires)
        flat = encoded.reshape(1, -1, encoded.shape[-1])
        attended = self.coordinate_attn(flat, self.latents() if latents is None else latents)
        x = torch.cat([encoded, attended.reshape(encoded.shape)], dim=-1)
        for index, layer in enumerate(self.mlp):
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

    def get_outputs(self, points: torch.Tensor, latents: torch.Tensor | None = None):
        """(sdf, features, d sdf / d points), the gradient differentiable again (eikonal)."""
        points = points.requires_grad_(True)
        output = self(points, latents)
        sdf, features = self._clamped(output[..., :1], points), output[..., 1:]
        (gradient,) = torch.autograd.grad(sdf, points, torch.ones_like(sdf), create_graph=True)
        return sdf, features, gradient
