"""NPBG++ render time per 512 x 512 frame with 1M points: geomkit's compiled splatting vs the
original's scatter_reduce rasterizer, in the same pipeline, measured in the same run.

One view as ``npbgpp.system.PointRenderer.render`` draws it (eval mode, no_grad): project the
points with NPBG++'s NDC, rasterize their descriptors at the 5 scales (1 .. 1/16; nearest point
per pixel), run the gated U-Net refiner (``RefinerUnetV2``, default channels). The renderer is
built from ``system=npbgpp_sphere`` (random weights, seed 0); only its ``rasterizer`` differs
between the columns:

- ``geomkit splat``: ``NearestScatterRasterizer`` (the package's; geomkit.ops.splat kernels);
- ``scatter_reduce``: ``ScatterReduceRasterizer``, NPBG++'s algorithm (two scatter 'amin'
  passes, then a scatter of the features) with native ``scatter_reduce_``.

Scene: 1M points uniform in a unit cube at the origin (8 random descriptor channels, all valid),
one camera of ``geomkit.synth.camera_paths.camera_path('orbit', ...)`` at distance 2 (depths
1.5 .. 2.5, beyond NPBG++'s near plane at 1), 512 x 512, 40 degrees horizontal field of view.
Cases: the rasterizer alone (NDC given); the render with a 512 x 512 raster
(``align_during_rendering=false``, as NPBG renders); the render as NPBG++ is configured
(``align_during_rendering=true``: the camera is turned so world up points up and the raster is
the 725 x 725 square of the frame's diagonal, the image turned back afterwards). The rasters of
the two columns are checked equal before timing; the columns run in turn within each repeat.

Run: python -m tools.bench.bm_npbgpp [--device cuda] [--quick]
"""

from __future__ import annotations

import sys

import torch

from geomkit.synth.camera_paths import camera_path
from npbgpp.config import load_config
from npbgpp.models.projection import ndc_intrinsics, project_points
from npbgpp.models.rasterizer import NearestScatterRasterizer, ScatterReduceRasterizer
from npbgpp.system import PointRenderer
from tools.bench.harness import Table, bench_main, interleaved_medians

SECTION = "npbgpp"  # its part of BENCHMARKS.md
COLUMNS = ("geomkit splat", "scatter_reduce")
POINTS = 1_000_000
IMAGE_SIZE = (512, 512)  # H, W
DISTANCE = 2.0  # camera to the cube's centre
CONFIG = ["datasets=dtu_one_scene", "system=npbgpp_sphere"]


def scene(n_points: int, device: str, seed: int = 0):
    """Points (P, 3) uniform in [-0.5, 0.5]^3, descriptors (P, 8) normal, valid (P,) all true."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(n_points, 3, generator=generator) - 0.5
    descriptors = torch.randn(n_points, 8, generator=generator)
    valid = torch.ones(n_points, dtype=torch.bool)
    return points.to(device), descriptors.to(device), valid.to(device)


def camera(device: str, image_size: tuple[int, int] = IMAGE_SIZE):
    """One orbit camera at DISTANCE looking at the origin."""
    return camera_path("orbit", 1, image_size, distance=DISTANCE).to(device)


def renderers(device: str, align: bool) -> tuple[PointRenderer, dict[str, torch.nn.Module]]:
    """The npbgpp_sphere PointRenderer (eval, seed 0) and the two rasterizers by column."""
    system = load_config(CONFIG).cfg.system
    system.align_during_rendering = align
    torch.manual_seed(0)
    renderer = PointRenderer(system).eval().to(device)
    ours = renderer.rasterizer
    if type(ours) is not NearestScatterRasterizer:
        raise SystemExit(f"bm_npbgpp: the configured rasterizer is {type(ours).__name__}")
    baseline = ScatterReduceRasterizer(ours.descriptor_dim, ours.scales, near=ours.near)
    baseline.load_state_dict(ours.state_dict())
    return renderer, {COLUMNS[0]: ours, COLUMNS[1]: baseline.to(device)}


@torch.no_grad()
def render(renderer: PointRenderer, rasterizer, points, descriptors, valid, cam) -> torch.Tensor:
    """(1, 3, H, W) the rendered view with ``rasterizer`` in the pipeline."""
    renderer.rasterizer = rasterizer
    return renderer.render(points, descriptors, valid, cam, raster_rgb=False).image


@torch.no_grad()
def check_equal(rasterizers: dict, ndc, descriptors, valid, size) -> None:
    """Raise unless the two columns' rasters are identical."""
    ours, theirs = (r(ndc, descriptors[None], size, valid[None]) for r in rasterizers.values())
    for scale, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if not torch.equal(a, b):
            raise SystemExit(f"bm_npbgpp: the rasterizers differ at scale {scale} ({size})")


