"""Repulsive UDF on exact unsigned distance fields (a unit sphere, a torus R = 1, r = 0.3).

Issue #9's acceptance: points within 0.01 of the true surface (Chamfer-L1) and more uniform
than plain projection (coefficient of variation, CoV, of the nearest-neighbour spacing). Each
case runs on both of NU-MCC's query sets: the evaluation grid (216,000 at step 0.1, chunks of
12,000 = x-slabs) and the --run_viz queries (216,000 uniform in [-3, 3]^3, those inside the
surface's bounding box +- 0.3 kept). The table over more fields and modes:
python -m tools.bench.bm_numcc_udf.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from numcc.udf import (
    MAX_PUSH,
    RELATIVE_PUSH_SPACING,
    evaluation_grid,
    extract_points,
    move_points,
    project_step,
    repulsion,
)

TORUS_R, TORUS_r = 1.0, 0.3
ONE_PUSH = MAX_PUSH * math.sqrt(3)  # the longest clamped push
# The opt-in modes of the package; "original" is extract_points' defaults.
MODES = {
    "plain": dict(repulsive=False),
    "original": {},
    "original+projection": dict(final_projection=True),
    "opt-in": dict(repel="all", final_projection=True, push_spacing=RELATIVE_PUSH_SPACING),
}


def sphere(p: torch.Tensor) -> torch.Tensor:
    return (p.norm(dim=-1) - 1.0).abs()


def torus(p: torch.Tensor) -> torch.Tensor:
    ring = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2 + 1e-12) - TORUS_R
    return (torch.stack([ring, p[:, 2]], -1).norm(dim=-1) - TORUS_r).abs()


def sphere_samples(n: int, seed: int = 0) -> np.ndarray:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    return (x / x.norm(dim=1, keepdim=True)).numpy()


def torus_samples(n: int, seed: int = 0) -> np.ndarray:
    """Area-uniform torus samples (rejection on the ring radius)."""
    g = torch.Generator().manual_seed(seed)
    u, v = (torch.rand(2, 4 * n, generator=g) * 2 * math.pi).unbind()
    keep = torch.rand(4 * n, generator=g) < (TORUS_R + TORUS_r * torch.cos(v)) / (TORUS_R + TORUS_r)
    u, v = u[keep][:n], v[keep][:n]
    ring = TORUS_R + TORUS_r * torch.cos(v)
    return torch.stack(
        [ring * torch.cos(u), ring * torch.sin(u), TORUS_r * torch.sin(v)], -1
    ).numpy()


SHAPES = {
    "sphere": (sphere, sphere_samples, (1.0, 1.0, 1.0)),
    "torus": (torus, torus_samples, (TORUS_R + TORUS_r, TORUS_R + TORUS_r, TORUS_r)),
}
CASES = [(shape, queries) for shape in SHAPES for queries in ("grid", "viz")]


def queries_of(kind: str, half: tuple[float, float, float]) -> torch.Tensor:
    if kind == "grid":
        return evaluation_grid()
    queries = torch.rand(216000, 3, generator=torch.Generator().manual_seed(1)) * 6 - 3
    return queries[(queries.abs() < torch.tensor(half) + 0.3).all(1)]


@functools.cache
def extracted(shape: str, kind: str, mode: str) -> torch.Tensor:
    field, _, half = SHAPES[shape]
    return extract_points(field, queries_of(kind, half), **MODES[mode])


def brute_force_repulsion(points: torch.Tensor) -> torch.Tensor:
    """The original's push, written out: full squared-distance matrix, sort, 17 nearest."""
    squared = ((points[:, None] - points[None]) ** 2).sum(-1)
    order = squared.argsort(dim=1, stable=True)[:, : min(17, len(points))]
    near = squared.gather(1, order).clamp(min=1e-3)
    offsets = points[:, None] - points[order]
    return (1e-3 * (offsets / near[..., None] ** 2).sum(1)).clamp(-0.03, 0.03)


