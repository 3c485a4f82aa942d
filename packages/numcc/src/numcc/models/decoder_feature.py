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
QUERY_BLOCK_CPU = 512  # queries per pass through decoderl2's layers on a CPU


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


def nearest_seen_slots(query_xyz: torch.Tensor, seen: SeenPixels, k: int) -> torch.Tensor:
    """The k nearest valid seen points of each (B, Q, 3) query, nearest first, as (B, Q, k)
    indices into ``seen.xyz`` and ``seen.pixel``.

    With fewer than k valid points the rest are invalid pixels at FAR in raster order, as the
    original's sort of all pixels (invalid ones at FAR) gives when its ties keep that order.
    """
    idx = knn_points(query_xyz.detach(), seen.xyz, lengths2=seen.lengths, K=k).idx
    slot = torch.arange(k, device=idx.device)
    return torch.where(slot < seen.lengths[:, None, None], idx, slot)


def nearest_seen(query_xyz: torch.Tensor, seen: SeenPixels, k: int):
    """The k nearest valid seen points of each (B, Q, 3) query (see
    :func:`nearest_seen_slots`): their raster indices (B, Q, k) and coordinates (B, Q, k, 3)."""
    idx = nearest_seen_slots(query_xyz, seen, k)
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


def _mlp(width_in: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width_in, width), nn.ReLU(), nn.Linear(width, width))


def _composed(outer: nn.Linear, inner: nn.Linear | None):
    """Weight and bias of ``outer(inner(x))`` as one affine map (``outer`` is bias-free), so
    that a narrow input reaches ``outer``'s width in one product; just ``outer`` without
    ``inner``."""
    if inner is None:
        return outer.weight, None
    return outer.weight @ inner.weight, outer(inner.bias)


class AnchorTokens(NamedTuple):
    """What ``ct1`` attends to besides the pixels, projected once per decoder call rather than
    once per query and neighbour (the projections are linear, so they commute with gathers).

    rows: (B, M, 2 D + 3) per anchor: query - key, value and position.
    anchors_xyz: (B, M, 3) the anchor positions, to find each query's nearest.
    query: (B, D) the global query ``w_qs``.
    global_logit: (B, D) the global token's attention logits fc_gamma(query - key), the same
        for every query since that token has no position term.
    global_value: (B, D) its value.
    """

    rows: torch.Tensor
    anchors_xyz: torch.Tensor
    query: torch.Tensor
    global_logit: torch.Tensor
    global_value: torch.Tensor


