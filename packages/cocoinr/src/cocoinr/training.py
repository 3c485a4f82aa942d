"""The training step: VolSDF's loss, one optimisation step on a batch of rays, and the
per-iteration randomness that makes a resumed run exact.

Every random draw of iteration ``i`` (the view order of its epoch aside) comes from seeds
derived from (seed, i): the pixels from a generator shared by all ranks, the sampler's and
the eikonal points' draws from the global RNG seeded per rank. A run resumed at iteration ``i``
therefore continues exactly as the uninterrupted one, without saving RNG states.
Under torchrun every rank renders its share of the same pixels, and the gradients are
averaged (the mean loss over all the pixels, as one process computes it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from geomkit import dist as gdist
from geomkit.errors import ConfigError

RGB_LOSSES = {"torch.nn.L1Loss": nn.L1Loss, "torch.nn.MSELoss": nn.MSELoss}
_STRIDE = 1_000_003


class VolSDFLoss(nn.Module):
    """rgb_loss(rgb, gt) (mean) + eikonal_weight mean((|grad| - 1)^2), from the ``loss`` block."""

    def __init__(self, rgb_loss: str = "torch.nn.L1Loss", eikonal_weight: float = 0.1):
        super().__init__()
        if rgb_loss not in RGB_LOSSES:
            raise ConfigError(
                f"loss.rgb_loss must be one of {sorted(RGB_LOSSES)}, got {rgb_loss!r}"
            )
        self.rgb_loss = RGB_LOSSES[rgb_loss](reduction="mean")
        self.eikonal_weight = eikonal_weight

    def forward(self, outputs: Mapping, rgb_gt: torch.Tensor) -> dict[str, torch.Tensor]:
        rgb_loss = self.rgb_loss(outputs["rgb_values"], rgb_gt)
        eikonal = ((outputs["grad_theta"].norm(dim=-1) - 1) ** 2).mean()
        return {"loss": rgb_loss + self.eikonal_weight * eikonal, "rgb_loss": rgb_loss,
                "eikonal_loss": eikonal}  # fmt: skip


def lr_schedule(optimizer, iterations: int, decay: float, warmup: int):
    """The original's per-iteration exponential decay (by ``decay`` over ``iterations``),
    after a linear warm-up over the first ``warmup`` iterations when ``warmup`` > 0 (the
    original has none: with the same ExponentialLR its scheduler checkpoints load)."""
    gamma = decay ** (1.0 / iterations)
    if warmup <= 0:
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupDecay(gamma, warmup))


class _WarmupDecay:
    """The lr factor of iteration ``it`` (an object, not a lambda: LambdaLR saves its state)."""

    def __init__(self, gamma: float, warmup: int):
        self.gamma, self.warmup = gamma, warmup

    def __call__(self, it: int) -> float:
        return min(1.0, (it + 1) / self.warmup) * self.gamma**it


def pixel_generator(seed: int, iteration: int) -> torch.Generator:
    """The generator of iteration ``iteration``'s pixels (the same on every rank)."""
    return torch.Generator().manual_seed(seed * _STRIDE + iteration)


def seed_iteration(seed: int, iteration: int, rank: int) -> None:
    """Seed the global RNG (sampler perturbation, eikonal points) for one iteration and rank."""
    torch.manual_seed((seed * _STRIDE + iteration) * 64 + rank)


def epoch_views(train_idx: list[int], seed: int, epoch: int) -> list[int]:
    """The training views in epoch ``epoch``'s order (one iteration per view)."""
    order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed + epoch))
    return [train_idx[i] for i in order.tolist()]


def rank_share(pixels: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous share of the pixels (equal shares: the count must divide)."""
    if len(pixels) % world:
        raise ConfigError(
            f"train.num_pixels ({len(pixels)}) must be a multiple of the number of "
            f"processes ({world})"
        )
    share = len(pixels) // world
    return pixels[rank * share : (rank + 1) * share]


def train_step(model, loss_fn: VolSDFLoss, optimizer, origins, directions, rgb_gt) -> dict:
    """One optimisation step on (R, 3) rays: the codebook attention runs once for all of them.
    Returns the losses as floats (this rank's)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    outputs = model(origins, directions, model.latents())
    losses = loss_fn(outputs, rgb_gt)
    losses["loss"].backward()
    gdist.average_gradients(model)
    optimizer.step()
    with torch.no_grad():
        mse = ((outputs["rgb_values"] - rgb_gt) ** 2).mean()
    return {**{k: v.item() for k, v in losses.items()}, "psnr": (-10 * torch.log10(mse)).item()}