def density_cov(points: torch.Tensor, probes: np.ndarray, radius: float = 0.1) -> float:
    """CoV of how many points lie within ``radius`` of surface probes."""
    counts = np.array([len(x) for x in cKDTree(points.numpy()).query_ball_point(probes, radius)])
    return float(counts.std() / counts.mean())


def spacing_cov(points: torch.Tensor) -> float:
    """CoV of each point's nearest-neighbour distance (coincident points included, at 0)."""
    spacing = cKDTree(points.numpy()).query(points.numpy(), k=2)[0][:, 1]
    return float(spacing.std() / spacing.mean())


def completeness(points: torch.Tensor, samples: np.ndarray) -> float:
    """Mean distance from exact surface samples to their nearest point."""
    return float(cKDTree(points.numpy()).query(samples)[0].mean())


def test_repulsion_is_the_originals_push():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(300, 3, generator=g, dtype=torch.float64)
    points[10] = points[11]  # duplicates: zero offset, no push between them
    points[:50] *= 0.05  # a dense cluster, where the clamp matters
    torch.testing.assert_close(repulsion(points), brute_force_repulsion(points), rtol=1e-9, atol=0)
    assert torch.equal(repulsion(points, 0), repulsion(points))  # 0 = the original
    assert repulsion(points[:1]).abs().max() == 0
    assert repulsion(points[:5]).shape == (5, 3)  # fewer points than neighbours


def test_relative_push_is_the_originals_in_spacing_units():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(400, 3, generator=g, dtype=torch.float64)
    spacing = cKDTree(points.numpy()).query(points.numpy(), k=2)[0][:, 1].mean()
    scale = spacing / 0.3
    torch.testing.assert_close(
        repulsion(points, 0.3), scale * brute_force_repulsion(points / scale), rtol=1e-9, atol=0
    )
    # Same push relative to the points whatever their size: scale invariant.
    torch.testing.assert_close(repulsion(7 * points, 0.3), 7 * repulsion(points, 0.3))
    assert repulsion(torch.zeros(4, 3), 0.3).abs().max() == 0  # all coincident: no direction
    with pytest.raises(ValueError, match="spacing"):
        repulsion(points, -1.0)


def test_evaluation_grid_is_the_originals():
    grid = evaluation_grid()
    assert grid.shape == (216000, 3)
    expected = torch.tensor([[-3.0, -3.0, -3.0], [-3.0, -3.0, -2.9], [-3.0, -2.9, -3.0]])
    torch.testing.assert_close(grid[[0, 1, 60]], expected)
    torch.testing.assert_close(grid.max(0).values, torch.full((3,), 2.9))


@pytest.mark.parametrize("shape,kind", CASES)
def test_plain_projection_lands_on_the_surface(shape, kind):
    field = SHAPES[shape][0]
    plain = extracted(shape, kind, "plain")
    assert len(plain) > 5000
    assert field(plain).max().item() < 1e-6  # measured <= 1.6e-7


@pytest.mark.parametrize("shape,kind", CASES)
def test_original_ends_one_push_off_the_surface(shape, kind):
    """The default (the authors' constants and order) misses "within 0.01": its last move is
    a push, saturated (+-0.03 per axis) at the candidates' spacing."""
    field = SHAPES[shape][0]
    moved = extracted(shape, kind, "original")
    assert len(moved) == len(extracted(shape, kind, "plain"))
    distance = field(moved)
    assert distance.max().item() <= ONE_PUSH + 1e-6
    assert 0.012 < distance.mean().item() < 0.022  # measured 0.0158 - 0.0196
    # One more projection puts them back on the surface.
    assert field(extracted(shape, kind, "original+projection")).max().item() < 1e-6


