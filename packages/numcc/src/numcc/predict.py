"""A coloured point cloud from a decoder: Repulsive UDF on the distance channel (NU-MCC),
occupancy thresholding (``--geo occ``, MCC), and the colour of the final points.

``decode`` maps (N, 3) queries to the raw (N, 1 + 3 x 256) output of the model's last layer:
channel 0 the unsigned distance (or occupancy logit), then 256 colour logits for R, G and B.
NU-MCC's colour is the most likely bin / 255; MCC's demo takes the softmax expectation at
temperature 0.1 (``colour="expectation"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from numcc.udf import extract_points

Decoder = Callable[[torch.Tensor], torch.Tensor]
COLOUR_MODES = ("argmax", "expectation")
MCC_TEMPERATURE = 0.1


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
        return (weights * torch.arange(256, dtype=weights.dtype)).sum(-1) / 255.0
    raise ValueError(f"colour mode must be one of {COLOUR_MODES}, got {mode!r}")


def predict_udf(
    decode: Decoder, queries: torch.Tensor, args, colour: str = "argmax"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points by Repulsive UDF (args: udf_threshold, udf_n_iter, repulsive, n_query_udf,
    repel) and their colours."""

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
    )
    out = decode_chunks(decode, points, args.n_query_udf)
    return points, colours(out[:, 1:], colour)


def predict_occupancy(
    decode: Decoder, queries: torch.Tensor, args, colour: str = "argmax"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The queries whose occupancy probability exceeds eval_score_threshold, with colours."""
    out = decode_chunks(decode, queries, args.n_query_udf)
    keep = torch.sigmoid(out[:, 0]) > args.eval_score_threshold
    return queries[keep], colours(out[keep, 1:], colour)
