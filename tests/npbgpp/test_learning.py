"""NPBG++ and NPBG learn a generated scene through the authors' entry point: held-out PSNR.

The scene: a textured snowman in DTU's layout (IDR cameras, masks, ``mvs_pc.ply`` sampled from
the true surface), 40 views on a hemisphere; 5 of them held out (they are the validation
targets, which training never sees), the rest are the input views. CPU settings: full images
(no crops), system.learning_rate 1e-3 (the original's 1e-4 needs many more steps), the L1+SSIM
loss and no LPIPS (their weight files cannot be downloaded here), a random encoder
(pretrained_encoder=false) whose batch norm normalises with the batch's statistics
(feature_extractor.eval_mode=false: the released configs keep it in eval mode, which only
suits ImageNet statistics; with a random encoder in eval mode its features come out ~10x too
large and 40 steps gave 9.1-17.2 dB over seeds 0-4). An all-white image scores about 13 dB.
The training seed is $GEOMKIT_TEST_SEED (tools/learning_margins.py sweeps it and the ISAs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from npbgpp import train_net
from npbgpp.synthetic import cached_scene

from ..helpers import assert_margins, learning_seed

pytestmark = pytest.mark.learning

HELD_OUT = "[3,11,19,27,35]"
WHITE_PSNR = 13.0  # an all-white render of the held-out views: 12.4-14.4 dB
# 40 steps at 48 px, seeds 0-4, default and AVX2 settings: NPBG++ 17.19-19.49 dB, NPBG
# 20.08-20.83 dB.
FAST = {"size": 48, "steps": 40, "npbgpp": 15.5, "npbg": 18.0}
SLOW = {"size": 64, "steps": 300, "npbgpp": 20.0, "npbg": 20.0}


def fit(tmp_path: Path, monkeypatch, system: str, size: int, steps: int) -> float:
    """Train for ``steps`` items (one epoch) and return the held-out PSNR."""
    scene = cached_scene("dtu", views=40, image_size=(size, size))
    monkeypatch.chdir(tmp_path)
    overrides = [
        f"hydra.run.dir={system}", "datasets=dtu_one_scene", f"datasets.data_root={scene.parent}",
        f"datasets.scene_name={scene.name}", f"datasets.val_indices={HELD_OUT}",
        "datasets.holdout_indices=[7]", f"datasets.train_num_samples={steps}",
        "datasets.train_image_size=null", f"system={system}", "system.learning_rate=1e-3",
        "system.perceptual_loss=l1_ssim", "lpips=none", "trainer.max_epochs=1",
        "dataloader=small", f"seed={learning_seed()}",
    ]  # fmt: skip
    if system == "npbg":
        overrides += ["datasets.selection_count=0", "system.max_points=1e5",
                      "system.descriptors_save_dir=${hydra:run.dir}/descriptors"]  # fmt: skip
    else:
        overrides += ["system.feature_extractor.pretrained_encoder=false",
                      "system.feature_extractor.eval_mode=false"]  # fmt: skip
    assert train_net.main(overrides) == 0
    metrics = json.loads((tmp_path / system / "metrics_val_epoch0.json").read_text())
    assert len(metrics["per_view"]) == 5
    return metrics["average"]["PSNR"]


def test_short_fits_learn_the_held_out_views(tmp_path, monkeypatch):
    """make test's check: 40 steps of each at 48 px."""
    size, steps = FAST["size"], FAST["steps"]
    psnr = {s: fit(tmp_path, monkeypatch, s, size, steps) for s in ("npbgpp_sphere", "npbg")}
    assert_margins("npbgpp.fast", {
        "NPBG++ held-out PSNR (dB)": (psnr["npbgpp_sphere"], FAST["npbgpp"]),
        "NPBG held-out PSNR (dB)": (psnr["npbg"], FAST["npbg"]),
    })  # fmt: skip


@pytest.mark.slow
def test_npbgpp_and_npbg_side_by_side(tmp_path, monkeypatch):
    """The acceptance run: NPBG++ and NPBG, same scene and budget, at 64 px."""
    size, steps = SLOW["size"], SLOW["steps"]
    psnr = {s: fit(tmp_path, monkeypatch, s, size, steps) for s in ("npbgpp_sphere", "npbg")}
    print(f"held-out PSNR after {steps} steps: {psnr}")
    assert_margins("npbgpp.slow", {
        "NPBG++ held-out PSNR (dB)": (psnr["npbgpp_sphere"], SLOW["npbgpp"]),
        "NPBG held-out PSNR (dB)": (psnr["npbg"], SLOW["npbg"]),
    })  # fmt: skip