@pytest.mark.parametrize("shape,kind", CASES)
def test_original_push_does_not_even_out_the_spacing(shape, kind):
    """On the surface (final projection) the original's push leaves the nearest-neighbour
    spacing less even than plain projection: a saturated push moves every point 0.052, twice
    the mean spacing, and close pairs get the same clamped push (measured CoV 0.42 -> 0.60,
    0.53 -> 0.58, 0.59 -> 0.62, 0.53 -> 0.73 for sphere grid / viz, torus grid / viz)."""
    _, samples, _ = SHAPES[shape]
    plain = extracted(shape, kind, "plain")
    projected = extracted(shape, kind, "original+projection")
    assert spacing_cov(projected) > spacing_cov(plain) + 0.02
    # Density at the 0.1 scale: evened out from random queries (0.26 -> 0.16, 0.27 -> 0.19),
    # made less even from the grid's (0.10 -> 0.16, 0.13 -> 0.17).
    probes = samples(3000, seed=1)
    if kind == "viz":
        assert density_cov(projected, probes) < density_cov(plain, probes) - 0.05
    else:
        assert density_cov(projected, probes) > density_cov(plain, probes) + 0.02


@pytest.mark.parametrize("shape,kind", CASES)
def test_opt_in_meets_the_acceptance(shape, kind):
    """repel="all", final_projection, push_spacing=0.3: on the surface, and the spacing more
    even than plain projection (measured CoV 0.42 -> 0.22, 0.53 -> 0.09, 0.59 -> 0.25,
    0.53 -> 0.10), with a better coverage of the surface."""
    field, samples, _ = SHAPES[shape]
    plain = extracted(shape, kind, "plain")
    moved = extracted(shape, kind, "opt-in")
    assert len(moved) == len(plain)
    # Manhattan distance to the surface <= sqrt(3) x Euclidean: Chamfer-L1 accuracy bound.
    assert math.sqrt(3) * field(moved).mean().item() < 0.01
    assert field(moved).max().item() < 1e-6
    assert spacing_cov(moved) < 0.6 * spacing_cov(plain)
    surface = samples(50000, seed=2)
    assert completeness(moved, surface) < completeness(plain, surface)  # measured -10 to -20 %
    if kind == "viz":  # from the grid: 0.102 -> 0.096 and 0.127 -> 0.104, not asserted
        probes = samples(3000, seed=1)
        assert density_cov(moved, probes) < density_cov(plain, probes) - 0.05


def test_chunk_scopes():
    grid = evaluation_grid()[::7]
    one_chunk = extract_points(sphere, grid, chunk_size=len(grid), repel="chunk")
    torch.testing.assert_close(one_chunk, extract_points(sphere, grid, repel="all"))
    slabs = extract_points(sphere, grid, chunk_size=4000, repel="chunk")
    assert slabs.shape == one_chunk.shape and not torch.equal(slabs, one_chunk)
    with pytest.raises(ValueError, match="repel"):
        extract_points(sphere, grid, repel="nowhere")
    with pytest.raises(ValueError, match="push_spacing"):
        extract_points(sphere, grid, push_spacing=-0.3)


def test_options_default_to_the_original():
    grid = evaluation_grid()[::5]
    original = extract_points(sphere, grid)
    same = extract_points(sphere, grid, final_projection=False, push_spacing=None)
    assert torch.equal(original, same)
    assert torch.equal(extract_points(sphere, grid, push_spacing=0), original)
    projected = extract_points(sphere, grid, final_projection=True)
    torch.testing.assert_close(projected, project_step(sphere, original))
    # Without the push the last move is already a projection: nothing added.
    plain = extract_points(sphere, grid, repulsive=False)
    assert torch.equal(extract_points(sphere, grid, repulsive=False, final_projection=True), plain)


def test_projection_step_uses_only_each_points_own_gradient():
    points = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.3, 0.4, 1.2]])
    on_surface = project_step(sphere, points)
    torch.testing.assert_close(on_surface.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(move_points(sphere, points, 3, repulsive=False), on_surface)
