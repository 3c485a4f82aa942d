"""CoCo-INR and plain VolSDF learn a generated scene through the authors' commands: held-out
PSNR and the world-space mesh's Chamfer-L1 to the true surface, relative to the object's
bounding radius.

The scene: a snowman rendered from 16 hemisphere views (48 px), 8 or 3 of them for training,
the rest held out; confs/small.conf (a random codebook: the VQGAN one cannot be downloaded).
The training seed is $GEOMKIT_TEST_SEED (tools/learning_margins.py sweeps it and the ISAs).
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
# loses its surface in the first epoch (empty mesh); the 1500-iteration runs below use 1e-3.
FAST_ITERATIONS, FAST_PSNR, FAST_CHAMFER, FAST_LR = 60, 16.5, 0.22, "5e-4"
# 1500 iterations, mesh at 128^3; held-out PSNR / Chamfer-L1 as a share of the bounding radius:
#   8 views: CoCo-INR 23.99 dB / 1.53% (seed 0), 23.35 dB / 2.00% (seed 1, 1 thread),
#            23.79 dB / 1.45% (AVX2, seed 0, 1 thread); VolSDF 24.02 dB / 5.85% (seed 0): its
#            mesh grows below the snowman, which no camera of the upper hemisphere sees;
#   3 views: CoCo-INR 21.41 dB / 3.23%, VolSDF 18.38 dB / 21.1% (seed 0); one thread: CoCo-INR
#            20.75 dB / 3.82% (seed 0), most of it the lowest sphere, 4.2% too small, which
#            the cameras (17-78 degrees up) see at grazing angles. A smaller initial beta
#            (0.02, not 0.1) gave 2.82% / 3.76% (seeds 0 / 1: no robust gain); views 5, 10, 15
#            (the lower ones) lost the object (61%). Cameras on the whole sphere
#            (cached_scene(cameras="sphere"), views 2, 8, 14, one below the equator): 1.69% for
#            seed 0, the lowest sphere now within 0.3%; seed 1 lost its surface (beta stayed
#            at 0.09, 26%), as the short fits at this learning rate do.
# Issue #10's 2% is met at 8 views, with no margin on seed 1 (the bound below allows 2.2%; 2000
# iterations give no more: 1.96% / 1.52% for seeds 0 / 1); not at 3 views. 96 px images do
# not help 3 views: CoCo-INR 20.52 dB / 4.52%, VolSDF 14.47 dB / 60.8%. One fit takes 12-20
# minutes on 2 cores (VolSDF / CoCo-INR), 30 on one.
SLOW_ITERATIONS = 1500
SLOW_PSNR, SLOW_CHAMFER = {8: 23.0, 3: 20.5}, {8: 0.022, 3: 0.04}
VOLSDF_CHAMFER_8 = 0.08
VIEWS = {8: [0, 2, 4, 6, 8, 10, 12, 14], 3: [0, 5, 10]}


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cocoinr_learning")
    source = cached_scene(shape="snowman", views=16, layout="volsdf", image_size=(48, 48),
                          volsdf_margin=1.6, camera_distance=1.4)  # fmt: skip
    (root / "snowman").symlink_to(source, target_is_directory=True)
    codebook = torch.randn(1024, 256, generator=torch.Generator().manual_seed(0))
    torch.save({"state_dict": {"quantize.embedding.weight": codebook}}, root / "codebook.ckpt")
    return root


def bounding_radius(mesh_path: Path) -> float:
    vertices = read_mesh(mesh_path).vertices
    centre = (vertices.min(0) + vertices.max(0)) / 2
    return float(np.linalg.norm(vertices - centre, axis=1).max())


def fit(root: Path, out: Path, views: int, attention: bool, iterations: int,
        pixels: int = 256, resolution: int = 128, extra: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Train, evaluate; returns held-out PSNR and Chamfer-L1 / bounding radius."""
    sets = [f"dataset.data_dir={root}", "dataset.img_res=[48,48]",
            f"dataset.train_views={VIEWS[views]}".replace(" ", ""),
            f"model.vq_cfg.ckpt_path={root / 'codebook.ckpt'}",
            f"model.use_attention={str(attention).lower()}", f"train.seed={learning_seed()}",
            f"train.num_pixels={pixels}", *extra]  # fmt: skip
    flags = ["--conf", "small.conf", "--expname", f"{views}{attention}", "--exps_folder",
             str(out), "--scan_id", "snowman", "--gpu", "cpu"]  # fmt: skip
    for item in sets:
        flags += ["--set", item]
    assert exp_runner.main([*flags, "--iter", str(iterations), "--cancel_vis"]) == 0
    gt = root / "snowman" / "gt_mesh.ply"
    assert val_runner.main([*flags, "--lpips", "none", "--resolution", str(resolution),
                            "--gt_mesh", str(gt)]) == 0  # fmt: skip
    (metrics_path,) = out.glob(f"small{views}{attention}_snowman/plots/*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    chamfer = metrics["mesh"]["geomkit_evaluate"]["chamfer_l1"]
    result = {"psnr": metrics["images"]["mean"]["psnr"], "chamfer": chamfer / bounding_radius(gt)}
    print(f"{views} views, attention {attention}: {result}")
    return result


def test_a_short_fit_learns_the_scene(scene_root, tmp_path):
    """make test's learning check: 8 views, a short CoCo-INR fit. After 8 iterations: 10.8 dB
    and 0.197 radius (the initial sphere is that close already: the Chamfer bound checks that a
    surface survives the fit; the PSNR, that it learns)."""
    trained = fit(scene_root, tmp_path / "trained", 8, True, FAST_ITERATIONS, resolution=48,
                  extra=(f"train.learning_rate={FAST_LR}",))  # fmt: skip
    assert_margins("cocoinr.fast", {
        "held-out PSNR (dB)": (trained["psnr"], FAST_PSNR),
        "bound - Chamfer-L1 / radius": (FAST_CHAMFER - trained["chamfer"], 0.0),
    })  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("views", [8, 3])
def test_coco_inr_and_volsdf_side_by_side(scene_root, tmp_path, views):
    """The acceptance run: CoCo-INR and plain VolSDF, same scene, views and budget."""
    coco, volsdf = (
        fit(scene_root, tmp_path / str(attention), views, attention, SLOW_ITERATIONS)
        for attention in (True, False)
    )
    bound = SLOW_CHAMFER[views]
    checks = {
        "CoCo-INR held-out PSNR": (coco["psnr"], SLOW_PSNR[views]),
        f"CoCo-INR {bound} - Chamfer-L1 / radius": (bound - coco["chamfer"], 0.0),
    }
    if views == 8:
        checks["VolSDF held-out PSNR"] = (volsdf["psnr"], SLOW_PSNR[8])
        bound = VOLSDF_CHAMFER_8
        checks[f"VolSDF {bound} - Chamfer-L1 / radius"] = (bound - volsdf["chamfer"], 0.0)
    else:  # the codebook's prior: CoCo-INR keeps the geometry with few views
        gain = volsdf["chamfer"] - coco["chamfer"]
        checks["VolSDF - CoCo-INR Chamfer-L1 / radius"] = (gain, 0.05)
    assert_margins(f"cocoinr.slow.{views}", checks)
