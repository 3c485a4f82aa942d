"""MCC (Wu et al., CVPR 2023; facebookresearch/MCC), the model NU-MCC improves on.

Its state dict is flat: the encoder's keys at the top level (``patch_embed``, ``blocks.i``,
``xyz_pos_embed``, ...) next to the decoder's (``decoder_embed``, ``decoder_xyz_pos_embed``,
``decoder_pos_embed``, ``decoder_blocks.i``, ``decoder_norm``, ``decoder_pred``), so ``MCC``
is the encoder with a decoder added. LayerNorm eps is 1e-6 everywhere.

The decoder appends one token per query (Linear(3, 512) of its position) to the 197 latent
tokens; each query attends to the latents and to itself only, and the latents to the latents
only. That is computed here without the original's (197 + Q)^2 mask, with the same result,
so a query's prediction does not depend on the others in its chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from numcc.models.encoder import MCCEncoder
from numcc.models.layers import (
    IMG_SIZE,
    N_COLOUR_BINS,
    PATCH_SIZE,
    PUBLISHED,
    ModelSizes,
    frozen_pos_embed,
    init_vit_weights,
    preprocess_img,
    shrink_points_beyond_threshold,
)

MCC_EPS = 1e-6


class MCCDecoderAttention(nn.Module):
    """Multi-head attention (keys ``qkv``, ``proj``) where the last ``n_queries`` tokens see
    the others and themselves, and the others see only each other."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, n_queries: int) -> torch.Tensor:
        B, N, C = x.shape
        L = N - n_queries
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        latent = F.scaled_dot_product_attention(q[:, :, :L], k[:, :, :L], v[:, :, :L])
        scaled = q[:, :, L:] * q.shape[-1] ** -0.5
        logits = torch.cat(
            [scaled @ k[:, :, :L].transpose(-2, -1), (scaled * k[:, :, L:]).sum(-1, keepdim=True)],
            dim=-1,
        )
        weights = logits.softmax(dim=-1)
        queries = weights[..., :L] @ v[:, :, :L] + weights[..., L:] * v[:, :, L:]
        out = torch.cat([latent, queries], dim=2).transpose(1, 2).reshape(B, N, C)
        return self.proj(out)


