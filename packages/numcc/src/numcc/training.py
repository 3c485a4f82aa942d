"""One training batch of NU-MCC or MCC: augmentation, queries and labels per object, the model's
forward and its loss as one module (so DistributedDataParallel wraps all of it).

Every random draw of an object (augmentation, queries) comes from generators seeded by (seed,
epoch, dataset index), so a batch is the same whichever process draws it: two processes with
half the batch each see exactly what one process sees, and a resumed run repeats the draws.
MCC trains on the same queries with occupancy labels (ground truth within
--train_dist_threshold), its BCE and colour loss, and gradient clipping at --clip_grad.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from geomkit import dist as gdist
from numcc.targets import Augmentation, Losses, Targets, sample_queries, training_targets, udf_loss

AUGMENT_STREAM, QUERY_STREAM = 1, 2  # keep the two draws of an object independent


@dataclass
class Inputs:
    """A batch on the device, ready for the model."""

    images: torch.Tensor  # (B, 3, S, S)
    seen_xyz: torch.Tensor  # (B, 112, 112, 3), invalid points set to 0
    valid: torch.Tensor  # (B, 112, 112) bool
    targets: Targets
    seen_xyz_hr: torch.Tensor | None = None
    valid_hr: torch.Tensor | None = None


def split_valid(xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(points with invalid ones zeroed, validity) of an XYZ map with inf where invalid."""
    valid = torch.isfinite(xyz).all(-1)
    return torch.where(valid[..., None], xyz, torch.zeros_like(xyz)), valid


def object_generators(seed: int, epoch: int, index: int):
    """The numpy generator of an object's augmentation and the torch one of its queries."""
    rng = np.random.default_rng([seed, epoch, index, AUGMENT_STREAM])
    queries = torch.Generator().manual_seed(
        int(np.random.default_rng([seed, epoch, index, QUERY_STREAM]).integers(2**62))
    )
    return rng, queries


def prepare_batch(batch: dict, args, epoch: int, device: torch.device, train: bool = True):
    """Augmented inputs (training only) and targets of a collated batch."""
    seen, images, gt_xyz, queries = [], [], [], []
    hr = [] if "seen_xyz_hr" in batch else None
    for i, index in enumerate(batch["index"].tolist()):
        rng, generator = object_generators(args.seed, epoch, index)
        xyz, rgb, gt = batch["seen_xyz"][i], batch["seen_rgb"][i], batch["gt_xyz"][i]
        if train:
            augmentation = Augmentation.draw(args, rng)
            xyz, rgb = augmentation.seen(xyz, rgb)
            gt = augmentation.points(gt)
            if hr is not None:
                hr.append(augmentation.seen(batch["seen_xyz_hr"][i], rgb)[0])
        elif hr is not None:
            hr.append(batch["seen_xyz_hr"][i])
        seen.append(xyz)
        images.append(rgb)
        gt_xyz.append(gt)
        queries.append(sample_queries(args, generator))
    seen_xyz, valid = split_valid(torch.stack(seen).to(device))
    targets = training_targets(
        torch.stack(gt_xyz).to(device),
        batch["gt_rgb"].to(device),
        args,
        torch.stack(queries).to(device),
    )
    inputs = Inputs(torch.stack(images).to(device), seen_xyz, valid, targets)
    if hr is not None:
        inputs.seen_xyz_hr, inputs.valid_hr = split_valid(torch.stack(hr).to(device))
    return inputs


class Objective(nn.Module):
    """The model and its training loss: NU-MCC's (anchors, distance or occupancy, colour) or
    MCC's (occupancy, colour)."""

    def __init__(self, model: nn.Module, args):
        super().__init__()
        self.model, self.args = model, args

    def forward(self, inputs: Inputs) -> Losses:
        targets = inputs.targets
        if self.args.model == "mcc":
            pred = self.model(inputs.images, inputs.seen_xyz, targets.queries, inputs.valid)
            occ, rgb = self.model.forward_loss(
                pred, targets.near, targets.colour, self.args.occupancy_weight, self.args.rgb_weight
            )
            return Losses(occ + rgb, occ, rgb, occ.new_zeros(()))
        out, anchors = self.model(
            inputs.images,
            inputs.seen_xyz,
            targets.queries,
            inputs.valid,
            inputs.seen_xyz_hr,
            inputs.valid_hr,
        )
        # The colour term's normaliser is the mean over ranks, so that averaged gradients
        # equal those of one process on the whole batch.
        n_labelled = gdist.all_reduce_mean(targets.near.sum().float())
        return udf_loss(out, anchors, targets, self.args.geo, float(n_labelled))


def zero_loss(model: nn.Module) -> torch.Tensor:
    """A zero loss touching every trainable parameter: the original zeroes a step whose loss
    is not finite or whose anchor loss exceeds 10; every rank still takes part in the
    gradient reduction."""
    return sum((p * 0).sum() for p in model.parameters() if p.requires_grad)
