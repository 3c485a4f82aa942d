"""knn_points (C++ kd-tree) vs pykdtree (build + query) vs brute-force torch (cdist + topk)
vs the pure-PyTorch reference, at NU-MCC sizes.

NU-MCC: 200 anchors or 20k ground-truth points; 12k-48k queries per chunk, 216k for the 60^3
evaluation grid; K = 4 neighbours (anchors, seen pixels) or 17 (repulsion).
Two query layouts: the evaluation grid (uniform in [-3, 3]^3, points on a unit sphere) and
repulsion-style queries near the surface.

Run: python -m tools.bench.bm_knn [--quick] [--device cuda]
"""

from __future__ import annotations

import torch
from pykdtree.kdtree import KDTree

from geomkit.ops import _reference, knn_points
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "knn"  # its part of BENCHMARKS.md

SIZES = [
    (12_000, 200, 4),
    (48_000, 200, 4),
    (12_000, 20_000, 17),
    (48_000, 20_000, 17),
    (216_000, 20_000, 4),
    (216_000, 20_000, 17),
]
REFERENCE_MAX_PAIRS = 3e8  # the reference sorts whole distance rows: skip it beyond this


def sphere_points(n: int, generator: torch.Generator) -> torch.Tensor:
    v = torch.randn(n, 3, generator=generator)
    return v / v.norm(dim=1, keepdim=True)


def make_inputs(layout: str, n_queries: int, n_points: int, device: str):
    g = torch.Generator().manual_seed(0)
    points = sphere_points(n_points, g)
    if layout == "grid":
        queries = torch.rand(n_queries, 3, generator=g) * 6 - 3
    else:
        queries = sphere_points(n_queries, g) + 0.02 * torch.randn(n_queries, 3, generator=g)
    return queries[None].to(device), points[None].to(device)


def brute_torch(p1: torch.Tensor, p2: torch.Tensor, K: int, chunk: int = 8192):
    out = []
    for start in range(0, p1.shape[1], chunk):
        d = torch.cdist(p1[0, start : start + chunk], p2[0]).square()
        out.append(d.topk(min(K, p2.shape[1]), dim=1, largest=False))
    return out


def time_case(
    layout: str, n_queries: int, n_points: int, K: int, device: str, columns: list[str]
) -> dict[str, float]:
    p1, p2 = make_inputs(layout, n_queries, n_points, device)
    times = {"knn_points": median_seconds(lambda: knn_points(p1, p2, K=K))}
    if "pykdtree" in columns:
        a, b = p1[0].numpy(), p2[0].numpy()
        times["pykdtree"] = median_seconds(lambda: KDTree(b).query(a, k=K))
    times["torch cdist+topk"] = median_seconds(lambda: brute_torch(p1, p2, K), repeats=3)
    if n_queries * n_points <= REFERENCE_MAX_PAIRS:
        lengths = (
            torch.tensor([n_queries], device=device),
            torch.tensor([n_points], device=device),
        )
        times["reference"] = median_seconds(
            lambda: _reference.knn_points(p1, p2, *lengths, K, 2), repeats=2, warmup=0
        )
    return times


def run(device: str, quick: bool) -> Table:
    columns = ["knn_points", "pykdtree", "torch cdist+topk", "reference"]
    if device != "cpu":
        columns.remove("pykdtree")
    table = Table(
        f"knn_points, {device}",
        "knn_points",
        columns,
        notes="Queries: 'grid' uniform in [-3, 3]^3, 'near' within ~0.02 of the "
        "sphere the points lie on. pykdtree includes its tree build.",
    )
    sizes = SIZES[:3] if quick else SIZES
    for layout in ("grid", "near"):
        for n_queries, n_points, K in sizes:
            times = time_case(layout, n_queries, n_points, K, device, columns)
            table.add(f"{layout} {n_queries // 1000}k x {n_points} K={K}", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "first sizes only")
