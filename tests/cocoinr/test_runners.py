"""The authors' commands on a generated VolSDF-layout scene: exp_runner writes the authors'
layout and resumes exactly after a kill, val_runner writes renders, normals, a world-space mesh
and the metrics JSON, torchrun with two CPU processes trains, and bad input is one line with
exit status 2 that leaves existing files alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cocoinr import exp_runner, val_runner
from cocoinr.checkpoints import checkpoint_path
from cocoinr.training import lr_schedule
from geomkit.checkpoint import load_checkpoint
from geomkit.synth.generate import cached_scene
from tests.helpers import REPO, torchrun

TINY = [
    "dataset.img_res=[32,32]", "dataset.train_views=[0,3,6]", "train.num_pixels=64",
    "train.split_n_pixels=512", "train.checkpoint_freq=2", "plot.resolution=16",
    "model.ray_sampler.N_samples=8", "model.ray_sampler.N_samples_eval=16",
    "model.ray_sampler.N_samples_extra=4", "model.ray_sampler.N_samples_inverse_sphere=4",
    "model.ray_sampler.max_total_iters=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory) -> Path:
    """data_dir/scene (a snowman, 8 views, 32 px, cameras inside the radius-3 sphere) and a
    random 64 x 256 codebook in the VQGAN layout."""
    root = tmp_path_factory.mktemp("cocoinr_data")
    source = cached_scene(shape="snowman", views=8, layout="volsdf", image_size=(32, 32),
                          volsdf_margin=2.7)  # fmt: skip
    (root / "scene").symlink_to(source, target_is_directory=True)
    codebook = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    torch.save({"state_dict": {"quantize.embedding.weight": codebook}}, root / "codebook.ckpt")
    return root


def flags(root: Path, exps: Path, *extra: str, iterations: int = 6) -> list[str]:
    sets = [*TINY, f"dataset.data_dir={root}", f"model.vq_cfg.ckpt_path={root / 'codebook.ckpt'}"]
    out = ["--conf", "small.conf", "--expname", "t", "--exps_folder", str(exps), "--scan_id",
           "scene", "--gpu", "cpu", "--iter", str(iterations)]  # fmt: skip
    for item in [*sets, *extra]:
        out += ["--set", item]
    return out


def model_state(exp_dir: Path, name="latest") -> dict:
    return load_checkpoint(checkpoint_path(exp_dir, "model", name))["model_state_dict"]


def test_training_writes_the_authors_layout_and_evaluation_its_outputs(scene_root, tmp_path):
    exps = tmp_path / "exps"
    assert exp_runner.main(flags(scene_root, exps, "train.plot_freq=2")) == 0
    exp_dir = exps / "smallt_scene"  # conf expname + --expname + _scan_id, as the original
    for kind in ("Model", "Optimizer", "Scheduler"):
        names = {p.name for p in (exp_dir / "checkpoints" / f"{kind}Parameters").iterdir()}
        assert names == {"0.pth", "2.pth", "latest.pth"}  # 3 views: 2 epochs, saved at 0 and end
    saved = load_checkpoint(checkpoint_path(exp_dir, "model"))
    assert saved["epoch"] == 2 and list(saved["model_state_dict"]).count("codebook") == 1
    assert (exp_dir / "runconf.conf").read_text().count("train_views") == 1
    assert {p.suffix for p in (exp_dir / "plots" / "2").iterdir()} >= {".png"}

    gt_mesh = str(scene_root / "scene" / "gt_mesh.ply")
    evaluation = ["--lpips", "none", "--resolution", "48", "--gt_mesh", gt_mesh]
    assert val_runner.main([*flags(scene_root, exps), *evaluation]) == 0
    out = exp_dir / "plots" / "2"
    metrics = json.loads((out / "metrics.json").read_text())
    held_out = [1, 2, 4, 5, 7]
    assert sorted(int(v) for v in metrics["images"]["views"]) == held_out
    for view in held_out:
        for name in ("rendering_", "rendering_img", "rendering_gt", "normal_"):
            assert (out / f"{name}{view}.png").exists()
    means = metrics["images"]["mean"]
    assert {"psnr", "ssim", "masked_psnr", "masked_ssim"} <= set(means)
    assert all(np.isfinite(v) for v in means.values())
    mesh = metrics["mesh"]
    assert Path(mesh["mesh"]).exists() and mesh["faces"] > 0
    assert np.isfinite(mesh["geomkit_evaluate"]["chamfer_l1"])


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(scene_root, tmp_path):
    iterations = 18  # 6 epochs of the 3 views; checkpoints at epochs 0, 2, 4 and 6
    warmup = "train.warmup_iters=9"  # the kill falls inside the warm-up: its state resumes too
    straight = tmp_path / "straight"
    assert exp_runner.main(flags(scene_root, straight, warmup, iterations=iterations)) == 0

    killed = tmp_path / "killed"
    args = flags(scene_root, killed, warmup, iterations=iterations)
    process = subprocess.Popen([sys.executable, "-m", "cocoinr.exp_runner", *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    marker = killed / "smallt_scene" / "checkpoints" / "TrainingState" / "2.pth"
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not checkpoint_path(killed / "smallt_scene", "model", 6).exists()

    assert exp_runner.main([*args, "--is_continue"]) == 0
    expected, resumed = model_state(straight / "smallt_scene"), model_state(killed / "smallt_scene")
    assert expected.keys() == resumed.keys()
    for key, value in expected.items():
        assert torch.equal(resumed[key], value), key


def test_torchrun_two_cpu_processes_train(scene_root, tmp_path):
    exps = tmp_path / "exps"
    result = torchrun("-m", "cocoinr.exp_runner", *flags(scene_root, exps))
    assert result.returncode == 0, result.stderr[-3000:]
    exp_dir = exps / "smallt_scene"
    initial, final = model_state(exp_dir, 0), model_state(exp_dir)
    assert any(not torch.equal(initial[k], final[k]) for k in final)


def run_cli(module: str, args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def broken_copy(scene_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the scene (data_dir/scene) and the codebook."""
    root = tmp_path / "data"
    (root / "scene").mkdir(parents=True)
    for item in (scene_root / "scene").iterdir():
        if item.is_dir():
            (root / "scene" / item.name).symlink_to(item.resolve(), target_is_directory=True)
        else:
            (root / "scene" / item.name).write_bytes(item.read_bytes())
    (root / "codebook.ckpt").write_bytes((scene_root / "codebook.ckpt").read_bytes())
    return root


