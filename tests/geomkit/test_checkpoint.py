"""Checkpoints: atomic save, latest resolution, safe loading, strict keys, exact resume."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from geomkit import checkpoint as ckpt
from geomkit.errors import CheckpointError


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 1))


def test_save_is_atomic_and_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    ckpt.save_checkpoint(path, {"step": 1})

    def failing_save(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left


def test_resolve_latest_and_named(tmp_path):
    for name in ("1000.pth", "20000.pth", "3000.pth", "model.pt"):
        ckpt.save_checkpoint(tmp_path / name, {})
    assert ckpt.resolve_checkpoint(tmp_path).name == "20000.pth"
    assert ckpt.resolve_checkpoint(tmp_path, "model").name == "model.pt"
    ckpt.save_checkpoint(tmp_path / "latest.pth", {})
    assert ckpt.resolve_checkpoint(tmp_path).name == "latest.pth"
    with pytest.raises(CheckpointError, match="no checkpoint 'best' in .*found: 1000.pth"):
        ckpt.resolve_checkpoint(tmp_path, "best")
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.resolve_checkpoint(tmp_path / "absent")


def test_official_objects_load_with_weights_only(tmp_path):
    """NU-MCC stores an argparse.Namespace, ONet numpy scalars."""
    path = tmp_path / "official.pt"
    torch.save(
        {
            "model": {"w": torch.ones(2)},
            "args": argparse.Namespace(lr=1e-4),
            "loss_val_best": np.float64(0.25),
            "it": 2886000,
        },
        path,
    )
    loaded = ckpt.load_checkpoint(path)
    assert loaded["args"].lr == 1e-4 and float(loaded["loss_val_best"]) == 0.25


class Unlisted:
    pass


def test_unlisted_object_and_corrupt_file_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": Unlisted()}, path)
    with pytest.raises(CheckpointError, match=r"contains the Python object .*Unlisted"):
        ckpt.load_checkpoint(path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt.pt is not a readable torch file"):
        ckpt.load_checkpoint(corrupt)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_strict_loading_reports_every_problem_at_once():
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state.pop("0.bias")
    state["3.weight"] = torch.zeros(2, 8)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as error:
        ckpt.load_state_dict_strict(model, state, source="file x.pt")
    message = str(error.value)
    assert "file x.pt does not match Sequential" in message
    assert "1 missing: 0.bias" in message
    assert "1 unexpected: extra.weight" in message
    assert "3.weight (2, 8) vs model (1, 8)" in message


def test_remap_rules_rename_and_drop():
    state = {"fc.weight": 1, "conv1.weight": 2, "layer1.0.bn1.bias": 3}
    rules = [(r"fc\.", None), (r"", "encoder.features.")]
    assert ckpt.remap_keys(state, rules) == {
        "encoder.features.conv1.weight": 2,
        "encoder.features.layer1.0.bn1.bias": 3,
    }


def run_steps(model, optimizer, scheduler, steps):
    for _ in range(steps):
        x = torch.randn(16, 4)
        noise = float(np.random.rand())  # noqa: NPY002 - the legacy global state is resumed too
        loss = (model(x).squeeze(1) - x.sum(1) - noise).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def make_run():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    return model, optimizer, scheduler


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    model, optimizer, scheduler = make_run()
    run_steps(model, optimizer, scheduler, 10)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    model, optimizer, scheduler = make_run()
    run_steps(model, optimizer, scheduler, 4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = ckpt.training_state(model, optimizer, scheduler, scaler, step=4, best=0.5)
    ckpt.save_checkpoint(tmp_path / "4.pt", state)
    run_steps(model, optimizer, scheduler, 3)  # work after the save is lost in the "kill"

    model, optimizer, scheduler = make_run()
    torch.manual_seed(123)  # the new process starts from other RNG states
    loaded = ckpt.load_checkpoint(ckpt.resolve_checkpoint(tmp_path))
    step = ckpt.restore_training_state(loaded, model, optimizer, scheduler, scaler)
    assert step == 4 and loaded["best"] == 0.5
    run_steps(model, optimizer, scheduler, 10 - step)
    for key, value in straight.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_inspect_cli_lists_and_fails_with_status_2(tmp_path):
    path = tmp_path / "m.pt"
    ckpt.save_checkpoint(path, {"model": small_model().state_dict(), "it": 7})
    ok = subprocess.run(
        [sys.executable, "-m", "geomkit.checkpoint", str(path), "--key", "model"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "3.weight  (1, 8) float32" in ok.stdout
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated")
    torch.save({"payload": Unlisted()}, tmp_path / "unsafe.pt")
    for argv, message in (
        ([str(tmp_path / "nope.pt")], "checkpoint"),
        ([str(path), "--key", "weights"], "has no entry 'weights'"),
        ([str(tmp_path / "corrupt.pt")], "corrupt.pt is not a readable torch file"),
        ([str(tmp_path / "unsafe.pt")], "which safe loading does not allow"),
    ):
        bad = subprocess.run(
            [sys.executable, "-m", "geomkit.checkpoint", *argv], capture_output=True, text=True
        )
        assert bad.returncode == 2
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "fresh.pt"
    ckpt.save_checkpoint(path, {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o640)
    ckpt.save_checkpoint(path, {"again": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
