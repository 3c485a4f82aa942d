"""Data loading and training: checkpoints, validation, exact resume after a kill, torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from geomkit.checkpoint import load_checkpoint
from onet import train
from onet.config import load_config
from onet.data import build_dataset
from tests.helpers import assert_close, torchrun
from tests.onet.conftest import tiny_args

REPO = Path(__file__).resolve().parents[2]


def tiny_config(dataset) -> dict:
    cfg = load_config("configs/img/onet.yaml")
    cfg["data"].update(path=str(dataset), img_size=32, points_subsample=64)
    return cfg


def test_dataset_items_have_onet_names_shapes_and_types(tiny_shapenet):
    train_set = build_dataset(tiny_config(tiny_shapenet), "train")
    val_set = build_dataset(tiny_config(tiny_shapenet), "val", return_idx=True)
    assert len(train_set) == 6 and len(val_set) == 3  # 2 and 1 of 4 per class
    item = train_set[0]
    assert item["points"].shape == (64, 3) and item["points.occ"].shape == (64,)
    assert item["inputs"].shape == (3, 32, 32) and 0 <= float(item["inputs"].min())
    val_item = val_set[1]
    assert val_item["points_iou"].shape == (2000, 3) and val_item["voxels"].shape == (32, 32, 32)
    assert val_item["idx"] == 1
    # Seeded sampling: the same item twice in an epoch, another draw in the next epoch.
    assert np.array_equal(train_set[0]["points"], item["points"])
    train_set.set_epoch(1)
    assert not np.array_equal(train_set[0]["points"], item["points"])


def test_incomplete_objects_are_named(tiny_shapenet, tmp_path):
    import shutil

    broken = tmp_path / "ShapeNet"
    shutil.copytree(tiny_shapenet, broken)
    victim = sorted((broken / "00000001").iterdir())[0]
    (victim / "points.npz").unlink()
    from geomkit.errors import InputError

    with pytest.raises(InputError, match=f"{victim.name}/points.npz"):
        build_dataset(tiny_config(broken), "train")


def parameters(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_training_writes_checkpoints_logs_and_the_best_model(tiny_shapenet, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(
        tiny_shapenet,
        out,
        "training.checkpoint_every=2",
        "training.validate_every=2",
        "training.visualize_every=4",
        "training.backup_every=4",
    )
    assert train.main([*args, "--max-iterations", "4"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.pt", "model_best.pt", "model_4.pt", "log.txt", "logs", "vis"} <= names
    checkpoint = load_checkpoint(out / "model.pt")
    assert (checkpoint["it"], checkpoint["epoch_it"]) == (4, 4)  # 6 objects / batch 4: 1 per epoch
    assert {"model", "optimizer", "loss_val_best", "rng"} <= set(checkpoint)
    assert "validation at 4: iou" in (out / "log.txt").read_text()
    assert (out / "vis" / "it_0000004.png").exists()


def run_training(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "onet.train", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tiny_shapenet, tmp_path):
    straight = tmp_path / "straight"
    assert train.main([*tiny_args(tiny_shapenet, straight), "--max-iterations", "8"]) == 0

    killed = tmp_path / "killed"
    args = tiny_args(tiny_shapenet, killed, "training.checkpoint_every=3")
    process = run_training([*args, "--max-iterations", "1000"])
    deadline = time.time() + 120
    while not (killed / "model.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_at = load_checkpoint(killed / "model.pt")["it"]
    assert saved_at % 3 == 0 and saved_at < 8
    assert train.main([*args, "--max-iterations", "8"]) == 0
    expected, resumed = parameters(straight / "model.pt"), parameters(killed / "model.pt")
    for key, value in expected.items():
        assert torch.equal(resumed[key], value), key


def test_torchrun_two_cpu_processes_give_the_single_process_gradient(tiny_shapenet, tmp_path):
    """Same global batch, batch norm synchronised: the gradients agree to rounding. (After
    Adam steps parameters cannot be compared: biases just before batch norm have a zero true
    gradient, and Adam turns its rounding noise into lr-sized steps.)"""
    worker = str(Path(__file__).with_name("ddp_gradients.py"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    subprocess.run(
        [sys.executable, worker, str(tiny_shapenet), str(tmp_path / "one.pt")],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    result = torchrun(worker, str(tiny_shapenet), str(tmp_path / "two.pt"))
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    scale = max(float(g.abs().max()) for g in one.values())
    for name, grad in one.items():
        assert_close(two[name], grad, atol=1e-5 * scale, rtol=1e-4, what=name)


def test_torchrun_training_run(tiny_shapenet, tmp_path):
    out = tmp_path / "double"
    result = torchrun(
        "-m",
        "onet.train",
        *tiny_args(tiny_shapenet, out, "training.validate_every=2"),
        "--max-iterations",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(out / "model.pt")["it"] == 2
    assert "validation at 2: iou" in (out / "log.txt").read_text()


def test_short_flags_and_bad_input(tiny_shapenet, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "onet.train",
            "--no-cuda",
            "--no-pretrained",
            "--cdim",
            "16",
            "--hdim",
            "16",
            "--pdim",
            "3",
            "--data_root",
            str(tiny_shapenet),
            "--batch_size",
            "4",
            "--output_path",
            str(tmp_path),
            "--exp_name",
            "flags",
            "--encoder",
            "resnet18",
            "--decoder",
            "cbatchnorm",
            "--max-iterations",
            "1",
            "--num-workers",
            "0",
            "--set",
            "data.img_size=32",
            "--set",
            "training.validate_every=0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    cfg_model = load_checkpoint(tmp_path / "flags" / "model.pt")["model"]
    assert cfg_model["encoder.fc.weight"].shape == (16, 512)
    assert cfg_model["decoder.fc_p.weight"].shape == (16, 3, 1)
    for extra, message in (
        (["--set", "data.path=/nonexistent"], "dataset folder not found"),
        (["--set", "training.colour=1"], "unknown config key"),
    ):
        bad = subprocess.run(
            [
                sys.executable,
                "-m",
                "onet.train",
                *tiny_args(tiny_shapenet, tmp_path / "bad"),
                *extra,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 2 and message in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_class_names_come_from_the_mesh_folder(tiny_shapenet):
    import yaml

    metadata = yaml.safe_load((tiny_shapenet / "metadata.yaml").read_text())
    assert [metadata[c]["name"] for c in sorted(metadata)] == ["sphere", "box", "torus"]
