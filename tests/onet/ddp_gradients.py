"""Run directly (one process) or under torchrun: the gradient of one ONet training step on the
same global batch of 4; rank 0 saves it. Used by test_training.py."""

from __future__ import annotations

import sys

import torch

from geomkit import dist as gdist
from geomkit.training import EpochBatchSampler
from onet.config import load_config
from onet.data import build_dataset
from onet.models import build_model
from onet.training import Objective


def main(dataset: str, out: str) -> None:
    info = gdist.init_distributed("cpu")
    cfg = load_config("configs/img/onet.yaml")
    cfg["data"].update(path=dataset, img_size=32, points_subsample=64)
    cfg["model"].update(c_dim=16, decoder_kwargs={"hidden_size": 16})
    data = build_dataset(cfg, "train")
    data.set_epoch(1)
    torch.manual_seed(0)
    network = build_model(cfg, len(data))
    if gdist.is_distributed():
        network = gdist.convert_sync_batchnorm(network)
    objective = gdist.wrap_ddp(Objective(network), info)
    sampler = EpochBatchSampler(len(data), 4, 0, 1, 0, info.rank, info.world_size)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_sampler=sampler)))
    objective(batch["points"], batch["points.occ"], batch["inputs"]).backward()
    if info.is_main:
        torch.save({name: p.grad for name, p in network.named_parameters()}, out)
    gdist.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