class CrossTransformerBlock(nn.Module):
    """``ct1``: the query's tokens are its ``nneigh`` nearest anchors (keys ``w_ks``, values
    ``w_vs``), its nearest seen pixels' colour features (``w_kc``, ``w_vc``; absent with
    --no_fine 1) and the global token (``w_k_global``, ``w_v_global``); the query is
    ``w_qs`` of the global token; ``fc_delta`` encodes query - token position.

    Point-Transformer attention: one softmax per channel over the tokens, no sqrt(d); the
    output is the sum over tokens of softmax(fc_gamma(q - k + delta)) * (v + delta), with
    delta = 0 for the global token.
    """

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

    def anchor_tokens(self, anchors: Anchors) -> AnchorTokens:
        """The anchors' and the global token's projections, for any number of queries."""
        xyz, feats, global_feats = anchors
        query = self.w_qs(global_feats)
        rows = torch.cat([query[:, None] - self.w_ks(feats), self.w_vs(feats), xyz], dim=-1)
        global_logit = self.fc_gamma(query - self.w_k_global(global_feats))
        return AnchorTokens(rows, xyz, query, global_logit, self.w_v_global(global_feats))

    def attend(
        self,
        query_xyz: torch.Tensor,
        tokens: AnchorTokens,
        pixel_feats: torch.Tensor | None = None,
        pixel_xyz: torch.Tensor | None = None,
        pixel_embed: nn.Linear | None = None,
    ) -> torch.Tensor:
        """:meth:`forward` with the anchors already projected.

        With ``pixel_embed`` (decoderl2's ``fc_s``), ``pixel_feats`` are its inputs: it is
        folded into ``w_kc`` and ``w_vc``, so the D_in-wide pixel features are never formed.
        """
        idx = knn_points(query_xyz.detach(), tokens.anchors_xyz.detach(), K=self.nneigh).idx
        D = tokens.query.shape[-1]
        query_minus_key, values, located = knn_gather(tokens.rows, idx).split([D, D, 3], -1)
        if pixel_feats is not None:
            keys = F.linear(pixel_feats, *_composed(self.w_kc, pixel_embed))
            query = tokens.query[:, None, None]
            query_minus_key = torch.cat([query_minus_key, query - keys], dim=2)
            pixel_values = F.linear(pixel_feats, *_composed(self.w_vc, pixel_embed))
            values = torch.cat([values, pixel_values], dim=2)
            located = torch.cat([located, pixel_xyz], dim=2)
        delta = self.fc_delta(query_xyz[:, :, None] - located)
        logits = self.fc_gamma(query_minus_key + delta)
        B, Q, T, _ = logits.shape
        global_logit = tokens.global_logit[:, None, None].expand(B, Q, 1, D)
        weights = torch.softmax(torch.cat([logits, global_logit], dim=2), dim=2)
        located_part = (weights[:, :, :T] * (values + delta)).sum(dim=2)
        return located_part + weights[:, :, T] * tokens.global_value[:, None]

    def forward(
        self,
        query_xyz: torch.Tensor,
        anchors: Anchors,
        pixel_feats: torch.Tensor | None = None,
        pixel_xyz: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, Q, 3) queries, anchors, and (B, Q, S, D_in) / (B, Q, S, 3) pixel features and
        points (None without pixels) -> (B, Q, D)."""
        return self.attend(query_xyz, self.anchor_tokens(anchors), pixel_feats, pixel_xyz)


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

    def seen_colours(self, seen: SeenPixels, fine_rgb: torch.Tensor) -> torch.Tensor:
        """(B, P, 6): the fine map's colour at every entry of ``seen`` (bilinear, border
        padding; the original samples it per query at the query's nearest pixels), then the
        entry's point."""
        grid = pixel_grid(seen.pixel, seen.index_width, seen.grid_size).to(fine_rgb.dtype)
        rgb = F.grid_sample(
            fine_rgb, grid[:, None], mode="bilinear", padding_mode="border", align_corners=True
        )
        return torch.cat([rgb[:, :, 0].transpose(1, 2), seen.xyz], dim=-1)

    def forward(
        self,
        query_xyz: torch.Tensor,
        seen: SeenPixels | None,
        anchors: Anchors,
        fine_rgb: torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, Q, 3) queries -> (B, Q, hidden) features for ``fc_out``. ``seen`` and
        ``fine_rgb`` may be None with --no_fine 1.

        The anchors are projected and the seen pixels' colours read once; on a CPU the
        queries then go through in blocks of QUERY_BLOCK_CPU, whose (block, tokens, width)
        intermediates stay in its cache (a GPU takes them all at once: small blocks would
        leave it idle). A query's features depend on it alone, so blocks change nothing.
        """
        tokens = self.ct1.anchor_tokens(anchors)
        colours = self.seen_colours(seen, fine_rgb) if self.fine else None
        block = QUERY_BLOCK_CPU if query_xyz.device.type == "cpu" else query_xyz.shape[1]
        blocks = query_xyz.split(max(block, 1), dim=1)
        return torch.cat([self._features(q, seen, colours, tokens) for q in blocks], dim=1)

    def _features(self, query_xyz, seen, colours, tokens: AnchorTokens) -> torch.Tensor:
        pixels = ()
        if self.fine:
            idx = nearest_seen_slots(query_xyz, seen, self.nn_seen)
            pixel_rgb, pixel_xyz = knn_gather(colours, idx).split([3, 3], dim=-1)
            pixels = (pixel_rgb, pixel_xyz, self.fc_s)
        lat = self.ct1.attend(query_xyz, tokens, *pixels)
        net = self.fc_p(positional_encoding(query_xyz))
        for fc_c, block in zip(self.fc_c, self.blocks, strict=True):
            net = block(net + fc_c(lat))
        return net
