"""``python -m npbgpp.train_net``: the authors' README commands on generated scenes in their
layouts (only data paths, sizes and epochs changed), exact resume, two CPU processes, and
user mistakes (one stderr line, exit status 2, nothing overwritten).

Scenes are tiny (16 views of 32 x 32 pixels, 3000 points) and runs take one or two steps, so
the numbers are about the plumbing: which files appear, what they hold, and that a resumed or
distributed run repeats a single uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from geomkit import dist as gdist
from geomkit.errors import run_main
from geomkit.io import read_image
from npbgpp import checkpoints
from npbgpp.config import load_config
from npbgpp.synthetic import cached_scene
from npbgpp.system import NPBG, DescriptorDirs, NPBGPlusPlus
from npbgpp.train_net import main
from tests.helpers import REPO, torchrun
from tests.npbgpp.test_checkpoints import authors_checkpoint
from tests.npbgpp.test_config import README

SCENE = {"views": 16, "image_size": (32, 32), "n_points": 3000}
# No VGG-19 or LPIPS weight files on a test machine: the explicit fallbacks, said where used.
NO_WEIGHT_FILES = ["system.perceptual_loss=l1_ssim", "lpips=none"]
TINY = ["datasets.train_num_samples=2", "datasets.train_image_size=32", *NO_WEIGHT_FILES]


pytestmark = pytest.mark.usefixtures("one_thread")


def command(name: str, *changes: str) -> list[str]:
    """The README command ``name`` (tests/npbgpp/test_config.py) with the keys of ``changes``
    replaced where the command sets them and appended where it does not."""
    changed = {change.split("=", 1)[0]: change for change in changes}
    args = [changed.pop(arg.split("=", 1)[0], arg) for arg in shlex.split(README[name])]
    return args + list(changed.values())


def cli(cwd: Path, args: list[str]) -> int:
    """``main(args)`` started in ``cwd`` (it changes into hydra.run.dir); the cwd is restored."""
    before = os.getcwd()
    os.chdir(cwd)
    try:
        return main(args)
    finally:
        os.chdir(before)


def link(scene: Path, where: Path) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.symlink_to(scene, target_is_directory=True)
    return where


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return checkpoints.read_lightning_checkpoint(path)["state_dict"]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def psnr_of_pngs(rendered: Path, gt: Path) -> float:
    a, b = (np.asarray(read_image(p), dtype=np.float64) for p in (rendered, gt))
    return float(-10 * np.log10(np.mean((a[..., :3] - b[..., :3]) ** 2)))


# -- the workspace: scenes where the README commands look for them ----------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder laid out as the README commands expect (example/DTU_masked/scan118,
    example/H3DS/5ae021f2805c0854, ../../data/scannet_for_npbg/* from the run folder ...),
    every scene a link to a generated one."""
    root = tmp_path_factory.mktemp("cli")
    link(cached_scene("dtu", **SCENE), root / "example" / "DTU_masked" / "scan118")
    link(cached_scene("dtu", **SCENE), root / "data" / "DTU_masked" / "scan110")
    link(cached_scene("h3ds", **SCENE), root / "example" / "H3DS" / "5ae021f2805c0854")
    link(cached_scene("colmap", **SCENE), root / "example" / "colmap" / "fox")
    blender = cached_scene("blender", test_views=2, **SCENE)
    link(blender, root / "example" / "nerf_synthetic" / "hotdog")
    scannet = cached_scene("scannet", **SCENE)
    datasets = load_config(["datasets=scannet_pretrain", "system=npbgpp_sphere"]).cfg.datasets
    for name in {*datasets.train_scenes, *datasets.val_scenes, *datasets.test_scenes}:
        link(scannet, root / "data" / "scannet_for_npbg" / name)
    return root


# -- 1. the README commands ------------------------------------------------------------------
@pytest.fixture(scope="module")
def authors_ckpt(work) -> dict[str, torch.Tensor]:
    """./checkpoints/npbgpp_dtu_nm_mvs_ft_epoch35.ckpt, where the README's eval command
    looks; its state dict."""
    (work / "checkpoints").mkdir(exist_ok=True)
    return authors_checkpoint(work / "checkpoints" / "npbgpp_dtu_nm_mvs_ft_epoch35.ckpt")


