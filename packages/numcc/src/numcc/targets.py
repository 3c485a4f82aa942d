"""What NU-MCC trains on: augmented inputs, query points with their distance and colour labels,
farthest-point anchors of the ground truth, and the loss.

Per object (UDF mode, CO3D): the seen points and the ground truth are scaled per axis by
U(1 - random_scale_delta, 1 + random_scale_delta), shifted by U(-random_shift, random_shift)^3,
rotated by integer degrees drawn from [-random_rotate_degree, random_rotate_degree] about X,
then Y, then Z, and with probability 0.5 mirrored (x negated, the XYZ map and the image flipped
left-right). Then ``n_groups`` farthest points of the ground truth (from index 0) are the anchor
targets, and ``n_queries`` uniform queries in [-co3d_world_size, co3d_world_size]^3 get the
Euclidean distance to the nearest ground-truth point and, within ``train_dist_threshold``, its
colour.

Loss = 0.03 Chamfer(anchors, FPS(gt), Manhattan) + L1(min(relu(u), 0.5), min(d, 0.5))
     + 0.01 cross-entropy of the 256-way colour bins (round(255 rgb)) where labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from geomkit.ops import chamfer_distance, knn_points, sample_farthest_points
from numcc.models.layers import shrink_points_beyond_threshold

MAX_UDF = 0.5
CENTER_WEIGHT, RGB_WEIGHT = 0.03, 0.01
MAX_CENTER_LOSS = 10.0  # a step whose anchor loss exceeds this is skipped, as the original


def rotation_matrix(axis: str, degrees: float) -> torch.Tensor:
    """(3, 3) right-handed rotation about ``axis`` (column-vector convention)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
    matrix = torch.eye(3, dtype=torch.float64)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


@dataclass
class Augmentation:
    """One draw of the training augmentation (see the module docstring)."""

    scale: torch.Tensor
    shift: torch.Tensor
    degrees: tuple[int, int, int]
    mirror: bool

    @classmethod
    def draw(cls, args, rng: np.random.Generator) -> Augmentation:
        delta, shift, angle = args.random_scale_delta, args.random_shift, args.random_rotate_degree
        scale = torch.from_numpy(rng.uniform(1 - delta, 1 + delta, 3))
        if args.use_hypersim:
            return cls(scale, torch.zeros(3, dtype=torch.float64), (0, 0, 0), rng.random() < 0.5)
        offset = torch.from_numpy(rng.uniform(-shift, shift, 3))
        degrees = tuple(int(d) for d in rng.integers(-angle, angle + 1, 3))
        return cls(scale, offset, degrees, rng.random() < 0.5)

    def rotation(self) -> torch.Tensor:
        """(3, 3) applied to row vectors: X first, then Y, then Z."""
        matrix = torch.eye(3, dtype=torch.float64)
        for axis, degrees in zip("XYZ", self.degrees, strict=True):
            matrix = matrix @ rotation_matrix(axis, degrees).T
        return matrix

    def points(self, xyz: torch.Tensor) -> torch.Tensor:
        """Any (..., 3) points (inf stays inf); mirrored points have x negated."""
        moved = ((xyz.double() * self.scale + self.shift) @ self.rotation()).to(xyz.dtype)
        if self.mirror:
            moved = moved * torch.tensor([-1.0, 1.0, 1.0], dtype=xyz.dtype)
        return moved

    def seen(self, seen_xyz: torch.Tensor, seen_rgb: torch.Tensor):
        """The (H, W, 3) XYZ map (inf where invalid, kept so) and the (3, H', W') image,
        mirrored left-right when drawn."""
        valid = torch.isfinite(seen_xyz).all(-1, keepdim=True)
        moved = self.points(torch.where(valid, seen_xyz, torch.zeros_like(seen_xyz)))
        seen_xyz = torch.where(valid, moved, torch.full_like(moved, float("inf")))
        if self.mirror:
            return seen_xyz.flip(1), seen_rgb.flip(2)
        return seen_xyz, seen_rgb


