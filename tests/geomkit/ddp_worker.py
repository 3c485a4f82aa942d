"""Run by test_dist.py under torchrun: one DDP step on gloo; rank 0 saves the gradients.

The global batch (16 samples) is split across ranks; DDP averages gradients over ranks, so the
result must equal one process computing the mean loss over the whole batch.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from geomkit import dist


def model_and_batch():
    """A model with batch norm, whose statistics must pool both ranks' samples."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(16, 3)
    y = torch.randn(16, 1)
    return model, x, y


def main(out_path: str) -> None:
    info = dist.init_distributed("cpu")
    model, x, y = model_and_batch()
    model = dist.convert_sync_batchnorm(model)
    ddp = dist.wrap_ddp(model, info)
    shard = slice(info.rank * 16 // info.world_size, (info.rank + 1) * 16 // info.world_size)
    loss = (ddp(x[shard]) - y[shard]).square().mean()
    loss.backward()
    mean_loss = dist.all_reduce_mean({"loss": loss.item()})
    if info.is_main:
        grads = {name: p.grad for name, p in model.named_parameters()}
        stats = {"mean": model[1].running_mean, "var": model[1].running_var}
        torch.save(
            {"grads": grads, "stats": stats, "loss": mean_loss["loss"], "world": info.world_size},
            out_path,
        )
    dist.cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
