"""chamfer_distance (two knn_points, K = 1) vs pykdtree (two tree builds + queries) vs the
brute-force reference, at evaluation sizes.

NU-MCC and ONet evaluate reconstructions against 100k ground-truth points with about as many
predicted points, one cloud at a time. Ground truth on a unit sphere; predictions the same
surface sampled again with 0.01 noise.

Run: python -m tools.bench.bm_chamfer [--quick] [--device cuda]
"""

from __future__ import annotations

import torch
from pykdtree.kdtree import KDTree

from geomkit.ops._reference import chamfer as reference
from geomkit.ops.chamfer import chamfer_distance
from tools.bench.bm_knn import sphere_points
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "chamfer"  # its part of BENCHMARKS.md

SIZES = [
    (10_000, 10_000, "squared_euclidean"),
    (30_000, 30_000, "squared_euclidean"),
    (100_000, 100_000, "squared_euclidean"),
    (100_000, 100_000, "euclidean"),
    (100_000, 100_000, "manhattan"),
]
# The reference computes every pair: skip it beyond this many (about a minute on a 2-core CPU).
REFERENCE_MAX_PAIRS = 2e9


def make_clouds(n_pred: int, n_gt: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = sphere_points(n_gt, g)
    pred = sphere_points(n_pred, g) + 0.01 * torch.randn(n_pred, 3, generator=g)
    return pred[None].to(device), gt[None].to(device)


def pykdtree_chamfer(pred: torch.Tensor, gt: torch.Tensor, distance: str) -> float:
    """The same value with pykdtree: a tree on each cloud, the other queried against it."""
    a, b = pred[0].numpy(), gt[0].numpy()
    squared = distance == "squared_euclidean"
    d_ab, _ = KDTree(b).query(a, k=1, sqr_dists=squared)
    d_ba, _ = KDTree(a).query(b, k=1, sqr_dists=squared)
    return float(d_ab.mean() + d_ba.mean())


def time_case(n_pred: int, n_gt: int, distance: str, device: str, columns: list[str]):
    pred, gt = make_clouds(n_pred, n_gt, device)
    times = {
        "chamfer_distance": median_seconds(lambda: chamfer_distance(pred, gt, distance=distance))
    }
    if "pykdtree" in columns and distance != "manhattan":
        times["pykdtree"] = median_seconds(lambda: pykdtree_chamfer(pred, gt, distance))
    if 2 * n_pred * n_gt <= REFERENCE_MAX_PAIRS:
        lengths = torch.tensor([n_pred], device=device), torch.tensor([n_gt], device=device)
        options = (None, None, distance, "mean", "mean", False, True)
        times["reference"] = median_seconds(
            lambda: reference.chamfer_distance(pred, gt, *lengths, *options), repeats=2, warmup=0
        )
    return times


def run(device: str, quick: bool) -> Table:
    columns = ["chamfer_distance", "pykdtree", "reference"]
    if device != "cpu":
        columns.remove("pykdtree")
    table = Table(
        f"chamfer_distance, {device}",
        "chamfer_distance",
        columns,
        notes="One cloud each way (pred -> gt and gt -> pred), point and batch reduction "
        "'mean'. pykdtree includes both tree builds and has no Manhattan metric; the "
        "reference is skipped where it would take over a minute.",
    )
    for n_pred, n_gt, distance in SIZES[:1] if quick else SIZES:
        times = time_case(n_pred, n_gt, distance, device, columns)
        table.add(f"{n_pred // 1000}k x {n_gt // 1000}k, {distance}", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "first size only")
