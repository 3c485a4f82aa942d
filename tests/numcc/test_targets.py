"""NU-MCC's training targets, augmentation and loss against direct computations."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from numcc.args import get_args_parser
from numcc.models.layers import shrink_points_beyond_threshold
from numcc.targets import (
    Augmentation,
    Targets,
    sample_queries,
    training_targets,
    udf_labels,
    udf_loss,
)


def test_rotations_are_right_handed_and_applied_x_then_y_then_z():
    aug = Augmentation(
        torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), (90, 0, 0), False
    )
    torch.testing.assert_close(
        aug.points(torch.tensor([[0.0, 1.0, 0.0]])), torch.tensor([[0.0, 0.0, 1.0]])
    )
    aug.degrees = (90, 90, 0)  # (0, 1, 0) -> X -> (0, 0, 1) -> Y -> (1, 0, 0)
    torch.testing.assert_close(
        aug.points(torch.tensor([[0.0, 1.0, 0.0]])), torch.tensor([[1.0, 0.0, 0.0]])
    )


def test_augmentation_is_scale_shift_rotate_mirror():
    args = get_args_parser().parse_args([])
    aug = Augmentation.draw(args, np.random.default_rng(3))
    aug.mirror = True
    points = torch.randn(50, 3, dtype=torch.float64)
    expected = points * aug.scale + aug.shift
    for axis, degrees in zip((0, 1, 2), aug.degrees, strict=True):
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        i, j = [(1, 2), (2, 0), (0, 1)][axis]
        rotated = expected.clone()
        rotated[:, i] = c * expected[:, i] - s * expected[:, j]
        rotated[:, j] = s * expected[:, i] + c * expected[:, j]
        expected = rotated
    expected[:, 0] *= -1
    torch.testing.assert_close(aug.points(points), expected)
    xyz, rgb = torch.randn(4, 5, 3), torch.rand(3, 8, 10)
    xyz[0, 0] = float("inf")
    moved_xyz, moved_rgb = aug.seen(xyz, rgb)
    assert torch.isinf(moved_xyz[0, -1]).all() and torch.equal(moved_rgb, rgb.flip(2))
    assert all(-180 <= d <= 180 for d in aug.degrees) and ((aug.scale - 1).abs() <= 0.2).all()


def test_shrink_beyond_the_threshold():
    xyz = torch.tensor([[3.0, 4.0, 0.0], [30.0, 40.0, 0.0], [float("inf"), 0.0, 0.0]])
    shrunk = shrink_points_beyond_threshold(xyz, 10.0)
    assert torch.equal(shrunk[0], xyz[0]) and torch.isinf(shrunk[2, 0])
    assert shrunk[1].norm().item() == 10.0 * (2 - 10.0 / 50.0)


def test_labels_and_loss_equal_direct_computations():
    g = torch.Generator().manual_seed(0)
    gt, rgb = torch.rand(2, 300, 3, generator=g), torch.rand(2, 300, 3, generator=g)
    queries = torch.rand(2, 40, 3, generator=g) * 1.4 - 0.2
    distance, near, colour = udf_labels(queries, gt, rgb, 0.1)
    brute, index = torch.cdist(queries, gt).min(-1)
    torch.testing.assert_close(distance, brute)
    assert torch.equal(near, brute < 0.1) and near.any() and not near.all()
    torch.testing.assert_close(
        colour[near], torch.gather(rgb, 1, index[..., None].expand(-1, -1, 3))[near]
    )

    out = torch.randn(2, 40, 769, generator=g)
    anchors, anchor_targets = torch.rand(2, 7, 3, generator=g), torch.rand(2, 9, 3, generator=g)
    losses = udf_loss(out, anchors, Targets(queries, distance, near, colour, anchor_targets))
    l1 = torch.cdist(anchors, anchor_targets, p=1)
    chamfer = (l1.min(2).values.mean(1) + l1.min(1).values.mean(1)).mean()
    geo = (F.relu(out[..., 0]).clamp(max=0.5) - distance.clamp(max=0.5)).abs().mean()
    logits = out[..., 1:].reshape(2, 40, 3, 256)[near]  # (n, 3, 256): R, G, B bins
    ce = F.cross_entropy(logits.reshape(-1, 256), (colour[near] * 255).round().long().reshape(-1))
    torch.testing.assert_close(losses.total, 0.03 * chamfer + geo + 0.01 * ce)
    assert not losses.skip()
    assert Targets  # the container the trainer passes around


def test_training_targets_shapes():
    args = SimpleNamespace(
        shrink_threshold=10.0,
        n_groups=16,
        co3d_world_size=3.0,
        n_queries=100,
        train_dist_threshold=0.1,
        use_hypersim=False,
        semisphere_size=6.0,
    )
    gt = torch.rand(2, 500, 3)
    generator = torch.Generator().manual_seed(0)
    queries = torch.stack([sample_queries(args, generator) for _ in range(2)])
    targets = training_targets(gt, torch.rand(2, 500, 3), args, queries)
    assert targets.anchors.shape == (2, 16, 3) and targets.queries.shape == (2, 100, 3)
    assert targets.queries.abs().max() <= 3.0 and targets.queries.abs().max() > 2.5
    torch.testing.assert_close(targets.anchors[:, 0], gt[:, 0])  # farthest points start at index 0


def test_hypersim_queries_fill_the_half_ball_in_front_of_the_camera():
    args = get_args_parser().parse_args(["--use_hypersim", "--n_queries", "20000"])
    queries = sample_queries(args, torch.Generator().manual_seed(0))
    radius = queries.norm(dim=1)
    assert (queries[:, 2] >= 0).all() and (radius <= 6.0).all()
    # uniform in volume: half the points lie beyond 6 / 2^(1/3)
    assert abs(float((radius > 6.0 / 2 ** (1 / 3)).float().mean()) - 0.5) < 0.02


def test_occupancy_variant_and_distributed_colour_normaliser():
    out = torch.randn(2, 40, 769)
    targets = Targets(
        torch.rand(2, 40, 3),
        torch.rand(2, 40),
        torch.rand(2, 40) < 0.5,
        torch.rand(2, 40, 3),
        torch.rand(2, 8, 3),
    )
    anchors = torch.rand(2, 8, 3)
    occ = udf_loss(out, anchors, targets, geo="occ")
    torch.testing.assert_close(
        occ.geo, F.binary_cross_entropy_with_logits(out[..., 0], targets.near.float())
    )
    n_near = int(targets.near.sum())
    halved = udf_loss(out, anchors, targets, n_labelled=2 * n_near)
    torch.testing.assert_close(halved.rgb, udf_loss(out, anchors, targets).rgb / 2)
