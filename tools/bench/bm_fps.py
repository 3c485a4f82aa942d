"""sample_farthest_points (C++ CPU / CUDA kernel) vs the pure-PyTorch reference, at NU-MCC and
PointNet++ sizes.

NU-MCC samples 200 anchors from 20k ground-truth points; 4096 from 100k is a large PointNet++
style input. Batch 1 and 8 of clouds on a unit sphere.

Run: python -m tools.bench.bm_fps [--quick] [--device cuda]
"""

from __future__ import annotations

import torch

from geomkit.ops._reference import fps as reference
from geomkit.ops.fps import sample_farthest_points
from tools.bench.bm_knn import sphere_points
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "fps"  # its part of BENCHMARKS.md

SIZES = [(1, 20_000, 200), (8, 20_000, 200), (1, 100_000, 4096), (8, 100_000, 4096)]
# The reference takes one PyTorch step per sampled point of each cloud: skip it beyond this
# many point-steps (about a minute on a 2-core CPU).
REFERENCE_MAX_POINT_STEPS = 1e10


def make_points(batch: int, n_points: int, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.stack([sphere_points(n_points, g) for _ in range(batch)]).to(device)


def time_case(batch: int, n_points: int, K: int, device: str) -> dict[str, float]:
    points = make_points(batch, n_points, device)
    times = {"sample_farthest_points": median_seconds(lambda: sample_farthest_points(points, K=K))}
    if batch * n_points * K <= REFERENCE_MAX_POINT_STEPS:
        lengths = torch.full((batch,), n_points, device=device)
        counts = torch.full((batch,), K, device=device)
        start = torch.zeros(batch, dtype=torch.int64, device=device)
        times["reference"] = median_seconds(
            lambda: reference.sample_farthest_points(points, lengths, counts, start),
            repeats=2,
            warmup=0,
        )
    return times


def run(device: str, quick: bool) -> Table:
    table = Table(
        f"sample_farthest_points, {device}",
        "sample_farthest_points",
        ["sample_farthest_points", "reference"],
        notes="Points uniform on the unit sphere; the reference is skipped where it would "
        "take over a minute.",
    )
    for batch, n_points, K in SIZES[:2] if quick else SIZES:
        times = time_case(batch, n_points, K, device)
        table.add(f"batch {batch}, {n_points // 1000}k -> {K}", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "first sizes only")
