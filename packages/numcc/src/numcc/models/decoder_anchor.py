"""NU-MCC's ``decoderl1``: M anchor tokens attend to the encoder's tokens and become anchor
points with features (trained towards farthest-point samples of the object)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from numcc.models.layers import (
    IMG_SIZE,
    PATCH_SIZE,
    PUBLISHED,
    ModelSizes,
    frozen_pos_embed,
    init_vit_weights,
    vit_blocks,
)

DECODER_EPS = 1e-5  # plain nn.LayerNorm in the original


class Anchors(NamedTuple):
    """What ``decoderl1`` gives ``decoderl2`` (the original's ``fea`` dict, same names).

    anchors_xyz: (B, M, 3) anchor positions, in the (shrunk) input frame.
    anchors_feats: (B, M, D) anchor features.
    global_feats: (B, D) the normed first token.
    """

    anchors_xyz: torch.Tensor
    anchors_feats: torch.Tensor
    global_feats: torch.Tensor


class DecoderPredictCenters(nn.Module):
    """Keys: decoder_embed, decoder_pos_embed (frozen), init_embedding (M rows),
    decoder_blocks.i, decoder_norm, decoder_pred (D + 3 outputs).

    Args:
        sizes: encoder width (input 2 x embed_dim) and decoder width and depth.
        n_groups: M, the number of anchors (200 in udf-ep99.pth, 550 in the Hypersim one).
        drop_path: drop-path rate of the blocks (args.drop_path).
    """

    def __init__(self, sizes: ModelSizes = PUBLISHED, n_groups: int = 200, drop_path=0.0):
        super().__init__()
        dim = sizes.decoder_embed_dim
        self.decoder_embed = nn.Linear(2 * sizes.embed_dim, dim)
        self.init_embedding = nn.Embedding(n_groups, dim)
        self.decoder_pos_embed = frozen_pos_embed(dim, IMG_SIZE // PATCH_SIZE)
        self.decoder_blocks = vit_blocks(
            dim,
            sizes.decoder_depth,
            sizes.decoder_num_heads,
            sizes.mlp_ratio,
            drop_path,
            DECODER_EPS,
        )
        self.decoder_norm = nn.LayerNorm(dim, eps=DECODER_EPS)
        self.decoder_pred = nn.Linear(dim, dim + 3)
        for module in (
            self.decoder_embed,
            self.decoder_blocks,
            self.decoder_norm,
            self.decoder_pred,
        ):
            module.apply(init_vit_weights)

    def forward(self, latent: torch.Tensor) -> Anchors:
        """(B, 197, 2 x embed_dim) encoder tokens -> anchors.

        The anchor tokens are ``init_embedding`` plus the embedded first token; they get no
        position embedding, and attention over all tokens is unmasked.
        """
        y = self.decoder_embed(latent)
        anchors = self.init_embedding.weight[None] + y[:, :1]
        y = torch.cat([y + self.decoder_pos_embed, anchors], dim=1)
        for block in self.decoder_blocks:
            y = block(y)
        y = self.decoder_norm(y)
        pred = self.decoder_pred(y[:, -len(self.init_embedding.weight) :])
        return Anchors(pred[..., :3], pred[..., 3:], y[:, 0])