def udf_labels(queries: torch.Tensor, gt_xyz: torch.Tensor, gt_rgb: torch.Tensor, threshold: float):
    """Per query (B, Q, 3): the distance to the nearest ground-truth point (B, Q), whether it is
    within ``threshold`` (B, Q) and that point's colour there, 0 elsewhere (B, Q, 3)."""
    knn = knn_points(queries, gt_xyz, K=1)
    distance = knn.dists[..., 0].clamp(min=0).sqrt()
    near = distance < threshold
    colour = torch.gather(gt_rgb, 1, knn.idx.expand(-1, -1, 3)) * near[..., None]
    return distance, near, colour


@dataclass
class Targets:
    queries: torch.Tensor  # (B, Q, 3)
    distance: torch.Tensor  # (B, Q)
    near: torch.Tensor  # (B, Q) bool
    colour: torch.Tensor  # (B, Q, 3)
    anchors: torch.Tensor  # (B, n_groups, 3) farthest points of the ground truth


def sample_queries(args, generator: torch.Generator) -> torch.Tensor:
    """One object's ``n_queries`` training queries (n_queries, 3): uniform in
    [-co3d_world_size, co3d_world_size]^3 (CO3D), or in the half ball z >= 0 of radius
    ``semisphere_size`` in front of the camera (Hypersim)."""
    if not args.use_hypersim:
        size = args.co3d_world_size
        return torch.rand(args.n_queries, 3, generator=generator) * (2 * size) - size
    direction = F.normalize(torch.randn(args.n_queries, 3, generator=generator), dim=1)
    radius = args.semisphere_size * torch.rand(args.n_queries, 1, generator=generator) ** (1 / 3)
    points = direction * radius
    points[:, 2] = points[:, 2].abs()
    return points


def training_targets(gt_xyz, gt_rgb, args, queries: torch.Tensor) -> Targets:
    """Anchor targets and labels of the (B, Q, 3) ``queries``, from augmented truth."""
    gt_xyz = shrink_points_beyond_threshold(gt_xyz, args.shrink_threshold)
    anchors = sample_farthest_points(gt_xyz, K=args.n_groups).points
    queries = queries.to(gt_xyz)
    distance, near, colour = udf_labels(queries, gt_xyz, gt_rgb, args.train_dist_threshold)
    return Targets(queries, distance, near, colour, anchors)


@dataclass
class Losses:
    total: torch.Tensor
    geo: torch.Tensor
    rgb: torch.Tensor
    centers: torch.Tensor

    def skip(self) -> bool:
        """The original zeroes a step whose loss is not finite or whose anchor loss > 10."""
        total, centers = self.total.detach(), self.centers.detach()
        return not bool(torch.isfinite(total)) or float(centers) > MAX_CENTER_LOSS


def udf_loss(
    out: torch.Tensor,
    anchors_xyz: torch.Tensor,
    targets: Targets,
    geo: str = "udf",
    n_labelled: float | None = None,
) -> Losses:
    """NU-MCC's loss of decoder outputs (B, Q, 769) and predicted anchors (B, M, 3).

    Args:
        geo: "udf" (L1 on the clamped distance) or "occ" (BCE on the near labels).
        n_labelled: what the colour cross-entropy is divided by (default: this batch's
            labelled queries; distributed training passes the mean over ranks, so that the
            ranks' averaged gradients equal one process's on the whole batch).
    """
    centers = (
        CENTER_WEIGHT
        * chamfer_distance(anchors_xyz.float(), targets.anchors, distance="manhattan").distance
    )
    if geo == "occ":
        geo_term = F.binary_cross_entropy_with_logits(out[..., 0], targets.near.float())
    else:
        predicted = F.relu(out[..., 0]).clamp(max=MAX_UDF)
        geo_term = F.l1_loss(predicted, targets.distance.clamp(max=MAX_UDF))
    logits = out[..., 1:][targets.near].reshape(-1, 256)
    if len(logits):
        bins = torch.round(targets.colour[targets.near] * 255).long().reshape(-1)
        count = len(logits) if n_labelled is None else 3 * n_labelled
        rgb = RGB_WEIGHT * F.cross_entropy(logits, bins, reduction="sum") / count
    else:
        rgb = out.new_zeros(())
    return Losses(centers + geo_term + rgb, geo_term, rgb, centers)
