"""Repulsive UDF on exact unsigned distance fields: how close to the surface and how evenly
spread the extracted points are, per field x query set x mode (a quality table, not timings).

Fields: spheres of radius 1 (about a CO3D object's extent after its scale) and 0.5, and a torus
(R = 1, r = 0.3). Queries: the evaluation grid (216,000 at step 0.1 in [-3, 2.9]^3, x-slabs
of 12,000 per chunk) and the --run_viz queries (216,000 uniform in [-3, 3]^3, those inside the
surface's bounding box +- 0.3 kept, as the anchors' box). Modes: plain projection; the
original ("chunk"), one push scope for all candidates ("all"); "+proj" = final_projection;
"+s0.3" = push_spacing 0.3.

Columns: n points; mean / max distance to the analytic surface (Euclidean, exact); Acc / Com,
nearest-neighbour Manhattan (L1, NU-MCC's Chamfer) and Euclidean distances pred -> dense exact
surface sample (2M points: a floor of ~0.002 L1 on the unit sphere) and surface (200k of the
sample) -> pred, CD = Acc + Com; spacing CoV = coefficient of variation of each point's
nearest-neighbour distance (all points / coincident points, spacing < 1e-6, left out) and the
share of coincident points; density CoV = of the number of points within 0.1 of 3,000
surface probes.

Run: python -m tools.bench.bm_numcc_udf [--quick]   (--quick: unit sphere only)
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from numcc.udf import RELATIVE_PUSH_SPACING, evaluation_grid, extract_points

VIZ_MARGIN = 0.3
TORUS = (1.0, 0.3)
COINCIDENT = 1e-6
MODES = {
    "plain": dict(repulsive=False),
    "chunk": dict(repel="chunk"),
    "chunk+proj": dict(repel="chunk", final_projection=True),
    "all": dict(repel="all"),
    "all+proj": dict(repel="all", final_projection=True),
    "chunk+proj+s0.3": dict(
        repel="chunk", final_projection=True, push_spacing=RELATIVE_PUSH_SPACING
    ),
    "all+proj+s0.3": dict(repel="all", final_projection=True, push_spacing=RELATIVE_PUSH_SPACING),
}


def sphere(radius: float):
    def field(p: torch.Tensor) -> torch.Tensor:
        return (p.norm(dim=-1) - radius).abs()

    def samples(n: int, seed: int = 0) -> np.ndarray:
        x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return (radius * x / x.norm(dim=1, keepdim=True)).numpy()

    return field, samples, radius * np.ones(3)


def torus(big: float = TORUS[0], small: float = TORUS[1]):
    def field(p: torch.Tensor) -> torch.Tensor:
        ring = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2 + 1e-12) - big
        return (torch.stack([ring, p[:, 2]], -1).norm(dim=-1) - small).abs()

    def samples(n: int, seed: int = 0) -> np.ndarray:
        """Area-uniform (rejection on the ring radius)."""
        g = torch.Generator().manual_seed(seed)
        u, v = (torch.rand(2, 4 * n, generator=g, dtype=torch.float64) * 2 * math.pi).unbind()
        keep = torch.rand(4 * n, generator=g, dtype=torch.float64) < (
            big + small * torch.cos(v)
        ) / (big + small)
        u, v = u[keep][:n], v[keep][:n]
        ring = big + small * torch.cos(v)
        xyz = [ring * torch.cos(u), ring * torch.sin(u), small * torch.sin(v)]
        return torch.stack(xyz, -1).numpy()

    return field, samples, np.array([big + small, big + small, small])


def viz_queries(half: np.ndarray, n: int = 216_000, seed: int = 1) -> torch.Tensor:
    queries = (torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 3
    box = torch.tensor(half + VIZ_MARGIN, dtype=torch.float32)
    return queries[(queries.abs() < box).all(1)]


def metrics(field, samples, points: torch.Tensor, dense: np.ndarray, tree: cKDTree) -> dict:
    distance = field(points.double()).numpy()
    p = points.double().numpy()
    own = cKDTree(p)
    surface = dense[:: len(dense) // 200_000]
    acc_l1, acc_l2 = tree.query(p, p=1)[0].mean(), tree.query(p)[0].mean()
    com_l1, com_l2 = own.query(surface, p=1)[0].mean(), own.query(surface)[0].mean()
    spacing = own.query(p, k=2)[0][:, 1]
    apart = spacing[spacing > COINCIDENT]
    counts = np.array([len(x) for x in own.query_ball_point(samples(3000, seed=1), 0.1)])
    return {
        "n": len(p),
        "mean": distance.mean(),
        "max": distance.max(),
        "Acc L1": acc_l1,
        "Com L1": com_l1,
        "CD L1": acc_l1 + com_l1,
        "Acc L2": acc_l2,
        "CD L2": acc_l2 + com_l2,
        "spacing CoV": spacing.std() / spacing.mean(),
        "w/o coinc.": apart.std() / apart.mean(),
        "coinc.": 1 - len(apart) / len(p),
        "density CoV": counts.std() / counts.mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="unit sphere only")
    args = parser.parse_args()
    fields = {"sphere r=1": sphere(1.0)}
    if not args.quick:
        fields |= {"sphere r=0.5": sphere(0.5), f"torus {TORUS[0]}/{TORUS[1]}": torus()}
    header = None
    for name, (field, samples, half) in fields.items():
        dense = samples(2_000_000, seed=7)
        tree = cKDTree(dense)
        for query_set, queries in (("grid", evaluation_grid()), ("viz", viz_queries(half))):
            for mode, options in MODES.items():
                start = time.perf_counter()
                points = extract_points(field, queries, **options)
                seconds = time.perf_counter() - start
                row = metrics(field, samples, points, dense, tree) | {"s": seconds}
                if header is None:
                    header = ["field", "queries", "mode", *row]
                    print("| " + " | ".join(header) + " |")
                    print("|" + "---|" * len(header))
                cells = [name, f"{query_set} ({len(queries):,})", mode]
                cells += [f"{v}" if isinstance(v, int) else f"{v:.3g}" for v in row.values()]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