EVAL_LAYOUTS = {
    # layout: (overrides beside the README eval command's, scene, its holdout views' names)
    "dtu": (
        ["datasets.val_indices=[5]", "datasets.holdout_indices=[3,11]"],
        "scan118",
        ["3", "11"],
    ),
    "blender": (
        [
            "datasets=nerf_blender_one_scene",
            "datasets.data_root=${hydra:runtime.cwd}/example/nerf_synthetic",
            "datasets.scene_name=hotdog",
            "datasets.val_indices={start:16,stop:18,step:1}",
            "datasets.holdout_indices={start:18,stop:20,step:1}",
            "datasets.input_indices={start:0,stop:16,step:1}",
        ],
        "hotdog",
        ["test-r_0", "test-r_1"],
    ),
    "colmap": (
        [
            "datasets=colmap_one_scene",
            "datasets.data_root=${hydra:runtime.cwd}/example/colmap",
            "datasets.scene_name=fox",
            "datasets.val_indices=[5]",
            "datasets.holdout_indices=[10]",
        ],
        "fox",
        ["0010"],
    ),
}


@pytest.mark.parametrize("layout", sorted(EVAL_LAYOUTS))
def test_readme_eval_command_writes_renders_descriptors_and_metrics(layout, work, authors_ckpt):
    changes, scene, views = EVAL_LAYOUTS[layout]
    run_dir = f"experiments/npbgpp_eval_{layout}"
    args = command("eval", f"hydra.run.dir={run_dir}", "lpips=none", *changes)
    assert cli(work, args) == 0
    folder = work / run_dir
    # the epoch of the authors' checkpoint names the test folder, as Lightning's test epoch
    rendered = folder / "rendered" / f"{scene}_holdout" / "test_epoch35"
    expected = {f"{v}_{kind}.png" for v in views for kind in ("rendered", "gt", "raster")}
    assert {p.name for p in rendered.iterdir()} == expected
    descriptors = torch.load(folder / "descriptors" / f"{scene}.pth", weights_only=True)
    assert descriptors.shape == (SCENE["n_points"], 8 * 7) and descriptors.dtype == torch.float32
    assert bool(descriptors.abs().sum(1).gt(0).any()), "no point was seen by any input view"
    metrics = json.loads((folder / "metrics_test_epoch35.json").read_text())
    per_view = metrics["per_view"]
    assert sorted(per_view) == sorted(f"{scene}/{v}" for v in views)
    for view in views:
        scores = per_view[f"{scene}/{view}"]
        assert set(scores) == {"PSNR", "SSIM"}
        # the PSNR of the written PNGs (8-bit) is the metric of the float render
        png = psnr_of_pngs(rendered / f"{view}_rendered.png", rendered / f"{view}_gt.png")
        assert abs(png - scores["PSNR"]) < 0.05
        assert -1.0 <= scores["SSIM"] <= 1.0
    mean_psnr = np.mean([per_view[f"{scene}/{v}"]["PSNR"] for v in views])
    assert metrics["average"]["PSNR"] == pytest.approx(mean_psnr, abs=1e-9)


PRETRAIN_SIZES = [
    # one scene a step instead of 4 x 2000 crops of 256 px; ScanNet's 20-px margin on 32 px
    "system.max_scenes_per_train_epoch=1",
    "dataloader.train_total_batch_size=1",
    "datasets.val_indices=[5]",
    "datasets.holdout_indices=[10]",
    "datasets.image_margin=2",
    "trainer.max_epochs=1",
    *TINY,
]


@pytest.fixture(scope="module")
def pretrained(work) -> Path:
    """The README's ScanNet pretraining command (78 scenes; each a link to one generated
    ScanNet scene), one epoch of 2 steps; its run folder."""
    args = command("pretrain", "system.feature_extractor.pretrained_encoder=false", *PRETRAIN_SIZES)
    assert cli(work, args) == 0
    return work / "experiments" / "npbgpp_scannet"


