"""NU-MCC (``NUMCC``): the MCC encoder, the anchor decoder ``decoderl1``, the neighbourhood
decoder ``decoderl2`` and ``fc_out`` (ReLU, Linear(512, 1 + 3 x 256)).

Evaluation runs the encoder and anchors once (:meth:`NUMCC.encode`) and the neighbourhood
decoder per chunk of queries (:meth:`NUMCC.decode`); :meth:`NUMCC.forward` is both at once, as
the original's training forward.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from numcc.models.decoder_anchor import Anchors, DecoderPredictCenters
from numcc.models.decoder_feature import ORIGINAL_GRID, FeatureAggregator, SeenPixels, seen_pixels
from numcc.models.encoder import MCCEncoder
from numcc.models.layers import (
    N_COLOUR_BINS,
    PUBLISHED,
    ModelSizes,
    preprocess_img,
    shrink_points_beyond_threshold,
)

ENCODER_EPS = 1e-5  # NU-MCC builds its encoder with plain nn.LayerNorm


class Encoding(NamedTuple):
    """What the decoders need of one batch of inputs.

    anchors: decoderl1's output.
    fine_rgb: (B, 3, h, w) the normalised image the pixel colours are read from.
    seen: the packed seen points (the high-resolution map when given).
    """

    anchors: Anchors
    fine_rgb: torch.Tensor
    seen: SeenPixels


class NUMCC(nn.Module):
    """NU-MCC, built from the original's flags.

    Args:
        args: n_groups, nneigh, nn_seen, no_fine, drop_path, shrink_threshold, xyz_size;
            optional ``hr_index`` ("fixed", the default, or "original": the --hr pixel
            indexing of the original, see :func:`~numcc.models.decoder_feature.seen_pixels`).
        sizes: widths and depths (the published model by default).
    """

    def __init__(self, args, sizes: ModelSizes = PUBLISHED):
        super().__init__()
        self.shrink_threshold = args.shrink_threshold
        self.xyz_size = args.xyz_size
        self.original_hr_index = getattr(args, "hr_index", "fixed") == "original"
        self.encoder = MCCEncoder(sizes, args.drop_path, ENCODER_EPS)
        self.decoderl1 = DecoderPredictCenters(sizes, args.n_groups, args.drop_path)
        self.decoderl2 = FeatureAggregator(sizes, args.nneigh, args.nn_seen, args.no_fine)
        self.fc_out = nn.Sequential(nn.ReLU(), nn.Linear(sizes.hidden_dim, 1 + 3 * N_COLOUR_BINS))

    @torch.no_grad()
    def reset_geometry_head(self) -> None:
        """--reset_geo: the distance (or occupancy) output restarts near 0.001, its weights
        uniform in [0, 1e-4), the colour outputs untouched (the original's re-initialisation)."""
        head = self.fc_out[1]
        head.weight[0] = torch.rand_like(head.weight[0]) * 1e-4
        head.bias[0] = 0.001

    def encode(
        self,
        seen_images: torch.Tensor,
        seen_xyz: torch.Tensor,
        valid_seen_xyz: torch.Tensor,
        seen_xyz_hr: torch.Tensor | None = None,
        valid_seen_xyz_hr: torch.Tensor | None = None,
        autocast: bool = False,
    ) -> Encoding:
        """Encoder and anchor decoder on one batch.

        Args:
            seen_images: (B, 3, S, S) RGB in [0, 1], S = 224 or 800.
            seen_xyz: (B, 112, 112, 3) seen points (invalid ones may be inf).
            valid_seen_xyz: (B, 112, 112) bool.
            seen_xyz_hr, valid_seen_xyz_hr: a denser map (--hr) for the pixel lookups; the
                fine colour map is then the image at that map's size.
            autocast: run the encoder under CUDA autocast (the original's training forward).
        """
        images = preprocess_img(seen_images)
        fine_rgb, pixels = None, (seen_xyz, valid_seen_xyz)
        if seen_xyz_hr is not None:
            res = self.xyz_size if self.original_hr_index else seen_xyz_hr.shape[2]
            fine_rgb = preprocess_img(seen_images, res=res)
            pixels = (seen_xyz_hr, valid_seen_xyz_hr)
        seen_xyz = shrink_points_beyond_threshold(seen_xyz, self.shrink_threshold)
        with torch.autocast("cuda", enabled=autocast and images.is_cuda):
            latent, fine_rgb = self.encoder(images, seen_xyz, valid_seen_xyz, fine_rgb)
        # The encoder's last LayerNorms and the fine map come out in float32 under autocast.
        return Encoding(self.decoderl1(latent), fine_rgb, self._seen(*pixels))

    def _seen(self, xyz: torch.Tensor, valid: torch.Tensor) -> SeenPixels:
        xyz = shrink_points_beyond_threshold(xyz, self.shrink_threshold)
        if self.original_hr_index:
            return seen_pixels(xyz, valid, self.xyz_size, ORIGINAL_GRID)
        return seen_pixels(xyz, valid)

    def decode(self, encoding: Encoding, query_xyz: torch.Tensor) -> torch.Tensor:
        """(B, Q, 3) queries -> (B, Q, 1 + 768): channel 0 the unsigned distance (or the
        occupancy logit with --geo occ), then 256 colour logits for R, G and B.

        Queries beyond shrink_threshold are shrunk like the seen points (differentiably, so
        the Repulsive UDF can follow the gradient)."""
        query_xyz = shrink_points_beyond_threshold(query_xyz, self.shrink_threshold)
        net = self.decoderl2(query_xyz, encoding.seen, encoding.anchors, encoding.fine_rgb)
        return self.fc_out(net)

    def forward(
        self,
        seen_images: torch.Tensor,
        seen_xyz: torch.Tensor,
        query_xyz: torch.Tensor,
        valid_seen_xyz: torch.Tensor,
        seen_xyz_hr: torch.Tensor | None = None,
        valid_seen_xyz_hr: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The original's forward: (out (B, Q, 769), anchors_xyz (B, M, 3)); the encoder runs
        under autocast on CUDA, as in the authors' training."""
        encoding = self.encode(
            seen_images, seen_xyz, valid_seen_xyz, seen_xyz_hr, valid_seen_xyz_hr, autocast=True
        )
        return self.decode(encoding, query_xyz), encoding.anchors.anchors_xyz
