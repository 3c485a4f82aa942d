"""MCC's two-tower encoder, as NU-MCC's ``encoder`` (and MCC's top level) holds it: an RGB ViT on
the 224 px image and an XYZ ViT on 8 x 8 windows of the 112 x 112 seen-point map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import PatchEmbed
from torch import nn

from numcc.models.layers import (
    IMG_SIZE,
    PATCH_SIZE,
    PUBLISHED,
    XYZ_WINDOW,
    ModelSizes,
    frozen_pos_embed,
    init_vit_weights,
    vit_blocks,
)

XYZ_WINDOW_EPS = 1e-6  # the window block's LayerNorm eps in both originals


class XYZPosEmbed(nn.Module):
    """One token per 8 x 8 window of seen points: each valid point is embedded linearly
    (invalid ones get ``invalid_xyz_token``), the window gets the fixed ``two_d_pos_embed``
    and a shared ``cls_token`` in front, one ViT block runs, and its cls output is the token.
    """

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.two_d_pos_embed = frozen_pos_embed(embed_dim, XYZ_WINDOW)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Linear(3, embed_dim)
        self.blocks = vit_blocks(embed_dim, 1, num_heads, mlp_ratio, 0.0, XYZ_WINDOW_EPS)
        self.invalid_xyz_token = nn.Parameter(torch.zeros(embed_dim))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.invalid_xyz_token, std=0.02)

    def forward(self, seen_xyz: torch.Tensor, valid_seen_xyz: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) points and (B, H, W) bool validity -> (B, H/8 * W/8, C) window tokens,
        windows in row-major order."""
        valid = valid_seen_xyz[..., None]
        # Invalid points (inf in the datasets) are zeroed first so no NaN reaches a gradient.
        emb = self.pos_embed(torch.where(valid, seen_xyz, 0.0))
        emb = torch.where(valid, emb, self.invalid_xyz_token)
        B, H, W, C = emb.shape
        w = XYZ_WINDOW
        windows = emb.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, w * w, C) + self.two_d_pos_embed[:, 1:]
        cls = (self.cls_token + self.two_d_pos_embed[:, :1]).expand(len(windows), -1, -1)
        tokens = torch.cat([cls, windows], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return tokens[:, 0].reshape(B, -1, C)


class MCCEncoder(nn.Module):
    """Both towers. Keys: patch_embed, pos_embed (frozen), cls_token, blocks.i, norm (RGB);
    xyz_pos_embed, cls_token_xyz, blocks_xyz.i, norm_xyz (XYZ).

    Args:
        sizes: widths and depths (ViT-B by default).
        drop_path: drop-path rate of every block of both towers (args.drop_path).
        eps: LayerNorm eps of the towers: 1e-5 in NU-MCC (plain nn.LayerNorm), 1e-6 in MCC.
    """

    def __init__(self, sizes: ModelSizes = PUBLISHED, drop_path: float = 0.0, eps: float = 1e-5):
        super().__init__()
        dim, grid = sizes.embed_dim, IMG_SIZE // PATCH_SIZE
        self.patch_embed = PatchEmbed(IMG_SIZE, PATCH_SIZE, 3, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_token_xyz = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = frozen_pos_embed(dim, grid)
        self.xyz_pos_embed = XYZPosEmbed(dim, sizes.num_heads, sizes.xyz_mlp_ratio)
        tower = (dim, sizes.depth, sizes.num_heads, sizes.mlp_ratio, drop_path, eps)
        self.blocks = vit_blocks(*tower)
        self.blocks_xyz = vit_blocks(*tower)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.norm_xyz = nn.LayerNorm(dim, eps=eps)
        self._init_encoder()

    def _init_encoder(self) -> None:
        """MAE's initialisation: the patch projection as a linear layer, small cls tokens."""
        for module in (self.patch_embed, self.xyz_pos_embed, self.blocks, self.blocks_xyz):
            module.apply(init_vit_weights)
        for norm in (self.norm, self.norm_xyz):
            init_vit_weights(norm)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.cls_token_xyz, std=0.02)

    def forward_encoder(
        self, images: torch.Tensor, seen_xyz: torch.Tensor, valid_seen_xyz: torch.Tensor
    ) -> torch.Tensor:
        """Normalised (B, 3, 224, 224) images and (B, 112, 112, 3) points with their validity
        -> (B, 197, 2C) tokens: the RGB tower's and the XYZ tower's, concatenated per token."""
        x = self.patch_embed(images) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        y = self.xyz_pos_embed(seen_xyz, valid_seen_xyz)
        y = torch.cat([self.cls_token_xyz.expand(len(y), -1, -1), y], dim=1)
        for block in self.blocks_xyz:
            y = block(y)
        return torch.cat([self.norm(x), self.norm_xyz(y)], dim=2)

    def forward(
        self,
        seen_images: torch.Tensor,
        seen_xyz: torch.Tensor,
        valid_seen_xyz: torch.Tensor,
        fine_rgb: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NU-MCC's encoder: the tokens and the fine RGB map for the pixel lookups.

        The fine map is the normalised image halved bilinearly (3 x 112 x 112) unless
        ``fine_rgb`` gives one (the high-resolution mode).
        """
        if fine_rgb is None:
            fine_rgb = F.interpolate(seen_images, scale_factor=0.5, mode="bilinear")
        return self.forward_encoder(seen_images, seen_xyz, valid_seen_xyz), fine_rgb
