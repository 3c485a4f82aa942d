"""CoCo-INR's colour networks (``RenderingAttentionNetwork``; keys ``codebook_attn``,
``coordinate_attn``, ``color_mlp``): the rendering input reads the codebook's latents through
coordinate attention, then an MLP and a sigmoid give RGB.

Mode ``idr`` (foreground): [xyz, encoded view direction, normal, SDF features]; mode ``nerf``
(NeRF++ background): [encoded view direction, features]; mode ``no_view_dir`` (IDR's, d_in 6):
[xyz, normal, features], a colour that cannot depend on the view. Without a codebook
(``codebook_dim=None``) the input goes straight to the MLP (VolSDF's plain network).
"""

from __future__ import annotations

import torch
from torch import nn

from cocoinr.models.attention import CodebookAttention, CoordinateAttention
from geomkit.errors import ConfigError
from geomkit.sdf import embedding_width, nerf_embedding

# each mode's raw input width: xyz, view direction, normal (3 each) as it reads them
D_IN = {"idr": 9, "nerf": 3, "no_view_dir": 6}


class RenderingAttentionNetwork(nn.Module):
    """The colour network, built from the config's ``rendering_network`` block; ``latents`` as
    in :class:`cocoinr.models.implicit.ImplicitAttentionNetwork`."""

    def __init__(self, codebook_dim: int | None, feature_vector_size: int, mode: str, d_in: int,
                 d_out: int, multires_view: int = 4, num_layers: int = 3, hidden_dim: int = 256,
                 depth: int = 1, num_latents: int = 512, latent_dim: int = 256,
                 latent_heads: int = 8, latent_dim_head: int = 64, num_cross_depth: int = 1,
                 activation: str = "gelu", cross_heads: int = 1, cross_dim_head: int = 64,
                 decoder_ff: bool = True):  # fmt: skip
        super().__init__()
        if mode not in D_IN:
            raise ConfigError(f"rendering_network.mode must be one of {tuple(D_IN)}, got {mode!r}")
        if d_in != D_IN[mode]:
            raise ConfigError(f"rendering_network.d_in must be {D_IN[mode]} in mode {mode!r}, "
                             f"got {d_in}")  # fmt: skip
        self.mode, self.multires_view = mode, multires_view
        self.attention = codebook_dim is not None
        width = d_in + feature_vector_size
        if mode != "no_view_dir":
            width += embedding_width(3, multires_view) - 3
        if self.attention:
            self.codebook_attn = CodebookAttention(codebook_dim, depth, num_latents, latent_dim,
                                                   latent_heads, latent_dim_head, cross_heads,
                                                   cross_dim_head)  # fmt: skip
            self.coordinate_attn = CoordinateAttention(width, num_cross_depth, activation,
                                                       latent_dim, cross_heads, cross_dim_head,
                                                       decoder_ff)  # fmt: skip
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers.append(nn.Sequential(nn.Linear(width, hidden_dim), nn.ReLU()))
            width = hidden_dim
        self.color_mlp = nn.Sequential(*layers, nn.Linear(width, d_out))

    def latents(self, codebook: torch.Tensor) -> torch.Tensor:
        """(1, num_latents, latent_dim): the codebook attention's output."""
        return self.codebook_attn(codebook[None])

    def forward(self, points, normals, view_dirs, feature_vectors,
                latents: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """(..., 3) points, normals and view directions, (..., F) features -> (..., 3) RGB in
        [0, 1] (``nerf`` mode reads no points or normals, ``no_view_dir`` no view directions)."""
        if self.mode == "no_view_dir":
            parts = [points, normals]
        else:
            views = nerf_embedding(view_dirs, self.multires_view)
            parts = [points, views, normals] if self.mode == "idr" else [views]
        x = torch.cat([*parts, feature_vectors], dim=-1)
        if self.attention:
            x = self.coordinate_attn(x.reshape(1, -1, x.shape[-1]), latents).reshape(x.shape)
        return torch.sigmoid(self.color_mlp(x))