def test_readme_pretraining_command_writes_lightning_checkpoints(pretrained, authors_ckpt):
    names = sorted(p.name for p in (pretrained / "checkpoints").iterdir())
    assert names == ["epoch0.ckpt", "last.ckpt"]
    last = checkpoints.read_lightning_checkpoint(pretrained / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 0 and last["global_step"] == 2  # 1 scene x 2 samples, batch 1
    assert last["pytorch-lightning_version"] == checkpoints.LIGHTNING_VERSION
    # the same keys and shapes as the authors' NPBG++ checkpoint
    assert {k: v.shape for k, v in last["state_dict"].items()} == {
        k: v.shape for k, v in authors_ckpt.items()
    }
    hyper = last["hyper_parameters"]
    assert hyper["datasets"]["type"] == "scannet" and len(hyper["datasets"]["train_scenes"]) == 78
    assert hyper["dataloader"]["train_data_mode"] == "each" and hyper["trainer"]["gpus"] == 4
    epoch0 = state_dict(pretrained / "checkpoints" / "epoch0.ckpt")
    assert_same_tensors(epoch0, last["state_dict"])
    # trained: the refiner moved away from the seeded initialisation
    assert not torch.equal(epoch0["refiner.final.weight"], authors_ckpt["refiner.final.weight"])
    validation = json.loads((pretrained / "metrics_val_epoch0.json").read_text())
    assert list(validation["per_view"]) == ["scene0099_00/5"]
    assert any(p.name.startswith("events.out.tfevents") for p in (pretrained / "tb_logs").iterdir())
    assert "epoch 0: 2 steps" in (pretrained / "log.txt").read_text()


@pytest.fixture(scope="module")
def h3ds_eval(work, pretrained) -> Path:
    """The pretraining checkpoint as ./checkpoints/npbgpp_h3ds.ckpt, evaluated on the H3DS
    scene by the README eval command (its descriptors start the fine-tuning)."""
    shutil.copy(pretrained / "checkpoints" / "last.ckpt", work / "checkpoints" / "npbgpp_h3ds.ckpt")
    args = command(
        "eval",
        "hydra.run.dir=experiments/npbgpp_eval_5ae021f2805c0854",
        "datasets=h3ds_one_scene",
        "datasets.data_root=${hydra:runtime.cwd}/example/H3DS",
        "datasets.scene_name=5ae021f2805c0854",
        "weights_path=./checkpoints/npbgpp_h3ds.ckpt",
        "datasets.val_indices=[7,14]",
        "datasets.holdout_indices=[5,10]",
        "lpips=none",
    )
    assert cli(work, args) == 0
    return work / "experiments" / "npbgpp_eval_5ae021f2805c0854"


def test_h3ds_eval_of_the_pretrained_checkpoint(h3ds_eval):
    rendered = h3ds_eval / "rendered" / "5ae021f2805c0854_holdout" / "test_epoch0"
    names = ["0005_rendered.png", "0010_rendered.png"]
    assert sorted(p.name for p in rendered.glob("*_rendered.png")) == names
    metrics = json.loads((h3ds_eval / "metrics_test_epoch0.json").read_text())
    assert sorted(metrics["per_view"]) == ["5ae021f2805c0854/0005", "5ae021f2805c0854/0010"]


def test_readme_coefficient_fine_tuning_starts_from_the_npbgpp_descriptors(work, h3ds_eval):
    scene = "5ae021f2805c0854"
    args = command(
        "coefficients_ft",
        "datasets.val_indices=[7,14]",
        "datasets.holdout_indices=[5,10]",
        "datasets.train_num_samples=2",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        *NO_WEIGHT_FILES,
    )
    assert cli(work, args) == 0
    folder = work / "experiments" / f"npbgpp_{scene}_ft"
    start = torch.load(h3ds_eval / "descriptors" / f"{scene}.pth", weights_only=True)
    fitted = torch.load(folder / "descriptors" / f"{scene}.pth", weights_only=True)
    assert fitted.shape == start.shape == (SCENE["n_points"], 56)
    seen = start.abs().sum(1) > 0
    same = (fitted == start).all(1)
    # RMSprop leaves the rows without gradient exactly as they started: the NPBG++ table
    assert bool((same & seen).any()), "no row equals the NPBG++ descriptors it started from"
    assert bool((~same).any()), "the fine-tuning changed nothing"
    last = checkpoints.read_lightning_checkpoint(folder / "checkpoints" / "last.ckpt")
    prefixes = {k.split(".")[0] for k in last["state_dict"]}
    assert prefixes == {"rgb_converter", "rasterizer", "refiner", "aggregator"}
    # the aggregator's basis MLP is the NPBG++ checkpoint's, not trained here
    source = state_dict(work / "checkpoints" / "npbgpp_h3ds.ckpt")
    assert torch.equal(
        last["state_dict"]["aggregator.mlp.0.weight"], source["aggregator.mlp.0.weight"]
    )
    # and evaluated as the README does: the same system, eval_only, the fitted tables
    args = command(
        "coefficients_ft",
        f"hydra.run.dir=experiments/npbgpp_{scene}_ft_eval",
        "eval_only=true",
        f"system.descriptors_pretrained_dir=experiments/npbgpp_{scene}_ft/descriptors",
        "system.descriptors_save_dir=null",
        f"weights_path=experiments/npbgpp_{scene}_ft/checkpoints/last.ckpt",
        "datasets.val_indices=[7,14]",
        "datasets.holdout_indices=[5,10]",
        *NO_WEIGHT_FILES,
    )
    assert cli(work, args) == 0
    metrics = json.loads(
        (work / f"experiments/npbgpp_{scene}_ft_eval/metrics_test_epoch0.json").read_text()
    )
    assert sorted(metrics["per_view"]) == [f"{scene}/0005", f"{scene}/0010"]


@pytest.fixture(scope="module")
def npbg_pretrained(work) -> Path:
    """experiments/npbg_dtu_nm/result/checkpoints/epoch35.ckpt (the README's NPBG pretraining
    result): a seeded NPBG written by our checkpoint writer."""
    cfg = load_config(["datasets=dtu_one_scene", "system=npbg"]).cfg
    torch.manual_seed(35)
    system = NPBG(cfg.system, None, DescriptorDirs(None, None))
    path = work / "experiments" / "npbg_dtu_nm" / "result" / "checkpoints" / "epoch35.ckpt"
    path.parent.mkdir(parents=True)
    checkpoints.write_checkpoint(path, system, 35, 35000, [], cfg)
    return path


NPBG_SIZES = [
    "datasets.val_indices=[5]",
    "datasets.holdout_indices=[3]",
    "trainer.max_epochs=1",
    "dataloader.train_total_batch_size=2",  # the README's 8 (over 4 GPUs), for 2 crops
]


@pytest.mark.parametrize("empty", [False, True])
def test_readme_npbg_fit_writes_descriptors_and_keeps_other_files(empty, work, npbg_pretrained):
    run = f"experiments/npbg_dtu_nm_scan110_{empty}"
    descriptors = work / run / "result" / "descriptors"
    descriptors.mkdir(parents=True)
    (descriptors / "scan999.pth").write_bytes(b"another scene's table")
    (descriptors / "notes.txt").write_text("mine")
    args = command(
        "npbg",
        f"hydra.run.dir={run}",
        f"system.descriptors_save_dir={run}/result/descriptors",
        f"system.empty_descriptors_save_dir={str(empty).lower()}",
        *NPBG_SIZES,
        *TINY,
    )
    assert cli(work, args) == 0
    table = torch.load(descriptors / "scan110.pth", weights_only=True)
    assert table.shape == (SCENE["n_points"], 8) and table.dtype == torch.float32
    # zeros at the start; RMSprop at lr 0.1 moved the points the crops saw
    assert 0 < int((table.abs().sum(1) > 0).sum()) < SCENE["n_points"]
    assert (descriptors / "notes.txt").read_text() == "mine"
    # the original emptied the folder at start; here only when asked
    assert (descriptors / "scan999.pth").exists() is (not empty)
    last = checkpoints.read_lightning_checkpoint(work / run / "checkpoints" / "last.ckpt")
    assert {k.split(".")[0] for k in last["state_dict"]} == {
        "rgb_converter",
        "rasterizer",
        "refiner",
    }
    start = state_dict(npbg_pretrained)["refiner.final.weight"]
    assert not torch.equal(last["state_dict"]["refiner.final.weight"], start)


# -- 3. kill and resume ---------------------------------------------------------------------
def fit_args(system: str, run: str, epochs: int, *extra: str) -> list[str]:
    """A short fit on the DTU scene (one step of one crop per epoch)."""
    args = [
        f"hydra.run.dir={run}",
        "datasets=dtu_one_scene",
        "datasets.data_root=${hydra:runtime.cwd}/example/DTU_masked",
        "datasets.scene_name=scan118",
        "datasets.val_indices=[5]",
        "datasets.holdout_indices=[3]",
        "datasets.train_num_samples=1",
        "datasets.train_image_size=32",
        "dataloader=small",
        f"trainer.max_epochs={epochs}",
        f"system={system}",
        *NO_WEIGHT_FILES,
    ]
    if system == "npbgpp_sphere":
        args += ["system.feature_extractor.pretrained_encoder=false", "trainer.limit_val_batches=0"]
    else:
        args += ["datasets.selection_count=0", f"system.descriptors_save_dir={run}/descriptors"]
    return args + list(extra)


def assert_same_run(a: Path, b: Path) -> None:
    """Equal parameters, optimizer states and counters in last.ckpt (and NPBG's tables)."""
    x, y = (checkpoints.read_lightning_checkpoint(f / "checkpoints" / "last.ckpt") for f in (a, b))
    assert (x["epoch"], x["global_step"]) == (y["epoch"], y["global_step"])
    assert_same_tensors(x["state_dict"], y["state_dict"])
    for first, second in zip(x["optimizer_states"], y["optimizer_states"], strict=True):
        assert first["param_groups"] == second["param_groups"]
        assert sorted(first["state"]) == sorted(second["state"])
        for key, state in first["state"].items():
            assert_same_tensors(state, second["state"][key])
    tables = sorted(p.name for p in (a / "descriptors").glob("*.pth"))
    assert tables == sorted(p.name for p in (b / "descriptors").glob("*.pth"))
    for name in tables:
        first, second = (torch.load(f / "descriptors" / name, weights_only=True) for f in (a, b))
        assert torch.equal(first, second), name


def test_npbg_resumes_exactly_after_a_kill_between_its_tables_and_its_checkpoint(work):
    """NPBG writes its tables at the end of an epoch, before that epoch's checkpoint: a kill in
    between leaves epoch 1's tables beside epoch 0's checkpoint. The resume reads epoch 0's
    snapshot (descriptors/resume/) and ends as the uninterrupted run."""
    whole, killed = "experiments/whole_npbg_window", "experiments/killed_npbg_window"
    assert cli(work, fit_args("npbg", whole, 3)) == 0
    assert cli(work, fit_args("npbg", killed, 2)) == 0
    folder = work / killed / "checkpoints"
    (folder / "epoch1.ckpt").unlink()  # what the kill left: epoch 1's tables, epoch 0's ckpt
    shutil.copyfile(folder / "epoch0.ckpt", folder / "last.ckpt")
    resume = "trainer.resume_from_checkpoint=checkpoints/last.ckpt"
    assert cli(work, fit_args("npbg", killed, 3, resume)) == 0
    assert_same_run(work / whole, work / killed)
    snapshots = sorted(p.name for p in (work / killed / "descriptors" / "resume").iterdir())
    assert snapshots == ["scan118.epoch1.pth", "scan118.epoch2.pth"]


@pytest.mark.parametrize("system", ["npbgpp_sphere", "npbg"])
def test_resumed_fit_equals_the_uninterrupted_one(system, work):
    whole, parts = f"experiments/whole_{system}", f"experiments/parts_{system}"
    assert cli(work, fit_args(system, whole, 2)) == 0
    assert cli(work, fit_args(system, parts, 1)) == 0
    first = state_dict(work / parts / "checkpoints" / "last.ckpt")
    resume = "trainer.resume_from_checkpoint=checkpoints/last.ckpt"
    assert cli(work, fit_args(system, parts, 2, resume)) == 0
    assert sorted(p.name for p in (work / parts / "checkpoints").iterdir()) == [
        "epoch0.ckpt",
        "epoch1.ckpt",
        "last.ckpt",
    ]
    # epoch0.ckpt is the first run's; the second epoch trained on from it
    assert_same_tensors(state_dict(work / parts / "checkpoints" / "epoch0.ckpt"), first)
    assert not torch.equal(
        state_dict(work / parts / "checkpoints" / "last.ckpt")["refiner.final.weight"],
        first["refiner.final.weight"],
    )
    assert_same_run(work / whole, work / parts)


@pytest.mark.slow
def test_a_run_killed_after_its_first_checkpoint_resumes_to_the_same_weights(work):
    """kill -9 once checkpoints/last.ckpt exists, resume from it: the uninterrupted result."""
    epochs, samples = 3, "datasets.train_num_samples=2"
    assert cli(work, fit_args("npbgpp_sphere", "experiments/unkilled", epochs, samples)) == 0
    args = fit_args("npbgpp_sphere", "experiments/killed", epochs, samples)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "npbgpp.train_net", *args],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = work / "experiments" / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL, "the run ended before it was killed"
    killed_at = checkpoints.read_lightning_checkpoint(last)["epoch"]
    assert killed_at < epochs - 1
    resume = "trainer.resume_from_checkpoint=checkpoints/last.ckpt"
    assert cli(work, fit_args("npbgpp_sphere", "experiments/killed", epochs, samples, resume)) == 0
    assert_same_run(work / "experiments" / "unkilled", work / "experiments" / "killed")


