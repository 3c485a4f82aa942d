"""NU-MCC's ``decoderl2``: per query, vector attention over its nearest anchors, the colours
at its nearest seen pixels and the global token, then a NeRF-encoded ResNet MLP.

Nearest neighbours come from ``geomkit.ops.knn_points`` (no dense query x pixel distances, which
the original materialises: about 7 GB at 48k queries). Invalid pixels are left out by packing
the valid ones first and passing their count as ``lengths``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from geomkit.ops import knn_gather, knn_points
from numcc.models.decoder_anchor import Anchors
from numcc.models.layers import N_FREQUENCIES, ModelSizes, positional_encoding

FAR = 9999.0  # the original's coordinate for invalid pixels
ORIGINAL_GRID = 112  # the original's hard-coded divisor of pixel rows and columns


class SeenPixels(NamedTuple):
    """The seen points of one XYZ map, valid ones packed first for ``knn_points``.

    xyz: (B, P, 3) the valid points in raster order, then FAR for the invalid ones.
    pixel: (B, P) each entry's raster index in the map (row * W + col).
    lengths: (B,) int64 count of valid points.
    index_width: the width that splits a raster index into row and column.
    grid_size: rows and columns are divided by it to reach grid_sample's [-1, 1].
    """

    xyz: torch.Tensor
    pixel: torch.Tensor
    lengths: torch.Tensor
    index_width: int
    grid_size: int


def seen_pixels(
    seen_xyz: torch.Tensor,
    valid_seen_xyz: torch.Tensor,
    index_width: int | None = None,
    grid_size: int | None = None,
) -> SeenPixels:
    """Pack a (B, H, W, 3) map with its (B, H, W) validity for :func:`nearest_seen`.

    By default rows and columns are read with the map's own width W and divided by W. The
    original splits with args.xyz_size and divides by 112 whatever the map: the same for the
    112 map, wrong pixels for a 224 one (--hr); passing ``index_width=args.xyz_size,
    grid_size=ORIGINAL_GRID`` keeps that for weights trained with it.
    """
    B, _, W, _ = seen_xyz.shape
    valid = valid_seen_xyz.reshape(B, -1)
    order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)
    xyz = seen_xyz.reshape(B, -1, 3).gather(1, order[..., None].expand(-1, -1, 3))
    xyz = torch.where(valid.gather(1, order)[..., None], xyz, FAR)
    return SeenPixels(xyz, order, valid.sum(1), index_width or W, grid_size or W)


def nearest_seen(query_xyz: torch.Tensor, seen: SeenPixels, k: int):
    """The k nearest valid seen points of each (B, Q, 3) query, nearest first: their raster
    indices (B, Q, k) and coordinates (B, Q, k, 3).

    With fewer than k valid points the rest are invalid pixels at FAR in raster order, as the
    original's sort of all pixels (invalid ones at FAR) gives when its ties keep that order.
    """
    idx = knn_points(query_xyz.detach(), seen.xyz, lengths2=seen.lengths, K=k).idx
    slot = torch.arange(k, device=idx.device)
    idx = torch.where(slot < seen.lengths[:, None, None], idx, slot)
    B, Q, _ = idx.shape
    pixel = seen.pixel.gather(1, idx.reshape(B, -1)).reshape(B, Q, k)
    return pixel, knn_gather(seen.xyz, idx)


def pixel_grid(pixel: torch.Tensor, index_width: int, grid_size: int) -> torch.Tensor:
    """Raster indices (...) -> grid_sample coordinates (..., 2) = ((col, row) / grid_size -
    0.5) * 2, the original's formula. Read with align_corners=True it lands at col (W - 1) / W,
    up to one pixel short of the centre; kept, as the weights were trained with it."""
    row = torch.div(pixel, index_width, rounding_mode="floor")
    col = pixel % index_width
    return (torch.stack([col, row], dim=-1).float() / grid_size - 0.5) * 2


def vector_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    delta: torch.Tensor,
    fc_gamma: nn.Module,
) -> torch.Tensor:
    """Point-Transformer attention, one softmax per channel over the tokens, no sqrt(d).

    Args:
        query: (B, D) the global query, shared by all queries.
        keys, values: (B, Q, T, D) per query and token.
        delta: (B, Q, T - 1, D) position terms of the located tokens; the last (global)
            token has none.
        fc_gamma: the MLP on query - key + delta.

    Returns:
        (B, Q, D) sum over tokens of softmax(fc_gamma(q - k + delta)) * (v + delta).
    """
    delta = F.pad(delta, (0, 0, 0, 1))
    weights = torch.softmax(fc_gamma(query[:, None, None] - keys + delta), dim=-2)
    return (weights * (values + delta)).sum(dim=-2)


def _mlp(width_in: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width_in, width), nn.ReLU(), nn.Linear(width, width))


class CrossTransformerBlock(nn.Module):
    """``ct1``: the query's tokens are its ``nneigh`` nearest anchors (keys ``w_ks``, values
    ``w_vs``), its nearest seen pixels' colour features (``w_kc``, ``w_vc``; absent with
    --no_fine 1) and the global token (``w_k_global``, ``w_v_global``); the query is
    ``w_qs`` of the global token; ``fc_delta`` encodes query - token position."""

    def __init__(self, dim_inp: int, dim: int, nneigh: int, fine: bool = True):
        super().__init__()
        self.nneigh = nneigh
        self.fc_delta = _mlp(3, dim)
        self.fc_gamma = _mlp(dim, dim)
        for name in ("w_k_global", "w_v_global", "w_qs", "w_ks", "w_vs"):
            setattr(self, name, nn.Linear(dim_inp, dim, bias=False))
        if fine:
            self.w_kc = nn.Linear(dim_inp, dim, bias=False)
            self.w_vc = nn.Linear(dim_inp, dim, bias=False)

    def forward(
        self,
        query_xyz: torch.Tensor,
        anchors: Anchors,
        pixel_feats: torch.Tensor | None = None,
        pixel_xyz: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, Q, 3) queries, anchors, and (B, Q, S, D_in) / (B, Q, S, 3) pixel features and
        points (None without pixels) -> (B, Q, D)."""
        xyz, feats, global_feats = anchors
        idx = knn_points(query_xyz.detach(), xyz.detach(), K=self.nneigh).idx
        keys = [knn_gather(self.w_ks(feats), idx)]
        values = [knn_gather(self.w_vs(feats), idx)]
        located = [knn_gather(xyz, idx)]
        if pixel_feats is not None:
            keys.append(self.w_kc(pixel_feats))
            values.append(self.w_vc(pixel_feats))
            located.append(pixel_xyz)
        B, Q, _ = query_xyz.shape
        keys.append(self.w_k_global(global_feats)[:, None, None].expand(B, Q, 1, -1))
        values.append(self.w_v_global(global_feats)[:, None, None].expand(B, Q, 1, -1))
        delta = self.fc_delta(query_xyz[:, :, None] - torch.cat(located, dim=2))
        return vector_attention(
            self.w_qs(global_feats),
            torch.cat(keys, dim=2),
            torch.cat(values, dim=2),
            delta,
            self.fc_gamma,
        )


