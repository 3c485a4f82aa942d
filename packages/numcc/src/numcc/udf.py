"""Points on the surface of an unsigned distance field: NU-MCC's Repulsive UDF.

Queries whose predicted distance is below ``udf_threshold`` are the candidates. Each of
``udf_n_iter`` iterations moves every candidate down the field onto its zero level,
``p <- p - normalize(grad u(p)) * u(p)`` with the raw prediction u, then pushes the candidates
apart: each point is repelled by its 17 nearest candidates (itself included, at zero offset)
with strength 0.001 (p - q) / |p - q|^4, squared distances clamped at 1e-3, each component of
the summed push clamped to +-0.03. Without the push (``repulsive=False``) it is plain UDF
projection, which piles points where the grid's queries land.

The field is any function of (N, 3) points returning (N,) distances whose value at a point
depends on that point only (NU-MCC's decoder: each query attends to its own neighbours), so the
gradient of the sum is each point's own gradient; its weights get no gradient here.

Scope of the push (``repel``): ``"chunk"`` (default) repels among the candidates of one query
chunk only, as the original, whose chunks of ``n_query_udf`` queries are slabs of the
evaluation grid: this reproduces the published numbers. ``"all"`` repels among every
candidate of the object (the exact nearest neighbours come from geomkit.ops.knn_points, so it
costs about the same), which removes the seams where the slabs meet.

The defaults are the original algorithm, constants and order. Two opt-in keywords of
``extract_points``, both off by default so that the published numbers are reproduced:
``final_projection`` (one more projection after the last push, so the points end on the
field's zero level) and ``push_spacing`` (the same push law, constants and clamp, applied in
units in which the candidates' mean nearest-neighbour distance is ``push_spacing``;
RELATIVE_PUSH_SPACING = 0.3 measured best, near the 0.32 at which the original's nearest-point
push alone reaches its clamp). The uniform setting is ``repel="all", final_projection=True,
push_spacing=0.3``.

Measured on exact fields, a unit sphere and a torus (R 1, r 0.3), from the evaluation grid and
from the --run_viz queries (216k uniform, inside the surface's box +- 0.3), about 5,900 / 5,500
candidates (tests/numcc/test_udf.py; table: python -m tools.bench.bm_numcc_udf). "Spacing CoV"
is the coefficient of variation of each point's nearest-neighbour distance:

- Plain projection lands on the surface (|u| < 2e-7), spacing CoV 0.42 / 0.53 (sphere grid /
  viz), 0.59 / 0.53 (torus). From the grid, 4 % (sphere), 6 % (torus), 22 % (sphere r 0.5) of
  the points coincide with another (queries on one surface normal land on one point); no push
  separates them (zero offset, and the same neighbours, so the same push).
- The original (default) misses "within 0.01": its last move is a push, mean distance to the
  surface 0.016 - 0.020 (Euclidean; Chamfer-L1 accuracy 0.020 - 0.024), max 0.052, one clamped
  push. The push is saturated: the candidates are ~0.025 apart, 0.001 / d^3 > 0.03 for d < 0.32,
  so 95-100 % of the push components sit at +-0.03 from the first iteration and every point
  steps 0.052, twice the mean spacing, along a cube diagonal. Below the squared-distance floor
  (d < 0.032) the push is 1000 (p - q), linear in the offset, so the two points of a close pair
  (< 0.01) mostly get the same clamped push (60-76 % of them from the second iteration) and move
  in lockstep, while pairs ~0.025 apart are thrown past each other; the mean spacing shrinks
  (0.025 -> 0.015 with "all") and the spacing CoV grows: on the surface (with final_projection)
  0.42 -> 0.60, 0.53 -> 0.58, 0.59 -> 0.62, 0.53 -> 0.73; 0.83 / 0.69 / 0.84 / 0.73 with "all"
  (off surface). Density (points per 0.1-ball) is evened out from random queries (CoV 0.26 ->
  0.16, 0.27 -> 0.19) but not from the grid (0.10 -> 0.16, 0.13 -> 0.17). The chunk seams are
  not the cause ("all" is worse), but the slabs interpenetrate: 65 % of the points end with a
  nearest neighbour from another chunk (27 % before the push).
- final_projection alone: on the surface (|u| < 2e-7, Chamfer-L1 accuracy 0.0018 against a 2M
  sample, its floor) but spacing CoV as above, worse than plain.
- repel="all", final_projection, push_spacing=0.3: on the surface, spacing CoV 0.22 / 0.09
  (sphere grid / viz), 0.25 / 0.10 (torus), 0.48 (plain 0.62: sphere r 0.5 grid, 16 % coincident
  points), density CoV 0.10 / 0.15, coverage (surface -> points) 11-22 % closer than plain.
  Scale-free: from 1M random queries (27k / 25k candidates) 0.09 as well (plain 0.52), where the
  original's constants give 0.91 / 0.95 ("all", final_projection) and a fixed clamp of 0.005,
  good at 216k, gives 0.75. With repel="chunk" the seams remain: sphere grid 0.43 (plain 0.42),
  torus grid 0.44; the viz queries' chunks are random subsets of the object, whose union is not
  even (unit sphere, 2 chunks: 0.41; 1M queries, 7 chunks: 0.48).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from geomkit.ops import knn_gather, knn_points

UDF_THRESHOLD = 0.23
UDF_N_ITER = 10
MAX_UDF = 0.5  # predictions and targets are clamped here (training loss and candidates)
REPULSION_NEIGHBOURS = 17  # 16 others plus the point itself
REPULSION_STRENGTH = 1e-3
MIN_SQUARED_DISTANCE = 1e-3
MAX_PUSH = 0.03
REPEL_SCOPES = ("chunk", "all")
# push_spacing measured best (module docstring); near the spacing at which the original's push
# from the nearest point alone reaches its clamp, (REPULSION_STRENGTH / MAX_PUSH)^(1/3) = 0.32.
RELATIVE_PUSH_SPACING = 0.3

Field = Callable[[torch.Tensor], torch.Tensor]


def repulsion(points: torch.Tensor, spacing: float | None = None) -> torch.Tensor:
    """The push on each of (N, 3) points from its nearest neighbours among them (N, 3).

    ``spacing`` None (or 0): the original, its constants in world units. A positive float: the
    same law in units in which the points' mean nearest-neighbour distance h is ``spacing``,
    lam R(p / lam) with lam = h / spacing (strength x lam^4, the squared-distance floor x lam^2,
    the clamp x lam), so the push is the same relative to the points' spacing whatever the
    query density or object size.
    """
    if len(points) < 2:
        return torch.zeros_like(points)
    k = min(REPULSION_NEIGHBOURS, len(points))
    knn = knn_points(points[None], points[None], K=k)
    offsets = points[:, None] - knn_gather(points[None], knn.idx)[0]  # (N, k, 3)
    squared = knn.dists[0]
    strength, floor, limit = REPULSION_STRENGTH, MIN_SQUARED_DISTANCE, MAX_PUSH
    if spacing:
        if spacing < 0:
            raise ValueError(f"spacing must be positive, got {spacing}")
        # Column 1 is the nearest other point (0 for a coincident one): self and it are the
        # two smallest distances.
        scale = squared[:, 1].clamp(min=0).sqrt().mean() / spacing
        if scale == 0:  # every point coincides with another: no offset to push along
            return torch.zeros_like(points)
        strength, floor, limit = strength * scale**4, floor * scale**2, limit * scale
    push = strength * (offsets / squared.clamp(min=floor)[..., None] ** 2).sum(dim=1)
    return push.clamp(-limit, limit)


def project_step(field: Field, points: torch.Tensor) -> torch.Tensor:
    """One move of each point along the field's normalised gradient by its predicted distance."""
    with torch.enable_grad():
        leaf = points.detach().requires_grad_(True)
        distance = field(leaf)
        (gradient,) = torch.autograd.grad(distance.sum(), leaf)
    return points.detach() - F.normalize(gradient, dim=-1) * distance.detach()[:, None]


