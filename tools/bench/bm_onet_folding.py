"""ONet generation with the CBN decoder folded per object (onet.models.folded) vs the decoder
as the authors run it (model.decode), on the paper-size image model (configs/img/onet.yaml,
random weights, threshold at its median occupancy so a surface crosses the box).

Cases: the whole MISE 32 + 2 steps generation of one object (meshes checked equal first), and
one network call on 100k points.

Run: python -m tools.bench.bm_onet_folding [--quick]
"""

from __future__ import annotations

import numpy as np
import torch

from onet.generation import Generator3D
from onet.models.folded import FoldedDecoder
from tools.bench.bm_onet_generation import MISE_SETTING, image_model, median_occupancy
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "onet-folding"
DEVICES = ("cpu",)  # make bench: the CPU path only
COLUMNS = ["folded", "unfolded"]


def mesh_difference(model, data, threshold) -> tuple[int, int, float, float]:
    """(faces folded, faces unfolded, largest vertex difference, share of vertices differing by
    more than 5e-6) of the two generators' meshes."""
    meshes = [
        Generator3D(model, threshold=threshold, fold=fold, **MISE_SETTING).generate_mesh(data)[0]
        for fold in (True, False)
    ]
    if meshes[0].faces.shape != meshes[1].faces.shape:
        return len(meshes[0].faces), len(meshes[1].faces), float("inf"), 1.0
    difference = np.abs(meshes[0].vertices - meshes[1].vertices).max(axis=1)
    return len(meshes[0].faces), len(meshes[1].faces), difference.max(), (difference > 5e-6).mean()


def run(device: str, quick: bool) -> Table:
    if device != "cpu":
        raise SystemExit("bm_onet_folding times the CPU path only")
    model, data = image_model()
    threshold = median_occupancy(model, data)
    faces, faces_unfolded, distance, share = mesh_difference(model, data, threshold)
    if faces != faces_unfolded or distance > 1e-4:  # 1e-4: 1.2% of a voxel of the 129^3 grid
        raise SystemExit(f"meshes differ: {faces} vs {faces_unfolded} faces, vertices {distance}")
    table = Table(
        "ONet generation, CBN decoder folded per object vs unfolded, cpu",
        COLUMNS[0],
        COLUMNS,
        notes=f"Paper-size image model (c_dim 256, hidden 256), random weights (seed 0), "
        f"threshold {threshold:.4f} (its median occupancy), 100k points per call. Same mesh "
        f"both ways, checked before timing: the same {faces} faces; vertices differ by at most "
        f"{distance:.1e} ({100 * share:.2f}% by more than 5e-6: float rounding, over a random "
        "network's weak gradient at its median level set).",
    )
    repeats = 1 if quick else 3
    times = {}
    for fold, column in zip((True, False), COLUMNS, strict=True):
        generator = Generator3D(model, threshold=threshold, fold=fold, **MISE_SETTING)
        times[column] = median_seconds(lambda g=generator: g.generate_mesh(data), repeats, 1)
    queries = generator.generate_mesh(data)[1]["points queried"]
    table.add(f"generate_mesh, MISE 32 + 2 steps, {queries:,} queries", times)

    points = torch.rand(1, 100_000, 3, generator=torch.Generator().manual_seed(1)) - 0.55
    z = torch.empty(1, 0)
    with torch.no_grad():
        c = model.encode_inputs(data["inputs"])
        folded = FoldedDecoder(model.decoder, z, c)
        calls = {
            COLUMNS[0]: lambda: folded(points[0]),
            COLUMNS[1]: lambda: model.decode(points, z, c),
        }
        times = {name: median_seconds(call, repeats + 2, 1) for name, call in calls.items()}
    table.add("one network call, 100k points (fold once per object: not timed)", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "one repeat")