# -- 4. two processes ------------------------------------------------------------------------
def test_two_processes_in_common_mode_step_as_one(work):
    """torchrun, 2 CPU processes (gloo), a global batch of 2 crops: one item per process, the
    gradients averaged, equals one process stepping on both."""
    common = ["dataloader=standard", "dataloader.train_total_batch_size=2"]
    args = fit_args("npbgpp_sphere", "experiments/one", 1, *common, "datasets.train_num_samples=2")
    assert cli(work, args) == 0
    two = fit_args("npbgpp_sphere", str(work / "experiments/two"), 1, *common)
    two += ["datasets.train_num_samples=2"]
    done = torchrun("-m", "npbgpp.train_net", *two, cwd=work, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = checkpoints.read_lightning_checkpoint(work / "experiments/one/checkpoints/last.ckpt")
    both = checkpoints.read_lightning_checkpoint(work / "experiments/two/checkpoints/last.ckpt")
    assert one["global_step"] == both["global_step"] == 1
    gdist.seed_everything(3407, per_rank=False)  # the run's seed: its initial weights
    start = checkpoints.saved_state_dict(NPBGPlusPlus(load_config(args).cfg.system, None))
    moved = 0
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(both["state_dict"][key], value, atol=1e-6, rtol=1e-5, msg=key)
        moved += int(not torch.equal(value, start[key]))
    assert moved > 100  # the step changed the weights (Adam moves every one with a gradient)


# -- 5. mistakes: one line, exit status 2, nothing overwritten --------------------------------
def fails(work: Path, args: list[str], capsys) -> str:
    """Run ``args`` as the command line does; it must exit 2 with one stderr line (returned)."""
    before = os.getcwd()
    os.chdir(work)
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exit_:
            run_main(main, args)
    finally:
        os.chdir(before)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def earlier_run(work) -> Path:
    """A run folder holding an earlier run's checkpoint, config and log."""
    folder = work / "experiments" / "earlier"
    for name, text in [
        ("checkpoints/last.ckpt", "weights"),
        (".hydra/config.yaml", "config"),
        ("log.txt", "log"),
    ]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    yield folder
    shutil.rmtree(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def no_cloud(work) -> Path:
    """A DTU scene without its mvs_pc.ply (links to the other files)."""
    scene = cached_scene("dtu", **SCENE)
    folder = work / "example" / "DTU_masked" / "scan000"
    folder.mkdir(parents=True)
    for item in scene.iterdir():
        if item.name != "mvs_pc.ply":
            (folder / item.name).symlink_to(item)
    return folder


MISTAKES = {
    # name: (changes to the fit command, words the message must hold)
    "missing scene folder": (["datasets.scene_name=scan404"], ["scan404", "not found"]),
    "missing mvs_pc.ply": (["datasets.scene_name=scan000"], ["mvs_pc.ply", "make_point_cloud"]),
    "holdout index out of range": (["datasets.holdout_indices=[3,99]"], ["holdout_indices", "99"]),
    "missing weights file": (["weights_path=nowhere/epoch35.ckpt"], ["nowhere/epoch35.ckpt"]),
    "encoder weights": (
        ["system.feature_extractor.pretrained_encoder=true"],
        ["pretrained_encoder", "encoder_weights_path"],
    ),
    "no full batch": (["dataloader.train.total_batch_size=2"], ["no full batch"]),
    "unknown trainer key": (["+trainer.foo=1"], ["trainer.foo"]),
    "unreadable resume checkpoint": (
        ["trainer.resume_from_checkpoint=checkpoints/last.ckpt"],
        ["checkpoints/last.ckpt"],
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_one_line_exit_2_and_overwrites_nothing(
    mistake, work, earlier_run, no_cloud, capsys
):
    changes, words = MISTAKES[mistake]
    before = snapshot(earlier_run)
    # +overwrite=true: the mistake, not the earlier checkpoints, stops the run
    args = fit_args("npbgpp_sphere", "experiments/earlier", 1, *changes, "+overwrite=true")
    message = fails(work, args, capsys)
    assert all(word in message for word in words), message
    assert snapshot(earlier_run) == before
    # a new run folder is not left behind either
    message = fails(work, fit_args("npbgpp_sphere", "experiments/never", 1, *changes), capsys)
    assert not (work / "experiments" / "never").exists()


def test_a_new_fit_does_not_replace_an_earlier_runs_checkpoints(work, earlier_run, capsys):
    before = snapshot(earlier_run)
    message = fails(work, fit_args("npbg", "experiments/earlier", 1), capsys)
    assert "checkpoints" in message and "resume_from_checkpoint" in message
    assert snapshot(earlier_run) == before


def test_an_unknown_key_from_the_shell_is_one_line_and_exit_2(work):
    """The real command line: no traceback, one line, status 2."""
    args = [*command("eval", "system.foo=1")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "npbgpp.train_net", *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1:] == [
        "error: configuration: Could not override 'system.foo'. "
        "To append to your config use +system.foo=1"
    ]
    assert (
        "Traceback" not in done.stderr and not (work / "experiments/npbgpp_eval_scan118").exists()
    )


def test_npbg_cannot_resume_without_its_descriptor_folder(work, earlier_run, capsys):
    """NPBG's tables live only in descriptors_save_dir: without it a resume would restart
    them, so it is refused."""
    before = snapshot(earlier_run)
    args = fit_args(
        "npbg",
        "experiments/earlier",
        2,
        "system.descriptors_save_dir=null",
        "trainer.resume_from_checkpoint=checkpoints/last.ckpt",
    )
    message = fails(work, args, capsys)
    assert "descriptors_save_dir" in message and "resume" in message
    assert snapshot(earlier_run) == before


@pytest.mark.parametrize("fresh_fit", [True, False])
def test_empty_descriptors_save_dir_spares_a_resume_and_an_evaluation(tmp_path, fresh_fit):
    """empty_descriptors_save_dir empties the folder for a fresh fit only: a resumed fit or an
    evaluation reads the tables it would delete."""
    table = tmp_path / "scan110.pth"
    torch.save(torch.ones(3, 8), table)
    system = OmegaConf.create(
        {"descriptors_save_dir": str(tmp_path), "empty_descriptors_save_dir": True}
    )
    dirs = DescriptorDirs.from_config(system, Path, fresh_fit)
    assert table.exists() is (not fresh_fit)
    expected = torch.zeros(3, 8) if fresh_fit else torch.ones(3, 8)
    assert torch.equal(dirs.load("scan110", 3, 8), expected)