class MCCDecoderBlock(nn.Module):
    """A pre-norm transformer block (timm's keys: norm1, attn, norm2, mlp.fc1, mlp.fc2) on
    :class:`MCCDecoderAttention`."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MCCDecoderAttention(dim, num_heads)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, n_queries: int) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), n_queries))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class DecodeXYZPosEmbed(nn.Module):
    """The query embedding (key ``pos_embed``: Linear(3, 512))."""

    def __init__(self, dim: int):
        super().__init__()
        self.pos_embed = nn.Linear(3, dim)

    def forward(self, unseen_xyz: torch.Tensor) -> torch.Tensor:
        return self.pos_embed(unseen_xyz)


class MCC(MCCEncoder):
    """MCC, built from its flags.

    Args:
        args: drop_path, shrink_threshold, regress_color (the head then predicts 1 + 3
            values instead of 1 + 3 x 256 logits).
        sizes: widths and depths (the published ViT-B model by default).
    """

    def __init__(self, args, sizes: ModelSizes = PUBLISHED):
        super().__init__(sizes, args.drop_path, MCC_EPS)
        dim = sizes.decoder_embed_dim
        self.shrink_threshold = args.shrink_threshold
        self.decoder_embed = nn.Linear(2 * sizes.embed_dim, dim)
        self.decoder_xyz_pos_embed = DecodeXYZPosEmbed(dim)
        self.decoder_pos_embed = frozen_pos_embed(dim, IMG_SIZE // PATCH_SIZE)
        self.decoder_blocks = nn.ModuleList(
            MCCDecoderBlock(dim, sizes.decoder_num_heads, sizes.mlp_ratio, args.drop_path, MCC_EPS)
            for _ in range(sizes.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dim, eps=MCC_EPS)
        n_colour = 3 if args.regress_color else 3 * N_COLOUR_BINS
        self.decoder_pred = nn.Linear(dim, 1 + n_colour)
        for name in ("decoder_embed", "decoder_xyz_pos_embed", "decoder_blocks", "decoder_pred"):
            getattr(self, name).apply(init_vit_weights)

    def encode(
        self, seen_images: torch.Tensor, seen_xyz: torch.Tensor, valid_seen_xyz: torch.Tensor
    ) -> torch.Tensor:
        """(B, 3, 224 or 800, same) RGB in [0, 1], (B, 112, 112, 3) points, (B, 112, 112)
        validity -> (B, 197, 2 x embed_dim) latent tokens, computed once per object."""
        seen_xyz = shrink_points_beyond_threshold(seen_xyz, self.shrink_threshold)
        return self.forward_encoder(preprocess_img(seen_images), seen_xyz, valid_seen_xyz)

    def forward_decoder(self, latent: torch.Tensor, unseen_xyz: torch.Tensor) -> torch.Tensor:
        """Latent tokens and (B, Q, 3) shrunk queries -> (B, Q, 1 + 768) predictions."""
        x = self.decoder_embed(latent) + self.decoder_pos_embed
        x = torch.cat([x, self.decoder_xyz_pos_embed(unseen_xyz)], dim=1)
        for block in self.decoder_blocks:
            x = block(x, unseen_xyz.shape[1])
        return self.decoder_pred(self.decoder_norm(x[:, -unseen_xyz.shape[1] :]))

    def decode(self, latent: torch.Tensor, query_xyz: torch.Tensor) -> torch.Tensor:
        """(B, Q, 3) queries -> (B, Q, 1 + 768): channel 0 the occupancy logit, then 256
        colour logits for R, G and B (3 colour values with --regress_color)."""
        query_xyz = shrink_points_beyond_threshold(query_xyz, self.shrink_threshold)
        return self.forward_decoder(latent, query_xyz)

    def forward(
        self,
        seen_images: torch.Tensor,
        seen_xyz: torch.Tensor,
        unseen_xyz: torch.Tensor,
        valid_seen_xyz: torch.Tensor,
    ) -> torch.Tensor:
        """The original's forward without its loss (see :meth:`forward_loss`): predictions
        (B, Q, 1 + 768) for the queries ``unseen_xyz``."""
        return self.decode(self.encode(seen_images, seen_xyz, valid_seen_xyz), unseen_xyz)

    @staticmethod
    def forward_loss(
        pred: torch.Tensor,
        unseen_occupy: torch.Tensor,
        unseen_rgb: torch.Tensor,
        occupancy_weight: float = 1.0,
        rgb_weight: float = 0.01,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MCC's loss terms: occupancy BCE on channel 0 over all queries, and the colour loss
        over the occupied ones (256-way cross-entropy on round(255 rgb), or MSE when the head
        regresses colours); the colour term is 0 when no query is occupied.

        Args:
            pred: (B, Q, 1 + 768) or (B, Q, 4) predictions.
            unseen_occupy: (B, Q) 0/1 labels.
            unseen_rgb: (B, Q, 3) colours in [0, 1].
        """
        occ = F.binary_cross_entropy_with_logits(pred[..., 0], unseen_occupy.float())
        occupied = unseen_occupy.bool()
        if not occupied.any():
            return occ * occupancy_weight, pred.new_zeros(())
        colours = pred[..., 1:][occupied]
        if colours.shape[-1] == 3:
            rgb = F.mse_loss(colours, unseen_rgb[occupied])
        else:
            target = torch.round(unseen_rgb[occupied] * 255).long().reshape(-1)
            rgb = F.cross_entropy(colours.reshape(-1, N_COLOUR_BINS), target)
        return occ * occupancy_weight, rgb * rgb_weight