def expect_user_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[-1], lines[-1]


def test_bad_inputs_are_one_line_and_exit_2(scene_root, tmp_path):
    root = broken_copy(scene_root, tmp_path)
    exps = tmp_path / "exps"
    # a split list with an index past the scene's 8 images (DTU's "4" list on every scan)
    (root / "train_val_split.toml").write_text(
        '[scenes.scene]\nviews = 8\n[scenes.scene.default_views_configs]\n"4" = [1, 3, 5, 65]\n'
    )
    split = flags(root, exps, "dataset.train_views=null", "dataset.num_views=4")
    expect_user_error(run_cli("cocoinr.exp_runner", split), 'list "4"', "65")
    (root / "codebook.ckpt").rename(root / "elsewhere.ckpt")
    expect_user_error(run_cli("cocoinr.exp_runner", flags(root, exps)), "codebook.ckpt")
    (root / "elsewhere.ckpt").rename(root / "codebook.ckpt")
    expect_user_error(run_cli("cocoinr.exp_runner", flags(root, exps, "train.typo=1")), "typo")
    width = flags(root, exps, "model.rendering_network.d_in=6")
    expect_user_error(run_cli("cocoinr.exp_runner", width), "d_in must be 9 in mode 'idr'")

    cameras = dict(np.load(root / "scene" / "cameras.npz"))
    del cameras["world_mat_7"]
    np.savez(root / "scene" / "cameras.npz", **cameras)
    expect_user_error(run_cli("cocoinr.exp_runner", flags(root, exps)), "world_mat_7")


def test_an_unreadable_image_and_an_existing_run_are_refused(scene_root, tmp_path):
    root = broken_copy(scene_root, tmp_path)
    exps = tmp_path / "exps"
    images = root / "scene" / "image"
    images.unlink()
    images.mkdir()
    for item in sorted((scene_root / "scene" / "image").iterdir()):
        (images / item.name).write_bytes(item.read_bytes())
    first = sorted(images.iterdir())[0]
    good = first.read_bytes()
    first.write_bytes(b"not a png")
    expect_user_error(run_cli("cocoinr.exp_runner", flags(root, exps)), first.name)
    first.write_bytes(good)

    assert exp_runner.main(flags(root, exps, iterations=3)) == 0
    exp_dir = exps / "smallt_scene"
    before = {p: p.read_bytes() for p in exp_dir.rglob("*.pth")}
    expect_user_error(run_cli("cocoinr.exp_runner", flags(root, exps)), "--is_continue")
    assert {p: p.read_bytes() for p in exp_dir.rglob("*.pth")} == before


@pytest.mark.parametrize("warmup", [0, 4])
def test_lr_schedule_warms_up_then_decays_tenfold_over_the_run(warmup):
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    schedule = lr_schedule(optimizer, iterations=20, decay=0.1, warmup=warmup)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    decay = 0.1 ** (np.arange(20) / 20)
    ramp = np.minimum(1.0, (np.arange(20) + 1) / warmup) if warmup else 1.0
    np.testing.assert_allclose(lrs, 1e-3 * decay * ramp, rtol=1e-9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    if warmup == 0:  # the original's scheduler: its checkpoints load
        assert isinstance(schedule, torch.optim.lr_scheduler.ExponentialLR)
