"""ball_query: compiled kernels against the reference and scipy's cKDTree, PyTorch3D's padding
(dists 0, idx -1), the strict radius, gradients, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from geomkit.ext import geomkit_extension
from geomkit.ops._reference.ball_query import ball_query as reference_ball_query
from geomkit.ops.ball_query import ball_query
from tests.helpers import assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ragged_cloud(n, p, d, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, p, d, generator=g, dtype=dtype)
    lengths = torch.randint(0, p + 1, (n,), generator=g)
    lengths[0] = p
    return points.to(device), lengths.to(device)


def test_extension_compiled_on_cpu():
    ext = geomkit_extension()
    assert ext.has_kernel("ball_query", "cpu"), ext.reason


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "dim,P2,K,radius",
    [
        (3, 1500, 16, 0.1),  # kd-tree, sparse balls
        (3, 1500, 64, 0.4),  # balls holding a large share: the index-order scan finishes
        (3, 1500, 500, 0.25),  # K above most balls' counts
        (3, 150, 8, 0.3),  # small clouds: brute force
        (2, 1200, 10, 0.05),
        (5, 900, 12, 0.5),
    ],
)
def test_matches_reference_ragged(device, dtype, dim, P2, K, radius):
    p1, l1 = ragged_cloud(3, 200, dim, dtype, device, seed=1)
    p2, l2 = ragged_cloud(3, P2, dim, dtype, device, seed=2)
    dists, idx, _ = ball_query(p1, p2, l1, l2, K=K, radius=radius, return_nn=False)
    ref_d, ref_i = reference_ball_query(p1, p2, l1, l2, K, radius)
    assert torch.equal(idx, ref_i)
    assert torch.equal(dists, ref_d)


def test_matches_scipy_ball_point_query():
    """An independent check of the definition itself (not only kernel == reference)."""
    g = torch.Generator().manual_seed(3)
    p1 = torch.rand(1, 400, 3, generator=g, dtype=torch.float64)
    p2 = torch.rand(1, 5000, 3, generator=g, dtype=torch.float64)
    K, radius = 40, 0.15
    dists, idx, nn = ball_query(p1, p2, K=K, radius=radius)
    tree = cKDTree(p2[0].numpy())
    for i, found in enumerate(tree.query_ball_point(p1[0].numpy(), r=radius)):
        first = sorted(found)[:K]
        assert idx[0, i, : len(first)].tolist() == first
        assert torch.all(idx[0, i, len(first) :] == -1)
        expected = ((p2[0, first] - p1[0, i]) ** 2).sum(-1).numpy()
        assert_close(dists[0, i, : len(first)], expected, rtol=1e-12, what=f"dists of {i}")
        assert_close(nn[0, i, : len(first)], p2[0, first], what=f"neighbours of {i}")
    assert np.any((idx[0] >= 0).sum(-1).numpy() == K)  # some balls are full


@pytest.mark.parametrize("device", DEVICES)
def test_radius_is_strict_and_duplicates_are_kept_in_index_order(device):
    # 3000 points far away on an integer grid, a few near the origin at high indices (the
    # kd-tree path); radius 1, so (1, 0, 0) lies on the sphere and is excluded.
    j = torch.arange(3000)
    p2 = 10 + torch.stack([j % 17, j // 17 % 13, j // 221], dim=1).double()
    near = {2000: 1.0, 2001: 0.0, 2002: 0.5, 2003: 0.0, 2500: 0.0, 2600: 0.5, 2700: 0.0}
    for row, x in near.items():
        p2[row] = torch.tensor([x, 0.0, 0.0])
    p1 = torch.zeros(1, 1, 3, dtype=torch.float64, device=device)
    dists, idx, _ = ball_query(p1, p2[None].to(device), K=5, radius=1.0)
    assert idx[0, 0].tolist() == [2001, 2002, 2003, 2500, 2600]
    assert dists[0, 0].tolist() == [0.0, 0.25, 0.0, 0.0, 0.25]


@pytest.mark.parametrize("device", DEVICES)
def test_padding_and_empty_clouds(device):
    p1 = torch.rand(2, 5, 3, device=device)
    p2 = torch.rand(2, 4, 3, device=device)
    lengths1 = torch.tensor([5, 0], device=device)
    lengths2 = torch.tensor([2, 4], device=device)
    dists, idx, nn = ball_query(p1, p2, lengths1, lengths2, K=3, radius=10.0)
    assert idx[0, :, :2].tolist() == [[0, 1]] * 5  # every point inside; only 2 valid
    assert torch.all(idx[0, :, 2] == -1) and torch.all(dists[0, :, 2] == 0)
    assert torch.all(nn[0, :, 2] == 0)
    assert torch.all(idx[1] == -1) and torch.all(dists[1] == 0)  # lengths1 == 0
    dists, idx, nn = ball_query(p1, torch.zeros(2, 0, 3, device=device), K=2)
    assert torch.all(idx == -1) and torch.all(dists == 0) and nn.shape == (2, 5, 2, 3)
    dists, idx, _ = ball_query(torch.zeros(2, 0, 3, device=device), p2, K=2)
    assert dists.shape == (2, 0, 2) and idx.shape == (2, 0, 2)
    dists, idx, _ = ball_query(p1, p2, K=2, radius=float("inf"))
    assert idx[0].tolist() == [[0, 1]] * 5  # an infinite radius takes the first K points


def test_non_contiguous_and_half_inputs():
    g = torch.Generator().manual_seed(4)
    p1 = torch.rand(2, 3, 300, generator=g).transpose(1, 2)  # (2, 300, 3), not contiguous
    p2 = torch.rand(2, 3, 800, generator=g).transpose(1, 2)
    assert not p1.is_contiguous()
    dists, idx, _ = ball_query(p1, p2, K=20, radius=0.2)
    full = torch.tensor([300, 300]), torch.tensor([800, 800])
    ref_d, ref_i = reference_ball_query(p1.contiguous(), p2.contiguous(), *full, 20, 0.2)
    assert torch.equal(idx, ref_i) and torch.equal(dists, ref_d)
    half = ball_query(p1.half(), p2.half(), K=20, radius=0.2)
    assert half.dists.dtype == torch.float16 and half.knn.dtype == torch.float16
    inside = half.idx >= 0
    assert torch.all(half.dists.float()[inside] < 0.2**2 + 1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match_reference_and_gradcheck(device):
    g = torch.Generator().manual_seed(5)
    p1 = torch.rand(2, 40, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    p2 = torch.rand(2, 400, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    l1, l2 = torch.tensor([40, 25], device=device), torch.tensor([400, 300], device=device)
    weights = torch.rand(2, 40, 12, generator=g, dtype=torch.float64).to(device)
    (ball_query(p1, p2, l1, l2, K=12, radius=0.3).dists * weights).sum().backward()
    grad_p1, grad_p2 = p1.grad.clone(), p2.grad.clone()
    p1.grad = p2.grad = None
    (reference_ball_query(p1, p2, l1, l2, 12, 0.3)[0] * weights).sum().backward()
    assert_close(grad_p1, p1.grad, atol=1e-12, what="grad p1")
    assert_close(grad_p2, p2.grad, atol=1e-12, what="grad p2")
    assert torch.all(grad_p1[1, 25:] == 0) and torch.all(grad_p2[1, 300:] == 0)
    small1 = torch.rand(1, 5, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    small2 = torch.rand(1, 300, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: ball_query(a, b, K=8, radius=0.4, return_nn=False).dists, (small1, small2)
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"p1": torch.zeros(5, 3)}, "p1 must be a"),
        ({"K": 0}, "K must be a positive int"),
        ({"radius": 0.0}, "radius must be a number > 0"),
        ({"radius": float("nan")}, "radius must be a number > 0"),
        ({"lengths1": torch.tensor([7, 1])}, r"lengths1 must lie in \[0, 4\]"),
        ({"lengths2": torch.tensor([1.0, 2.0])}, "lengths2 must be an integer tensor"),
        ({"p2": torch.zeros(2, 4, 2)}, "differ in N or D"),
    ],
)
def test_argument_errors(kwargs, match):
    args = {"p1": torch.zeros(2, 4, 3), "p2": torch.zeros(2, 4, 3)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ball_query(**args)
