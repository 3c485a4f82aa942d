"""splat_points (compiled kernels) vs the scatter_reduce reference (NPBG++'s approach with
native torch ops), at NPBG++'s sizes: 1M points, 512 x 512, the 5 raster scales.

Points: uniform on a unit sphere 3 units in front of each camera (front and back faces land on
the same pixels, so the z-buffer has real work), projected with geomkit.cameras; batch 1 and 4
(4 cameras, a different sample of points each).

Run: python -m tools.bench.bm_splat [--quick] [--device cuda]
"""

from __future__ import annotations

import torch

from geomkit.cameras import Cameras
from geomkit.ops._reference import splat as reference
from geomkit.ops.splat import NPBGPP_SCALES, scale_coordinates, splat_points_multiscale
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "splat"  # its part of BENCHMARKS.md

POINTS = 1_000_000
IMAGE_SIZE = (512, 512)
FOCAL = 600.0  # the sphere covers about 80% of the image width


def sphere_in_front(n: int, p: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected points: xy (n, p, 2) pixels and depth (n, p), one camera per batch element."""
    g = torch.Generator().manual_seed(0)
    points = torch.randn(n, p, 3, generator=g)
    points = points / points.norm(dim=2, keepdim=True) + torch.tensor([0.0, 0.0, 3.0])
    height, width = IMAGE_SIZE
    cameras = Cameras(
        R=torch.eye(3).expand(n, 3, 3).clone(),
        T=torch.stack([torch.tensor([0.05 * k, 0.0, 0.0]) for k in range(n)]),
        focal_length=torch.full((n, 2), FOCAL),
        principal_point=torch.tensor([[width / 2, height / 2]]).expand(n, 2).clone(),
        image_size=torch.tensor([[height, width]]).expand(n, 2).clone(),
    )
    xy, depth = cameras.project(points)
    return xy.to(device), depth.to(device)


def reference_multiscale(xy: torch.Tensor, depth: torch.Tensor, scales) -> list:
    lengths = torch.full((xy.shape[0],), xy.shape[1], dtype=torch.int64, device=xy.device)
    results = []
    for scale in scales:
        xy_s, (h, w) = scale_coordinates(xy, IMAGE_SIZE, scale)
        results.append(reference.splat_points(xy_s, depth, lengths, h, w, 0.0))
    return results


def time_case(batch: int, scales, device: str) -> dict[str, float]:
    xy, depth = sphere_in_front(batch, POINTS, device)
    ours = splat_points_multiscale(xy, depth, IMAGE_SIZE, scales)
    baseline = reference_multiscale(xy, depth, scales)
    for mine, theirs in zip(ours, baseline, strict=True):
        if not (torch.equal(mine.index, theirs[0]) and torch.equal(mine.depth, theirs[1])):
            raise RuntimeError(f"splat_points differs from the reference (batch {batch})")
    return {
        "splat_points": median_seconds(
            lambda: splat_points_multiscale(xy, depth, IMAGE_SIZE, scales), repeats=10
        ),
        "scatter_reduce reference": median_seconds(
            lambda: reference_multiscale(xy, depth, scales), repeats=3, warmup=0
        ),
    }


def run(device: str, quick: bool) -> Table:
    table = Table(
        f"splat_points, {device}",
        "splat_points",
        ["splat_points", "scatter_reduce reference"],
        notes="1M points on a unit sphere 3 units in front of the camera (f = 600 px), "
        "512 x 512; '5 scales' = NPBG++'s 1, 1/2, 1/4, 1/8, 1/16 (splat_points_multiscale). "
        "Results checked equal before timing.",
    )
    for batch in (1,) if quick else (1, 4):
        for label, scales in (("5 scales", NPBGPP_SCALES), ("scale 1", (1.0,))):
            times = time_case(batch, scales, device)
            table.add(f"batch {batch} x {POINTS // 1_000_000}M points, {label}", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "batch 1 only")
