"""A coloured point cloud from a decoder: Repulsive UDF on the distance channel (NU-MCC),
occupancy thresholding (``--geo occ``, MCC), and the colour of the final points.

``decode`` maps (N, 3) queries to the raw (N, 1 + 3 x 256) output of the model's last layer:
channel 0 the unsigned distance (or occupancy logit), then 256 colour logits for R, G and B.
NU-MCC's colour is the most likely bin / 255; MCC's demo takes the softmax expectation at
temperature 0.1 (``colour="expectation"``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F

from numcc.udf import evaluation_grid, extract_points

Decoder = Callable[[torch.Tensor], torch.Tensor]
COLOUR_MODES = ("argmax", "expectation")
MCC_TEMPERATURE = 0.1
MCC_SCORE_THRESHOLD = 0.1  # MCC's own --eval_score_threshold default
VIZ_QUERIES, VIZ_QUERIES_SAVE_PC = 216_000, 5_000_000
VIZ_MARGIN = 0.3  # visualisation queries are kept within the anchors' box plus this


def object_decoder(model, seen_xyz, seen_rgb, seen_xyz_hr=None):
    """Encode one object once; return (decode, anchors_xyz): decode maps (N, 3) queries to
    (N, 769) outputs, anchors_xyz is (M, 3) for NU-MCC and None for MCC.

    Args:
        seen_xyz: (S, S, 3) with inf where invalid; seen_rgb: (3, H, W) in [0, 1].
        seen_xyz_hr: an optional denser map for the pixel lookups (--hr, NU-MCC only).
    """
    valid = torch.isfinite(seen_xyz).all(-1)
    xyz = torch.where(valid[..., None], seen_xyz, torch.zeros_like(seen_xyz))[None]
    with torch.no_grad():
        if hasattr(model, "decoderl2"):
            hr = ()
            if seen_xyz_hr is not None:
                valid_hr = torch.isfinite(seen_xyz_hr).all(-1)
                hr = (seen_xyz_hr.nan_to_num(posinf=0.0)[None], valid_hr[None])
            encoding = model.encode(seen_rgb[None], xyz, valid[None], *hr)
            anchors = encoding.anchors.anchors_xyz[0]
            return (lambda q: model.decode(encoding, q[None])[0]), anchors
        latent = model.encode(seen_rgb[None], xyz, valid[None])
    return (lambda q: model.decode(latent, q[None])[0]), None


def seen_colour_cloud(seen_xyz: torch.Tensor, seen_rgb: torch.Tensor):
    """The valid points of an (S, S, 3) seen map (inf where invalid) and the (3, H, W) image's
    colours at them (the image averaged down to the map)."""
    valid = torch.isfinite(seen_xyz).all(-1)
    rgb = F.interpolate(seen_rgb[None], size=tuple(valid.shape), mode="area")[0]
    return seen_xyz[valid], rgb.permute(1, 2, 0)[valid]


def chunked_args(args) -> argparse.Namespace:
    """The flags with --n_query_udf divided by (xyz_size_hr / xyz_size)^2 under --hr (NU-MCC),
    as the original: a denser seen map costs more per query."""
    if not (args.hr and args.model == "numcc"):
        return args
    factor = (args.xyz_size / args.xyz_size_hr) ** 2
    return argparse.Namespace(**{**vars(args), "n_query_udf": int(args.n_query_udf * factor)})


def viz_queries(
    anchors_xyz: torch.Tensor | None, n: int, world_size: float, generator: torch.Generator
) -> torch.Tensor:
    """``--run_viz`` queries: ``n`` uniform points in [-world_size, world_size]^3, those
    within the anchors' bounding box +- 0.3 kept (all of them without anchors)."""
    queries = (torch.rand(n, 3, generator=generator) * 2 - 1) * world_size
    if anchors_xyz is None:
        return queries
    low = anchors_xyz.min(0).values.cpu() - VIZ_MARGIN
    high = anchors_xyz.max(0).values.cpu() + VIZ_MARGIN
    return queries[((queries > low) & (queries < high)).all(1)]


def reconstruct(decode: Decoder, queries: torch.Tensor, args, colour: str = "argmax"):
    """(points, colours): Repulsive UDF with --geo udf, occupancy otherwise (MCC's 0.1
    threshold for --model mcc, --eval_score_threshold for NU-MCC's occupancy variant)."""
    if args.geo == "udf" and getattr(args, "model", "numcc") == "numcc":
        return predict_udf(decode, queries, args, colour)
    threshold = MCC_SCORE_THRESHOLD if args.model == "mcc" else args.eval_score_threshold
    return predict_occupancy(decode, queries, args, colour, threshold)


def eval_queries(args) -> torch.Tensor:
    """The evaluation grid of the flags (216,000 points by default)."""
    return evaluation_grid(args.co3d_world_size, args.eval_granularity)


def decode_chunks(decode: Decoder, points: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """The decoder's output on ``points``, ``chunk_size`` at a time, without gradients."""
    if len(points) == 0:
        return points.new_zeros(0, 769)
    with torch.no_grad():
        return torch.cat([decode(part) for part in points.split(chunk_size)])


def colours(logits: torch.Tensor, mode: str = "argmax") -> torch.Tensor:
    """(N, 3) colours in [0, 1] from (N, 768) logits."""
    bins = logits.reshape(-1, 3, 256)
    if mode == "argmax":
        return bins.argmax(dim=-1).float() / 255.0
    if mode == "expectation":
        weights = torch.softmax(bins / MCC_TEMPERATURE, dim=-1)
        levels = torch.arange(256, dtype=weights.dtype, device=weights.device)
        return (weights * levels).sum(-1) / 255.0
    raise ValueError(f"colour mode must be one of {COLOUR_MODES}, got {mode!r}")


def predict_udf(
    decode: Decoder, queries: torch.Tensor, args, colour: str = "argmax"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points by Repulsive UDF (args: udf_threshold, udf_n_iter, repulsive, n_query_udf,
    repel, udf_final_projection, udf_push_spacing) and their colours."""

    def field(q: torch.Tensor) -> torch.Tensor:
        return decode(q)[:, 0]

    points = extract_points(
        field,
        queries,
        chunk_size=args.n_query_udf,
        threshold=args.udf_threshold,
        n_iter=args.udf_n_iter,
        repulsive=bool(args.repulsive),
        repel=args.repel,
        final_projection=bool(args.udf_final_projection),
        push_spacing=args.udf_push_spacing or None,
    )
    out = decode_chunks(decode, points, args.n_query_udf)
    return points, colours(out[:, 1:], colour)


def predict_occupancy(
    decode: Decoder,
    queries: torch.Tensor,
    args,
    colour: str = "argmax",
    threshold: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The queries whose occupancy probability exceeds ``threshold`` (default
    args.eval_score_threshold), with colours."""
    out = decode_chunks(decode, queries, args.n_query_udf)
    threshold = args.eval_score_threshold if threshold is None else threshold
    keep = torch.sigmoid(out[:, 0]) > threshold
    return queries[keep], colours(out[keep, 1:], colour)
