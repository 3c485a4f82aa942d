"""NU-MCC's optimiser and schedule (MAE's): AdamW (0.9, 0.95) with timm's weight-decay groups
(no decay on biases and 1-D parameters), lr = blr x effective batch / 512 unless --lr is given,
set every ``accum_iter`` iterations from the fractional epoch: linear warm-up for
``warmup_epochs``, then a half cosine down to ``min_lr`` at ``epochs``."""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_weight_decay


def absolute_lr(args, world_size: int) -> float:
    """--lr, or --blr scaled by the effective batch (batch x accumulation x processes) / 512."""
    if args.lr is not None:
        return args.lr
    return args.blr * args.batch_size * args.accum_iter * world_size / 512


def build_optimizer(model: torch.nn.Module, args, lr: float) -> torch.optim.AdamW:
    groups = param_groups_weight_decay(model, args.weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def lr_at(epoch: float, args, lr: float) -> float:
    """The learning rate at a fractional epoch."""
    if epoch < args.warmup_epochs:
        return lr * epoch / args.warmup_epochs
    progress = (epoch - args.warmup_epochs) / (args.epochs - args.warmup_epochs)
    return args.min_lr + (lr - args.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value * group.get("lr_scale", 1.0)
