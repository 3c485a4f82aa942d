"""knn_points: compiled kernels against the pure-PyTorch reference, edge cases, gradients."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from geomkit.ext import geomkit_extension
from geomkit.ops import _reference, knn_gather, knn_points
from tests.helpers import assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ragged_cloud(n, p, d, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(n, p, d, generator=g, dtype=dtype)
    lengths = torch.randint(0, p + 1, (n,), generator=g)
    lengths[0] = p
    return points.to(device), lengths.to(device)


def test_extension_compiled_on_cpu():
    """The suite must exercise the C++ kernel, not silently the reference."""
    ext = geomkit_extension()
    assert ext.has_kernel("knn_points", "cpu"), ext.reason


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("dim,K", [(3, 1), (3, 4), (3, 17), (2, 5), (5, 8), (3, 40)])
def test_matches_reference_ragged(device, dtype, norm, dim, K):
    p1, l1 = ragged_cloud(3, 300, dim, dtype, device, seed=1)
    p2, l2 = ragged_cloud(3, 700, dim, dtype, device, seed=2)
    dists, idx, _ = knn_points(p1, p2, l1, l2, norm=norm, K=K)
    ref_d, ref_i = _reference.knn_points(p1, p2, l1, l2, K, norm)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert_close(dists, ref_d, rtol=tol, atol=tol, what="dists")
    assert torch.equal(idx, ref_i)


def test_matches_scipy_kdtree_euclidean_and_manhattan():
    """An independent check of the definition itself (not only kernel == reference)."""
    g = torch.Generator().manual_seed(3)
    p1 = torch.rand(1, 2000, 3, generator=g, dtype=torch.float64) * 6 - 3
    p2 = torch.randn(1, 5000, 3, generator=g, dtype=torch.float64)
    tree = cKDTree(p2[0].numpy())
    for norm, p in ((2, 2), (1, 1)):
        dists, idx, _ = knn_points(p1, p2, norm=norm, K=6)
        ref_d, ref_i = tree.query(p1[0].numpy(), k=6, p=p)
        expected = ref_d**2 if norm == 2 else ref_d
        assert_close(dists[0], expected, rtol=1e-12, atol=1e-12, what=f"norm {norm} dists")
        assert np.array_equal(idx[0].numpy(), ref_i)


@pytest.mark.parametrize("device", DEVICES)
def test_edge_cases_empty_and_k_larger_than_n(device):
    p1 = torch.randn(2, 5, 3, device=device)
    p2 = torch.randn(2, 3, 3, device=device)
    l1 = torch.tensor([5, 0], device=device)
    l2 = torch.tensor([3, 2], device=device)
    dists, idx, _ = knn_points(p1, p2, l1, l2, K=4)
    assert dists.shape == (2, 5, 4) and idx.shape == (2, 5, 4)
    assert torch.all(dists[0, :, 3] == 0) and torch.all(idx[0, :, 3] == 0)  # K > lengths2
    assert torch.all(dists[1] == 0) and torch.all(idx[1] == 0)  # lengths1 == 0
    ref_d, ref_i = _reference.knn_points(p1, p2, l1, l2, 4, 2)
    assert_close(dists, ref_d, rtol=1e-6, atol=1e-7)
    assert torch.equal(idx, ref_i)
    # Empty clouds on either side.
    d, i, _ = knn_points(torch.zeros(2, 0, 3, device=device), p2, K=2)
    assert d.shape == (2, 0, 2) and i.shape == (2, 0, 2)
    d, i, _ = knn_points(p1, torch.zeros(2, 0, 3, device=device), K=2)
    assert torch.all(d == 0) and torch.all(i == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_duplicates_tie_to_lower_index(device):
    # Integer coordinates: distances are exact, so ties are real ties.
    base = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [2, 2, 2]])
    p2 = base.repeat(30, 1)[None].to(device)  # 180 points: the tree path, many duplicates
    p1 = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]], device=device)
    dists, idx, _ = knn_points(p1, p2, K=5)
    zero_ids = torch.nonzero(torch.all(p2[0] == p1[0, 0], dim=1)).flatten()[:5]
    assert torch.equal(idx[0, 0], zero_ids)
    assert torch.all(dists[0, 0] == 0)
    ref_d, ref_i = _reference.knn_points(p1, p2, torch.tensor([2]), torch.tensor([180]), 5, 2)
    assert torch.equal(idx.cpu(), ref_i.cpu()) and torch.equal(dists.cpu(), ref_d.cpu())


def test_non_contiguous_and_half_inputs():
    g = torch.Generator().manual_seed(4)
    p1 = torch.randn(2, 3, 400, generator=g).transpose(1, 2)  # (2, 400, 3), not contiguous
    p2 = torch.randn(2, 3, 900, generator=g).transpose(1, 2)
    assert not p1.is_contiguous()
    dists, idx, _ = knn_points(p1, p2, K=3)
    ref_d, ref_i = _reference.knn_points(
        p1.contiguous(), p2.contiguous(), torch.tensor([400, 400]), torch.tensor([900, 900]), 3, 2
    )
    assert torch.equal(idx, ref_i)
    half = knn_points(p1.half(), p2.half(), K=3)
    assert half.dists.dtype == torch.float16
    assert_close(half.dists.float(), ref_d, rtol=1e-2, atol=1e-2, what="half dists")


def test_return_nn_and_knn_gather_padding():
    p1 = torch.randn(2, 10, 3)
    p2 = torch.randn(2, 6, 3)
    lengths2 = torch.tensor([6, 2])
    result = knn_points(p1, p2, None, lengths2, K=3, return_nn=True)
    gathered = p2[0][result.idx[0]]
    assert_close(result.knn[0], gathered, what="neighbours of cloud 0")
    assert torch.all(result.knn[1, :, 2] == 0)  # third neighbour missing in cloud 1
    features = torch.arange(12.0).reshape(2, 6, 1)
    out = knn_gather(features, result.idx, lengths2)
    assert out.shape == (2, 10, 3, 1) and torch.all(out[1, :, 2] == 0)


@pytest.mark.parametrize("norm", [1, 2])
def test_gradients_match_reference_and_gradcheck(norm):
    g = torch.Generator().manual_seed(5)
    p1 = torch.randn(2, 40, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 150, 3, generator=g, dtype=torch.float64, requires_grad=True)
    l1, l2 = torch.tensor([40, 25]), torch.tensor([150, 90])
    weights = torch.rand(2, 40, 5, generator=g, dtype=torch.float64)
    (knn_points(p1, p2, l1, l2, norm=norm, K=5).dists * weights).sum().backward()
    grad_p1, grad_p2 = p1.grad.clone(), p2.grad.clone()
    p1.grad = p2.grad = None
    (_reference.knn_points(p1, p2, l1, l2, 5, norm)[0] * weights).sum().backward()
    assert_close(grad_p1, p1.grad, atol=1e-10, what="grad p1")
    assert_close(grad_p2, p2.grad, atol=1e-10, what="grad p2")
    small1 = torch.randn(1, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    small2 = torch.randn(1, 140, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: knn_points(a, b, norm=norm, K=3).dists, (small1, small2)
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"p1": torch.zeros(5, 3)}, "p1 must be a"),
        ({"K": 0}, "K must be a positive int"),
        ({"norm": 3}, "norm must be 1 or 2"),
        ({"lengths1": torch.tensor([7, 1])}, r"lengths1 must lie in \[0, 4\]"),
        ({"lengths2": torch.tensor([1.0, 2.0])}, "lengths2 must be an integer tensor"),
        ({"p2": torch.zeros(2, 4, 2)}, "differ in N or D"),
    ],
)
def test_argument_errors(kwargs, match):
    args = {"p1": torch.zeros(2, 4, 3), "p2": torch.zeros(2, 4, 3)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        knn_points(**args)


def test_forced_reference_warns_and_reports(tmp_path):
    code = (
        "import warnings, torch\n"
        "from geomkit.ops import knn_points\n"
        "from geomkit.ext import geomkit_extension, KernelFallbackWarning\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    knn_points(torch.zeros(1, 2, 3), torch.ones(1, 3, 3))\n"
        "assert any(issubclass(x.category, KernelFallbackWarning) for x in w), w\n"
        "assert not geomkit_extension().has_kernel('knn_points', 'cpu')\n"
    )
    env = dict(os.environ, GEOMKIT_NO_EXT="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    report = subprocess.run(
        [sys.executable, "-m", "geomkit.ext"], env=env, capture_output=True, text=True, check=True
    )
    assert "GEOMKIT_NO_EXT is set" in report.stdout
    assert "cpu: reference" in report.stdout