def move_points(
    field: Field,
    points: torch.Tensor,
    n_iter: int = UDF_N_ITER,
    repulsive: bool = True,
    chunk_size: int | None = None,
    final_projection: bool = False,
    push_spacing: float | None = None,
) -> torch.Tensor:
    """``n_iter`` rounds of projection (the field evaluated ``chunk_size`` points at a time),
    each followed by the push among all ``points`` when ``repulsive``; with
    ``final_projection`` one more projection after the last push."""

    def project(points: torch.Tensor) -> torch.Tensor:
        parts = points.split(chunk_size) if chunk_size else (points,)
        return torch.cat([project_step(field, part) for part in parts])

    for _ in range(n_iter):
        points = project(points)
        if repulsive:
            points = points + repulsion(points, push_spacing)
    if final_projection and repulsive and n_iter > 0:
        points = project(points)
    return points


@torch.no_grad()
def candidates(field: Field, queries: torch.Tensor, threshold: float = UDF_THRESHOLD):
    """The queries whose clamped, rectified prediction is below ``threshold``."""
    distance = field(queries).relu().clamp(max=MAX_UDF)
    return queries[distance < threshold]


def extract_points(
    field: Field,
    queries: torch.Tensor,
    chunk_size: int = 12000,
    threshold: float = UDF_THRESHOLD,
    n_iter: int = UDF_N_ITER,
    repulsive: bool = True,
    repel: str = "chunk",
    final_projection: bool = False,
    push_spacing: float | None = None,
) -> torch.Tensor:
    """Surface points of ``field`` from (Q, 3) queries taken ``chunk_size`` at a time.

    The defaults are the original's algorithm. Opt-in (module docstring): ``repel="all"``,
    ``final_projection=True`` (one projection after the last push, onto the zero level) and
    ``push_spacing`` (the push in units of the candidates' spacing; RELATIVE_PUSH_SPACING = 0.3
    measured best; None or 0 = the original's world units).

    Returns:
        (P, 3) points, the moved candidates of every chunk in query order.
    """
    if repel not in REPEL_SCOPES:
        raise ValueError(f"repel must be one of {REPEL_SCOPES}, got {repel!r}")
    if push_spacing is not None and push_spacing < 0:
        raise ValueError(f"push_spacing must be positive, got {push_spacing}")
    options = dict(final_projection=final_projection, push_spacing=push_spacing)
    chunks = [candidates(field, c, threshold) for c in queries.split(chunk_size)]
    if repel == "chunk":
        moved = [move_points(field, c, n_iter, repulsive, **options) for c in chunks if len(c)]
        return torch.cat(moved) if moved else queries.new_zeros(0, 3)
    return move_points(field, torch.cat(chunks), n_iter, repulsive, chunk_size, **options)


def evaluation_grid(world_size: float = 3.0, granularity: float = 0.1) -> torch.Tensor:
    """NU-MCC's evaluation queries: an N^3 grid, N = ceil(2 world_size / granularity), at
    (i - N/2) 2 world_size / N for i < N, so [-world_size, world_size) in steps of about
    granularity, x slowest
    (60^3 = 216,000 points in [-3.0, 2.9] by default). (N^3, 3) float32."""
    n = math.ceil(2 * world_size / granularity)
    axis = (torch.arange(n, dtype=torch.float32) - n / 2.0) / ((n / 2.0) / world_size)
    return torch.cartesian_prod(axis, axis, axis)