class ResnetBlockFC(nn.Module):
    """Occupancy Networks' fully connected residual block (``fc_0``, ``fc_1``; ReLU before
    each, identity shortcut, ``fc_1`` starting at zero)."""

    def __init__(self, size: int):
        super().__init__()
        self.fc_0 = nn.Linear(size, size)
        self.fc_1 = nn.Linear(size, size)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc_1(F.relu(self.fc_0(F.relu(x))))


class FeatureAggregator(nn.Module):
    """``decoderl2``. Keys: ct1, fc_s (pixel colour -> feature; absent with --no_fine 1),
    blocks.i, fc_c.i, fc_p.

    Args:
        sizes: decoder width (anchor features) and hidden width, number of blocks.
        nneigh: nearest anchors per query (args.nneigh).
        nn_seen: nearest seen pixels per query (args.nn_seen).
        no_fine: 1 drops the pixel tokens (args.no_fine).
    """

    def __init__(self, sizes: ModelSizes, nneigh: int = 4, nn_seen: int = 4, no_fine: int = 0):
        super().__init__()
        dim_inp, hidden = sizes.decoder_embed_dim, sizes.hidden_dim
        self.nn_seen = nn_seen
        self.fine = not no_fine
        self.ct1 = CrossTransformerBlock(dim_inp, hidden, nneigh, fine=self.fine)
        if self.fine:
            self.fc_s = nn.Linear(3, dim_inp)
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden) for _ in range(sizes.n_blocks))
        self.fc_c = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(sizes.n_blocks))
        self.fc_p = nn.Linear(6 * N_FREQUENCIES, hidden)

    def sample_grid_features(self, query_xyz, seen: SeenPixels, fine_rgb: torch.Tensor):
        """Features (B, Q, S, D_in) of the fine map's colours at each query's nearest seen
        pixels (bilinear, border padding), and those pixels' points (B, Q, S, 3)."""
        pixel, xyz = nearest_seen(query_xyz, seen, self.nn_seen)
        grid = pixel_grid(pixel, seen.index_width, seen.grid_size).to(fine_rgb.dtype)
        rgb = F.grid_sample(
            fine_rgb, grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        return self.fc_s(rgb.permute(0, 2, 3, 1)), xyz

    def forward(
        self,
        query_xyz: torch.Tensor,
        seen: SeenPixels | None,
        anchors: Anchors,
        fine_rgb: torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, Q, 3) queries -> (B, Q, hidden) features for ``fc_out``. ``seen`` and
        ``fine_rgb`` may be None with --no_fine 1."""
        pixel = self.sample_grid_features(query_xyz, seen, fine_rgb) if self.fine else ()
        lat = self.ct1(query_xyz, anchors, *pixel)
        net = self.fc_p(positional_encoding(query_xyz))
        for fc_c, block in zip(self.fc_c, self.blocks, strict=True):
            net = block(net + fc_c(lat))
        return net
