"""CoCo-INR and plain VolSDF learn a generated scene through the authors' commands: held-out
PSNR and the world-space mesh's Chamfer-L1 to the true surface, relative to the object's
bounding radius.

The scene: a snowman rendered from 16 views (48 px), 8 or 3 of them for training, the rest held
out; confs/small.conf (a random codebook: the VQGAN one cannot be downloaded). The short fit's
cameras are on the upper hemisphere; the acceptance run's on the whole sphere (from 70 degrees
above the equator to 70 below), as a few views of the upper half leave the snowman's underside
unseen. The training seed is $GEOMKIT_TEST_SEED (tools/learning_margins.py sweeps it and the ISAs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cocoinr import exp_runner, val_runner
from geomkit.io import read_mesh
from geomkit.synth.generate import cached_scene

from ..helpers import assert_margins, learning_seed

pytestmark = pytest.mark.learning
# 60 iterations at VolSDF's learning rate 5e-4, seeds 0-4, default and AVX2 alike: 17.07-19.48 dB,
# Chamfer-L1 / radius 0.137-0.184. At small.conf's 1e-3 a run this short is seed-fragile: seed 1
# loses its surface in the first epoch (empty mesh).
FAST_ITERATIONS, FAST_PSNR, FAST_CHAMFER, FAST_LR = 60, 16.5, 0.22, "5e-4"
# 1500 iterations at lr 1e-3 after a 100-iteration warm-up, mesh at 128^3, one thread; held-out
# PSNR / Chamfer-L1 as a share of the bounding radius:
#   8 views, seeds 0-3: CoCo-INR 22.00 dB / 1.42%, 22.50 / 1.45%, 22.38 / 1.65%, 22.43 / 1.49%;
#            VolSDF 21.09 / 2.30%, 24.24 / 3.88%, 23.13 / 1.48%, 22.83 / 1.91%;
#   3 views (2, 8, 14: 43 degrees up, 4 and 54 down), the conf's colour network (view
#            direction encoded, multires_view 4), seeds 0-3: CoCo-INR 17.97 / 2.23%, 19.90 /
#            1.92%, 17.57 / 4.77%, 17.19 / 3.06%; VolSDF 13.35 / 47.2% (it loses the shape),
#            22.25 / 4.54%, 21.76 / 1.65%, 22.07 / 1.61%.
# Neither model's geometry wins on every seed, so the side-by-side checks each against its own
# bounds and prints both. At 8 views CoCo-INR's Chamfer is the steadier (1.42-1.65% to VolSDF's
# 1.48-3.88%), but VolSDF is ahead on seed 2 (by 0.17 points); at 3 views CoCo-INR is ahead on
# seeds 0, 1 (by 45 and 2.6 points), VolSDF on seeds 2, 3 (by 3.1 and 1.5). VolSDF runs at 8
# views only: at 3 it loses the shape on seed 0.
# Issue #10's 2% holds at 8 views; at 3 views it does not. Tried on CoCo-INR, none under 2% on
# every seed: 2500 iterations (seeds 0, 1: 3.16%, 2.02%; training PSNR 30-36 dB, it overfits);
# the 1500-iteration runs' checkpoints at 600 and 900 iterations (3.19% / 5.75%, seeds 0, 1; at
# 900, seeds 0-3: 2.72-4.58%); 96 px images (seeds 2, 3: 2.42%, 3.74%); views 7, 8, 9, near the
# equator, which see 80% of the surface to 2, 8, 14's 67% (seeds 2, 3: 5.08%, 5.32%); a lower
# positional encoding, model.implicit_network.multires 4 for 6 (seeds 0-3: 2.34%, 3.29%, 2.48%,
# 2.41%: steadier, yet seed 1 loses 1.4 points; at 2, seeds 2, 3 get worse, 3.69%, 8.37%), and
# with it 96 px (seed 2: 2.45%) or eikonal weight 0.3 (seed 2: 4.59%, beta stays at 0.019). The
# error is not where no training view looks: at multires 4, seeds 0, 1, the true surface seen by
# none of the three views is 2.0% / 2.6% from the mesh, by one 2.6% / 3.5%, by two 2.9% / 4.7%;
# a 256^3 mesh measures what 128^3 does (seed 0: 2.35%, 2.34%).
# The 3-view run therefore encodes no view direction in the colour network (the shape-radiance
# ambiguity: from 3 views a view-dependent colour can stand in for geometry):
# model.rendering_network.multires_view 0 for 4, seeds 0-3: 21.55 dB / 1.68%, 21.35 / 1.95% (two
# threads), 20.46 / 2.42%, 21.63 / 2.00%; better or level on every seed (held-out PSNR up 1.5 to
# 4.4 dB), still not under 2% on all. With it: multires 4 (seed 2: 2.14%); IDR's no_view_dir mode,
# no view direction at all (seeds 2, 3: 2.91%, 2.35%, worse); 96 px (seed 2: 1.72% / 21.69 dB,
# but seed 3 loses its surface at iterations 200-300, an empty mesh); 96 px after a 300-iteration
# warm-up (seeds 0-3: 1.72% / 20.96 dB, 2.59% / 20.92, 2.37% / 21.00, 1.73% / 21.49); the
# 300-iteration warm-up at 48 px (seeds 1-3: 2.26% / 20.35, 1.87% / 21.42, 2.35% / 20.46: it
# moves which seeds fail); 512 rays a step for 256 (seeds 2, 3: 1.78% / 21.39, 2.33% / 20.99,
# 44-56 minutes on one thread). A 256-ray fit takes 22-37 minutes. The failing seeds fail in
# different places: the underside sinks in (the lowest eighth of the height, 2-4% of the radius
# inside the true surface), the upper half swells or shrinks by about 2%, or the middle, where
# the spheres join, misses by 3.7% (512 rays, seed 3).
# The AVX2 setting gave seed 0's numbers to the last digit (a CPU without AVX-512).
# Without the warm-up seed 1 loses its surface in the first epoch (beta stays at 0.09, 26%; seed
# 0: 1.69%); at lr 5e-4 without it, 1500 iterations end unconverged (beta 0.02, 4.4% / 5.1%).
# Earlier, hemisphere cameras (17-78 degrees up, lr 1e-3, no warm-up): 8 views 1.53% / 2.00%,
# VolSDF 5.85% (its mesh grows below the snowman, which none of them sees); 3 views 3.2-3.8%.
# One fit: about 35 minutes on one thread (CoCo-INR), 12-20 on two.
SLOW_ITERATIONS, WARMUP = 1500, "train.warmup_iters=100"
SLOW_EXTRA = {8: (WARMUP,), 3: (WARMUP, "model.rendering_network.multires_view=0")}
SLOW_PSNR, SLOW_CHAMFER = {8: 21.0, 3: 19.5}, {8: 0.018, 3: 0.03}
VOLSDF_PSNR_8, VOLSDF_CHAMFER_8 = 20.0, 0.05
FAST_VIEWS = [0, 2, 4, 6, 8, 10, 12, 14]
SLOW_VIEWS = {8: FAST_VIEWS, 3: [2, 8, 14]}


def scene_root(tmp_path_factory, cameras: str) -> Path:
    root = tmp_path_factory.mktemp(f"cocoinr_learning_{cameras}")
    source = cached_scene(shape="snowman", views=16, layout="volsdf", image_size=(48, 48),
                          volsdf_margin=1.6, camera_distance=1.4, cameras=cameras)  # fmt: skip
    (root / "snowman").symlink_to(source, target_is_directory=True)
    codebook = torch.randn(1024, 256, generator=torch.Generator().manual_seed(0))
    torch.save({"state_dict": {"quantize.embedding.weight": codebook}}, root / "codebook.ckpt")
    return root


@pytest.fixture(scope="module")
def hemisphere_root(tmp_path_factory) -> Path:
    return scene_root(tmp_path_factory, "hemisphere")


@pytest.fixture(scope="module")
def sphere_root(tmp_path_factory) -> Path:
    return scene_root(tmp_path_factory, "sphere")


def bounding_radius(mesh_path: Path) -> float:
    vertices = read_mesh(mesh_path).vertices
    centre = (vertices.min(0) + vertices.max(0)) / 2
    return float(np.linalg.norm(vertices - centre, axis=1).max())


def fit(root: Path, out: Path, views: list[int], attention: bool, iterations: int,
        pixels: int = 256, resolution: int = 128, extra: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Train, evaluate; returns held-out PSNR and Chamfer-L1 / bounding radius."""
    sets = [f"dataset.data_dir={root}", "dataset.img_res=[48,48]",
            f"dataset.train_views={views}".replace(" ", ""),
            f"model.vq_cfg.ckpt_path={root / 'codebook.ckpt'}",
            f"model.use_attention={str(attention).lower()}", f"train.seed={learning_seed()}",
            f"train.num_pixels={pixels}", *extra]  # fmt: skip
    flags = ["--conf", "small.conf", "--expname", f"{len(views)}{attention}", "--exps_folder",
             str(out), "--scan_id", "snowman", "--gpu", "cpu"]  # fmt: skip
    for item in sets:
        flags += ["--set", item]
    assert exp_runner.main([*flags, "--iter", str(iterations), "--cancel_vis"]) == 0
    gt = root / "snowman" / "gt_mesh.ply"
    assert val_runner.main([*flags, "--lpips", "none", "--resolution", str(resolution),
                            "--gt_mesh", str(gt)]) == 0  # fmt: skip
    (metrics_path,) = out.glob(f"small{len(views)}{attention}_snowman/plots/*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    chamfer = metrics["mesh"]["geomkit_evaluate"]["chamfer_l1"]
    result = {"psnr": metrics["images"]["mean"]["psnr"], "chamfer": chamfer / bounding_radius(gt)}
    print(f"views {views}, attention {attention}: {result}")
    return result


def test_a_short_fit_learns_the_scene(hemisphere_root, tmp_path):
    """make test's learning check: 8 views, a short CoCo-INR fit. After 8 iterations: 10.8 dB
    and 0.197 radius (the initial sphere is that close already: the Chamfer bound checks that a
    surface survives the fit; the PSNR, that it learns)."""
    trained = fit(hemisphere_root, tmp_path / "trained", FAST_VIEWS, True, FAST_ITERATIONS,
                  resolution=48, extra=(f"train.learning_rate={FAST_LR}",))  # fmt: skip
    assert_margins("cocoinr.fast", {
        "held-out PSNR (dB)": (trained["psnr"], FAST_PSNR),
        "bound - Chamfer-L1 / radius": (FAST_CHAMFER - trained["chamfer"], 0.0),
    })  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("views", [8, 3])
def test_acceptance_fits(sphere_root, tmp_path, views):
    """The acceptance run: CoCo-INR, and at 8 views plain VolSDF beside it (same scene, views
    and budget)."""
    train = {"views": SLOW_VIEWS[views], "iterations": SLOW_ITERATIONS,
             "extra": SLOW_EXTRA[views]}  # fmt: skip
    coco = fit(sphere_root, tmp_path / "coco", attention=True, **train)
    bound = SLOW_CHAMFER[views]
    checks = {
        "CoCo-INR held-out PSNR": (coco["psnr"], SLOW_PSNR[views]),
        f"CoCo-INR {bound} - Chamfer-L1 / radius": (bound - coco["chamfer"], 0.0),
    }
    if views == 8:
        volsdf = fit(sphere_root, tmp_path / "volsdf", attention=False, **train)
        checks["VolSDF held-out PSNR"] = (volsdf["psnr"], VOLSDF_PSNR_8)
        room = VOLSDF_CHAMFER_8 - volsdf["chamfer"]
        checks[f"VolSDF {VOLSDF_CHAMFER_8} - Chamfer-L1 / radius"] = (room, 0.0)
    assert_margins(f"cocoinr.slow.{views}", checks)
