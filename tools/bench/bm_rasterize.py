"""rasterize_mesh (compiled kernel) vs the pure-PyTorch reference, in ms per view.

The Stanford bunny (../shared/data/meshes/bunny.obj, 4968 faces) normalised to the unit box,
seen by a batch of 8 cameras on an orbit at 512x512; the reference is timed on the full image
where that takes seconds, else on a 64x64 window at the image centre (the kernel is then timed
on the same window). Also an 81920-face icosphere, and ONet's watertight-fusion setting (100
depth views of 640x640, f = 640) for the kernel alone.

Run: python -m tools.bench.bm_rasterize [--quick] [--device cuda]
"""

from __future__ import annotations

import math
import sys

import torch

from geomkit.cameras import Cameras
from geomkit.io import read_mesh
from geomkit.mesh import normalize_to_unit_box
from geomkit.ops._reference import rasterize as reference
from geomkit.ops.rasterize import rasterize_triangles
from tests.conftest import SHARED_DATA
from tests.geomkit.test_rasterize import cameras_at, icosphere
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "rasterize"  # its part of BENCHMARKS.md

BUNNY = SHARED_DATA / "meshes" / "bunny.obj"
N_VIEWS = 8
CROP = 64
REFERENCE_MAX_SECONDS = 30.0  # per batch; beyond that the reference runs on the crop only


def orbit_cameras(n: int, size: int, focal: float, distance: float) -> Cameras:
    """n cameras on a circle around the y axis, 20 degrees above the xz plane."""
    elevation = math.radians(20.0)
    eyes = [
        (
            distance * math.cos(elevation) * math.cos(2 * math.pi * k / n),
            distance * math.sin(elevation),
            distance * math.cos(elevation) * math.sin(2 * math.pi * k / n),
        )
        for k in range(n)
    ]
    return cameras_at(eyes, (size, size), focal, dtype=torch.float32)


def screen_vertices(vertices: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    uv, depth = cameras.project(vertices.to(cameras.dtype))
    return torch.cat((uv, depth[..., None]), -1)


def crop(verts_screen: torch.Tensor, size: int, window: int) -> torch.Tensor:
    """Shift pixel coordinates so that the centred window x window region starts at 0."""
    offset = (size - window) / 2
    return verts_screen - verts_screen.new_tensor([offset, offset, 0.0])


def time_case(
    verts_screen: torch.Tensor, faces: torch.Tensor, size: int, with_reference: bool
) -> dict[str, float | None]:
    n = verts_screen.shape[0]
    times: dict[str, float | None] = {
        "rasterize": median_seconds(lambda: rasterize_triangles(verts_screen, faces, (size, size)))
        / n
    }
    if with_reference:
        times["reference"] = (
            median_seconds(
                lambda: reference.rasterize_triangles(verts_screen, faces, size, size, 1e-6),
                repeats=2,
                warmup=0,
            )
            / n
        )
    return times


def bunny_cases(device: str, table: Table, quick: bool) -> None:
    mesh, _, _ = normalize_to_unit_box(read_mesh(BUNNY))
    vertices = torch.as_tensor(mesh.vertices, device=device)
    faces = torch.as_tensor(mesh.faces, device=device)
    size = 512
    cameras = orbit_cameras(N_VIEWS, size, focal=700.0, distance=2.0).to(device)
    verts = screen_vertices(vertices, cameras)
    start = torch.cuda.Event if False else None
    del start
    full = time_case(verts, faces, size, with_reference=False)
    single = median_seconds(
        lambda: reference.rasterize_triangles(verts[:1], faces, size, size, 1e-6),
        repeats=1,
        warmup=0,
    )
    full["reference"] = single if single * N_VIEWS <= REFERENCE_MAX_SECONDS else None
    table.add(f"bunny {len(faces)} faces, {size}x{size}, {N_VIEWS} views", full)
    table.add(
        f"bunny, centre {CROP}x{CROP} window of {size}x{size}, {N_VIEWS} views",
        time_case(crop(verts, size, CROP), faces, CROP, with_reference=True),
    )
    if quick:
        return
    onet = orbit_cameras(100, 640, focal=640.0, distance=2.0).to(device)
    table.add(
        "bunny, ONet fusion: 100 views 640x640, f 640",
        time_case(screen_vertices(vertices, onet), faces, 640, with_reference=False),
    )


def sphere_cases(device: str, table: Table) -> None:
    vertices, faces = icosphere(6, radius=0.5)
    size = 512
    cameras = orbit_cameras(N_VIEWS, size, focal=700.0, distance=2.0).to(device)
    verts = screen_vertices(vertices.to(device), cameras)
    faces = faces.to(device)
    table.add(
        f"icosphere {len(faces)} faces, {size}x{size}, {N_VIEWS} views",
        time_case(verts, faces, size, with_reference=False),
    )
    table.add(
        f"icosphere, centre {CROP}x{CROP} window of {size}x{size}, {N_VIEWS} views",
        time_case(crop(verts, size, CROP), faces, CROP, with_reference=True),
    )


def run(device: str, quick: bool) -> Table:
    table = Table(
        f"rasterize_triangles, {device}, ms per view",
        "rasterize",
        ["rasterize", "reference"],
        notes=(
            "Batches of views rasterized in one call; times divided by the number of views. "
            "The projection (cameras.project) is not timed. Reference: the tiled pure-PyTorch "
            "definition, timed on one view (one run) for the full image and on the whole batch "
            f"for the {CROP}x{CROP} windows (the kernel then on the same windows); '—' where "
            f"the batch would take over {REFERENCE_MAX_SECONDS:.0f} s."
        ),
    )
    if not BUNNY.exists():
        print(f"bm_rasterize: {BUNNY} not found; skipping the bunny cases", file=sys.stderr)
    else:
        bunny_cases(device, table, quick)
    if not quick:
        sphere_cases(device, table)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "first cases only")
