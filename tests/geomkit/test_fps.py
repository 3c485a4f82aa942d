"""sample_farthest_points: compiled kernels against the reference and an independent scipy
implementation, PyTorch3D's padding and tie rules, random starts, gradients, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from geomkit.errors import InputError
from geomkit.ext import geomkit_extension
from geomkit.ops._reference import fps as reference
from geomkit.ops.fps import sample_farthest_points
from tests.helpers import assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ragged_clouds(n, p, d, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(n, p, d, generator=g, dtype=dtype)
    lengths = torch.randint(0, p + 1, (n,), generator=g)
    lengths[0] = p
    return points.to(device), lengths.to(device)


def scipy_fps(points: np.ndarray, k: int, start: int) -> list[int]:
    """FPS from its definition: each step recomputes every point's distance to the selected
    set with scipy and takes the first maximum."""
    selected = [start]
    for _ in range(1, min(k, len(points))):
        to_set = cdist(points, points[selected], "sqeuclidean").min(axis=1)
        selected.append(int(np.argmax(to_set)))
    return selected


def run_reference(points, lengths, K, start=None):
    start = torch.zeros_like(lengths) if start is None else start
    return reference.sample_farthest_points(points, lengths, K, start)


def test_extension_compiled_on_cpu():
    ext = geomkit_extension()
    assert ext.has_kernel("sample_farthest_points", "cpu"), ext.reason


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [2, 3, 5])
def test_matches_reference_ragged_per_cloud_k(device, dtype, dim):
    points, lengths = ragged_clouds(4, 600, dim, dtype, device, seed=dim)
    K = torch.tensor([40, 700, 0, 25], device=device)  # K > lengths, K = 0
    result = sample_farthest_points(points, lengths, K)
    expected = run_reference(points, lengths, K)
    assert result.idx.shape == (4, 700)
    assert torch.equal(result.idx, expected)
    valid = expected >= 0
    gathered = points[torch.arange(4, device=device)[:, None], expected.clamp(min=0)]
    assert torch.equal(result.points[valid], gathered[valid])
    assert torch.all(result.points[~valid] == 0)


@pytest.mark.parametrize("device", DEVICES)
def test_large_cloud_split_steps_match_reference(device):
    """One cloud of 70k points: the CPU kernel splits each step over threads."""
    points, _ = ragged_clouds(1, 70_000, 3, torch.float32, device, seed=7)
    lengths = torch.tensor([70_000], device=device)
    K = torch.tensor([48], device=device)
    result = sample_farthest_points(points, lengths, K)
    assert torch.equal(result.idx, run_reference(points, lengths, K))


def test_matches_scipy_definition():
    """An independent check of the definition itself (not only kernel == reference)."""
    g = torch.Generator().manual_seed(11)
    points = torch.rand(2, 3000, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([3000, 1234])
    result = sample_farthest_points(points, lengths, K=64)
    for n in range(2):
        expected = scipy_fps(points[n, : lengths[n]].numpy(), 64, 0)
        assert result.idx[n].tolist() == expected


@pytest.mark.parametrize("device", DEVICES)
def test_hand_derived_ties_go_to_the_lower_index(device):
    # On a line: from 0 the farthest is 10 (index 3), then 4 (index 4); then indices 1 and 2
    # are both at distance 1: the lower one comes first.
    points = torch.tensor([[[0.0], [1.0], [3.0], [10.0], [4.0]]], device=device)
    result = sample_farthest_points(points, K=5)
    assert result.idx[0].tolist() == [0, 3, 4, 1, 2]
    assert result.points[0, :, 0].tolist() == [0.0, 10.0, 4.0, 1.0, 3.0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size,first,second", [(2000, 700, 1500), (70_000, 100, 60_000)])
def test_ties_far_apart_go_to_the_lower_index(device, size, first, second):
    # Two copies of the farthest point, in different blocks (and, for 70k points, in the
    # pieces of a step split over threads): the lower index wins, the copy comes last.
    points = torch.rand(1, size, 3, generator=torch.Generator().manual_seed(size))
    points[0, [first, second]] = 10.0
    idx = sample_farthest_points(points.to(device), K=3).idx[0].tolist()
    assert idx[:2] == [0, first] and idx[2] != second


@pytest.mark.parametrize("device", DEVICES)
def test_duplicates_repeat_the_first_zero_distance_point(device):
    # Three distinct points among five: once all are selected, every distance is 0 and the
    # argmax is index 0 again (PyTorch3D's behaviour).
    a, b, c = [0.0, 0.0], [1.0, 0.0], [0.0, 2.0]
    points = torch.tensor([[a, b, a, c, b]], device=device)
    result = sample_farthest_points(points, K=5)
    assert result.idx[0].tolist() == [0, 3, 1, 0, 0]
    assert torch.equal(
        result.idx.cpu(), run_reference(points.cpu(), torch.tensor([5]), torch.tensor([5]))
    )


@pytest.mark.parametrize("device", DEVICES)
def test_padding_empty_clouds_and_zero_k(device):
    points = torch.randn(3, 6, 3, device=device)
    lengths = torch.tensor([6, 0, 2], device=device)
    result = sample_farthest_points(points, lengths, K=4)
    assert result.idx.shape == (3, 4) and result.points.shape == (3, 4, 3)
    assert torch.all(result.idx[1] == -1) and torch.all(result.points[1] == 0)
    assert torch.all(result.idx[2, 2:] == -1) and sorted(result.idx[2, :2].tolist()) == [0, 1]
    assert sample_farthest_points(points, lengths, K=0).idx.shape == (3, 0)
    empty = sample_farthest_points(torch.zeros(0, 5, 3, device=device), K=3)
    assert empty.idx.shape == (0, 3) and empty.points.shape == (0, 3, 3)
    no_points = sample_farthest_points(torch.zeros(2, 0, 3, device=device), K=3)
    assert torch.all(no_points.idx == -1)


def test_non_contiguous_and_half_inputs():
    g = torch.Generator().manual_seed(4)
    points = torch.randn(2, 3, 500, generator=g).transpose(1, 2)  # (2, 500, 3), not contiguous
    assert not points.is_contiguous()
    result = sample_farthest_points(points, K=30)
    expected = run_reference(points.contiguous(), torch.tensor([500, 500]), torch.tensor([30, 30]))
    assert torch.equal(result.idx, expected)
    half = sample_farthest_points(points.half(), K=30)
    assert half.points.dtype == torch.float16
    assert half.idx[:, 0].tolist() == [0, 0] and torch.all(half.idx >= 0)


def test_random_start_points_come_from_the_generator():
    points = torch.randn(3, 50, 3)
    lengths = torch.tensor([50, 0, 7])
    first = sample_farthest_points(
        points, lengths, K=5, random_start_point=True, generator=torch.Generator().manual_seed(3)
    )
    again = sample_farthest_points(
        points, lengths, K=5, random_start_point=True, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(first.idx, again.idx)
    draws = torch.Generator().manual_seed(3)
    expected_starts = [int(torch.randint(50, (1,), generator=draws)), -1]
    expected_starts.append(int(torch.randint(7, (1,), generator=draws)))
    assert first.idx[:, 0].tolist() == expected_starts
    start = torch.tensor([expected_starts[0], 0, expected_starts[2]])
    assert torch.equal(first.idx, run_reference(points, lengths, torch.full((3,), 5), start))


def test_gradients_flow_to_the_selected_points():
    g = torch.Generator().manual_seed(5)
    points = torch.randn(2, 30, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([30, 4])
    weights = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    result = sample_farthest_points(points, lengths, K=6)
    (result.points * weights).sum().backward()
    expected = torch.zeros_like(points)
    for n in range(2):
        for k, i in enumerate(result.idx[n].tolist()):
            if i >= 0:
                expected[n, i] += weights[n, k]
    assert_close(points.grad, expected, atol=1e-12, what="grad of points")
    small = torch.randn(1, 12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: sample_farthest_points(p, K=5).points, (small,))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"points": torch.zeros(5, 3)}, "points must be a"),
        ({"points": torch.zeros(2, 5, 3, dtype=torch.int64)}, "floating point"),
        ({"K": -1}, "K must be an int >= 0"),
        ({"K": 2.5}, "K must be an int >= 0"),
        ({"K": torch.tensor([3])}, "K must be an int >= 0"),
        ({"K": [1, 2, 3]}, "K must be an int >= 0"),
        ({"lengths": torch.tensor([6, 1])}, r"lengths must lie in \[0, 5\]"),
        ({"lengths": torch.tensor([1.0, 2.0])}, "lengths must be an integer tensor"),
    ],
)
def test_argument_errors(kwargs, match):
    args = {"points": torch.zeros(2, 5, 3)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sample_farthest_points(**args)


def test_non_finite_points_are_a_user_error():
    points = torch.zeros(2, 5, 3)
    points[1, 4, 0] = float("nan")
    sample_farthest_points(points, torch.tensor([5, 4]), K=2)  # the NaN row is padding
    with pytest.raises(InputError, match=r"points\[1, 4\]"):
        sample_farthest_points(points, K=2)