def raster_case(device: str, n_points: int, repeats: int) -> dict[str, float]:
    """Seconds of the rasterizer alone (5 scales of IMAGE_SIZE), per column."""
    points, descriptors, valid = scene(n_points, device)
    _, rasterizers = renderers(device, align=False)
    cam = camera(device)
    fcl, prp = ndc_intrinsics(cam)
    ndc = project_points(points[None], cam.R, cam.T, fcl, prp)
    check_equal(rasterizers, ndc, descriptors, valid, IMAGE_SIZE)

    @torch.no_grad()
    def call(rasterizer):
        return rasterizer(ndc, descriptors[None], IMAGE_SIZE, valid[None])

    return interleaved_medians({c: lambda r=r: call(r) for c, r in rasterizers.items()}, repeats)


def render_case(device: str, n_points: int, repeats: int, align: bool) -> dict[str, float]:
    """Seconds of one PointRenderer.render, per column (the rendered images checked equal)."""
    points, descriptors, valid = scene(n_points, device)
    renderer, rasterizers = renderers(device, align)
    cam = camera(device)
    images = [render(renderer, r, points, descriptors, valid, cam) for r in rasterizers.values()]
    if not torch.equal(*images):
        raise SystemExit(f"bm_npbgpp: the renders differ (align_during_rendering={align})")
    fns = {c: lambda r=r: render(renderer, r, points, descriptors, valid, cam)
           for c, r in rasterizers.items()}  # fmt: skip
    return interleaved_medians(fns, repeats, warmup=0)  # warmed up by the check


def run(device: str, quick: bool) -> Table:
    title = f"NPBG++ render of a 512x512 frame, 1M points, {device}"
    table = Table(title, COLUMNS[0], COLUMNS)
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("bm_npbgpp: CUDA is not available; nothing measured", file=sys.stderr)
        return table
    n_points, repeats = POINTS, (1 if quick else 5)
    table.notes = (
        f"{n_points:,} points uniform in a unit cube {DISTANCE:g} units in front of the camera "
        f"(geomkit.synth camera_path 'orbit', 40 degrees field of view; 99.9% of them in view, "
        f"hitting 69% of the pixels), {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]}, 8 random descriptor "
        "channels; system=npbgpp_sphere with random "
        "weights, eval mode, no_grad. Columns: the same pipeline with NearestScatterRasterizer "
        "(geomkit.ops.splat kernels) or ScatterReduceRasterizer (NPBG++'s algorithm with "
        "native scatter_reduce); their rasters and renders checked equal before timing. "
        "Rasterizer: the 5 scales from given NDC. Render: PointRenderer.render (projection, "
        "rasterizer, RefinerUnetV2; without the raster_rgb preview); NPBG++ as configured "
        "renders the 725x725 aligned square and turns it back, NPBG (no alignment) 512x512."
        + (" Quick run." if quick else "")
    )
    size = f"{n_points // 1000}k points" if n_points < 1_000_000 else f"{n_points // 10**6}M points"
    table.add(f"rasterizer alone, 5 scales, {size}", raster_case(device, n_points, repeats))
    table.add(
        f"render, 512x512 raster (NPBG, no alignment), {size}",
        render_case(device, n_points, repeats, align=False),
    )
    if not quick:
        table.add(
            f"render, NPBG++ as configured (725x725 aligned raster), {size}",
            render_case(device, n_points, repeats, align=True),
        )
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "one repeat, no aligned render")
