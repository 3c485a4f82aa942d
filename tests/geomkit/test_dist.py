"""Distributed helpers: a real torchrun run with two CPU processes (gloo)."""

from __future__ import annotations

from pathlib import Path

import torch

from geomkit import dist
from tests.geomkit.ddp_worker import model_and_batch
from tests.helpers import assert_close, torchrun

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_cpu_processes_give_the_single_process_gradient(tmp_path):
    out = tmp_path / "grads.pt"
    run = torchrun(str(WORKER), str(out), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    assert result["world"] == 2

    model, x, y = model_and_batch()
    loss = (model(x) - y).square().mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert_close(result["grads"][name], param.grad, atol=1e-6, rtol=1e-5, what=name)
    assert_close(result["stats"]["mean"], model[1].running_mean, atol=1e-6, what="running mean")
    assert_close(result["stats"]["var"], model[1].running_var, atol=1e-6, what="running var")
    # Mean of the two shard losses equals the full-batch loss (equal shard sizes).
    assert abs(result["loss"] - loss.item()) < 1e-6


def test_single_process_fallbacks():
    info = dist.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    assert dist.all_reduce_mean({"a": 2.0, "b": 4.0}) == {"a": 2.0, "b": 4.0}
    assert dist.weighted_mean(6.0, 3.0) == 2.0
    model = torch.nn.Linear(2, 2)
    assert dist.wrap_ddp(model, info) is model
    assert dist.seed_everything(5) == 5
