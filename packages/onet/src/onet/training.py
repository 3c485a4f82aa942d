"""The ONet training step and validation (IoU on the points, IoU on the voxel grid)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import distributions as dist
from torch import nn

from geomkit import dist as gdist
from geomkit.checkpoint import unwrap
from geomkit.metrics import occupancy_iou


def make_3d_grid(bb_min, bb_max, shape) -> torch.Tensor:
    """(prod(shape), 3) grid points, x slowest (the order of a flattened (x, y, z) array)."""
    axes = [torch.linspace(lo, hi, n) for lo, hi, n in zip(bb_min, bb_max, shape, strict=True)]
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], dim=1)


class Objective(nn.Module):
    """ONet's training loss as a module, so that DistributedDataParallel wraps the whole
    computation: KL(q(z) || p(z)) + per-point BCE summed over the points, batch mean."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, p: torch.Tensor, occ: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        c = self.network.encode_inputs(inputs)
        q_z = self.network.infer_z(p, occ, c)
        kl = dist.kl_divergence(q_z, self.network.prior()).sum(dim=-1)
        logits = self.network.decode(p, q_z.rsample(), c)
        bce = F.binary_cross_entropy_with_logits(logits, occ, reduction="none").sum(-1)
        return kl.mean() + bce.mean()


class Trainer:
    """Training steps on ``objective`` (an Objective, possibly DDP-wrapped) and evaluation of
    its network; IoU with the occupancy threshold ``threshold`` (a probability)."""

    def __init__(
        self,
        objective: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        threshold: float = 0.5,
        eval_sample: bool = False,
    ):
        self.objective = objective
        self.network = unwrap(objective).network
        self.optimizer = optimizer
        self.device = device
        self.threshold = threshold
        self.eval_sample = eval_sample

    def _inputs(self, batch: dict, batch_size: int) -> torch.Tensor:
        return batch.get("inputs", torch.empty(batch_size, 0)).to(self.device)

    def train_step(self, batch: dict) -> float:
        self.objective.train()
        self.optimizer.zero_grad()
        p = batch["points"].to(self.device)
        loss = self.objective(p, batch["points.occ"].to(self.device), self._inputs(batch, len(p)))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    @torch.no_grad()
    def eval_step(self, batch: dict) -> dict[str, np.ndarray]:
        """Per-object loss, rec_error, kl, iou (and iou_voxels with voxels)."""
        model = self.network
        model.eval()
        points = batch["points"].to(self.device)
        occ = batch["points.occ"].to(self.device)
        inputs = self._inputs(batch, len(points))
        elbo, rec_error, kl = model.compute_elbo(points, occ, inputs)
        out = {"loss": -elbo, "rec_error": rec_error, "kl": kl}
        logits = model(batch["points_iou"].to(self.device), inputs, sample=self.eval_sample)
        occ_iou = (batch["points_iou.occ"] >= 0.5).numpy()
        out["iou"] = occupancy_iou(occ_iou, (torch.sigmoid(logits) >= self.threshold).cpu().numpy())
        if "voxels" in batch:
            grid = make_3d_grid((-0.5 + 1 / 64,) * 3, (0.5 - 1 / 64,) * 3, (32,) * 3)
            grid = grid.to(self.device).expand(len(points), -1, -1)
            logits = model(grid, inputs, sample=self.eval_sample)
            voxels = (batch["voxels"].reshape(len(points), -1) >= 0.5).numpy()
            out["iou_voxels"] = occupancy_iou(
                voxels, (torch.sigmoid(logits) >= self.threshold).cpu().numpy()
            )
        return {
            k: np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v, np.float64)
            for k, v in out.items()
        }

    def evaluate(self, loader) -> dict[str, float]:
        """Means over all objects of every rank (an empty IoU, both occupancies empty, is
        left out as ONet's pandas means do)."""
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for batch in loader:
            for key, values in self.eval_step(batch).items():
                finite = values[np.isfinite(values)]
                sums[key] = sums.get(key, 0.0) + float(finite.sum())
                counts[key] = counts.get(key, 0.0) + float(len(finite))
        return {key: gdist.weighted_mean(sums[key], counts[key]) for key in sorted(sums)}
