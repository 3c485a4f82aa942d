"""chamfer_distance: against scipy's cKDTree on a ragged batch (every distance, direction and
reduction), the brute-force reference (normals, gradients), PyTorch3D's edge cases, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from geomkit.ops._reference import chamfer as reference
from geomkit.ops.chamfer import chamfer_distance
from tests.helpers import assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DISTANCES = ["squared_euclidean", "euclidean", "manhattan"]
X_LENGTHS, Y_LENGTHS = [700, 350, 1], [900, 20, 640]


def ragged_pair(dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 700, 3, generator=g, dtype=dtype)
    y = torch.rand(3, 900, 3, generator=g, dtype=dtype) * 2 - 1
    return x.to(device), y.to(device), torch.tensor(X_LENGTHS), torch.tensor(Y_LENGTHS)


def scipy_terms(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    """Per point of a: its distance to the nearest point of b, by scipy's kd-tree."""
    d, _ = cKDTree(b).query(a, k=1, p=1 if distance == "manhattan" else 2)
    return d**2 if distance == "squared_euclidean" else d


def scipy_reduce(terms: np.ndarray, point_reduction: str) -> float:
    return {"mean": np.mean, "sum": np.sum, "max": np.max}[point_reduction](terms)


@pytest.mark.parametrize("distance", DISTANCES)
def test_matches_scipy_on_a_ragged_batch(distance):
    """An independent check of the definition: every direction and reduction."""
    x, y, lx, ly = ragged_pair()
    forward, backward = [], []
    for n in range(3):
        a, b = x[n, : lx[n]].numpy(), y[n, : ly[n]].numpy()
        forward.append(scipy_terms(a, b, distance))
        backward.append(scipy_terms(b, a, distance))
    unreduced = chamfer_distance(
        x, y, lx, ly, distance=distance, point_reduction=None, batch_reduction=None
    ).distance
    for n in range(3):
        assert_close(unreduced[0][n, : lx[n]], forward[n], rtol=1e-12, atol=1e-12, what="x->y")
        assert_close(unreduced[1][n, : ly[n]], backward[n], rtol=1e-12, atol=1e-12, what="y->x")
        assert torch.all(unreduced[0][n, lx[n] :] == 0) and torch.all(unreduced[1][n, ly[n] :] == 0)
    for point_reduction in ("mean", "sum", "max"):
        per_x = np.array([scipy_reduce(t, point_reduction) for t in forward])
        per_y = np.array([scipy_reduce(t, point_reduction) for t in backward])
        both = np.maximum(per_x, per_y) if point_reduction == "max" else per_x + per_y
        for batch_reduction, expected in (("mean", both.mean()), ("sum", both.sum()), (None, both)):
            result = chamfer_distance(
                x,
                y,
                lx,
                ly,
                distance=distance,
                point_reduction=point_reduction,
                batch_reduction=batch_reduction,
            )
            what = f"{point_reduction}/{batch_reduction}"
            assert_close(result.distance, expected, rtol=1e-12, what=what)
            assert result.normals is None
        single = chamfer_distance(
            x,
            y,
            lx,
            ly,
            distance=distance,
            point_reduction=point_reduction,
            single_directional=True,
        )
        assert_close(single.distance, per_x.mean(), rtol=1e-12, what=f"{point_reduction} x->y")


def test_default_is_the_sum_of_both_mean_squared_distances():
    # x = {origin}, y = {(1, 0, 0), (0, 2, 0)}: x->y mean 1, y->x mean (1 + 4) / 2 = 2.5.
    x = torch.zeros(1, 1, 3)
    y = torch.tensor([[[1.0, 0, 0], [0, 2, 0]]])
    assert chamfer_distance(x, y).distance.item() == 3.5
    assert chamfer_distance(x, y, distance="euclidean").distance.item() == 1 + 1.5
    assert chamfer_distance(x, y, single_directional=True).distance.item() == 1.0
    assert chamfer_distance(x, y, point_reduction="max").distance.item() == 4.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("abs_cosine", [True, False])
def test_matches_reference_with_normals(device, distance, abs_cosine):
    x, y, lx, ly = ragged_pair(torch.float32, device, seed=1)
    g = torch.Generator().manual_seed(2)
    nx = torch.randn(3, 700, 3, generator=g).to(device)
    ny = torch.randn(3, 900, 3, generator=g).to(device)
    for point_reduction, batch_reduction in (("mean", "mean"), ("sum", None), (None, None)):
        options = dict(
            distance=distance,
            point_reduction=point_reduction,
            batch_reduction=batch_reduction,
            abs_cosine=abs_cosine,
        )
        result = chamfer_distance(x, y, lx, ly, nx, ny, **options)
        expected = reference.chamfer_distance(
            x, y, lx.to(device), ly.to(device), nx, ny, single_directional=False, **options
        )
        what = f"{point_reduction}/{batch_reduction}"
        for actual, wanted in ((result.distance, expected[0]), (result.normals, expected[1])):
            actual = torch.cat(actual, 1) if point_reduction is None else actual
            wanted = torch.cat(wanted, 1) if point_reduction is None else wanted
            assert_close(actual, wanted, rtol=1e-5, atol=1e-6, what=what)


def test_normal_terms_by_hand():
    x = torch.tensor([[[0.0, 0, 0], [5, 0, 0]]])
    y = torch.tensor([[[0.1, 0, 0], [5, 0.1, 0]]])
    nx = torch.tensor([[[0.0, 0, 1], [1, 0, 0]]])
    ny = torch.tensor([[[0.0, 0, -1], [1, 1, 0]]])  # opposite; 45 degrees
    cos45 = 2**-0.5
    kwargs = dict(point_reduction=None, batch_reduction=None)
    signed = chamfer_distance(x, y, None, None, nx, ny, abs_cosine=False, **kwargs).normals
    assert_close(signed[0], [[2.0, 1 - cos45]], atol=1e-6, what="1 - cos")
    unsigned = chamfer_distance(x, y, None, None, nx, ny, **kwargs).normals
    assert_close(unsigned[1], [[0.0, 1 - cos45]], atol=1e-6, what="1 - |cos|")


@pytest.mark.parametrize("distance", DISTANCES)
def test_gradients_match_reference_and_gradcheck(distance):
    x, y, lx, ly = ragged_pair(seed=3)
    x = x[:, :200].clone().requires_grad_()
    y = y[:, :300].clone().requires_grad_()
    lx, ly = torch.tensor([200, 120, 1]), torch.tensor([300, 20, 250])
    g = torch.Generator().manual_seed(4)
    nx = torch.randn(3, 200, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ny = torch.randn(3, 300, 3, generator=g, dtype=torch.float64, requires_grad=True)
    leaves = (x, y, nx, ny)
    result = chamfer_distance(x, y, lx, ly, nx, ny, distance=distance)
    grads = torch.autograd.grad(result.distance + 0.5 * result.normals, leaves)
    expected = reference.chamfer_distance(
        x, y, lx, ly, nx, ny, distance, "mean", "mean", False, True
    )
    expected_grads = torch.autograd.grad(expected[0] + 0.5 * expected[1], leaves)
    for name, actual, wanted in zip(
        ("x", "y", "x_normals", "y_normals"), grads, expected_grads, strict=True
    ):
        assert_close(actual, wanted, atol=1e-12, rtol=1e-9, what=f"grad {name}")
    assert torch.all(grads[0][1, 120:] == 0) and torch.all(grads[1][1, 20:] == 0)
    small_x = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    small_y = torch.randn(2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: chamfer_distance(a, b, distance=distance, batch_reduction=None).distance,
        (small_x, small_y),
    )


def test_euclidean_gradient_is_finite_where_points_coincide():
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]], requires_grad=True)
    y = torch.tensor([[[0.0, 0, 0], [1, 2, 0]]], requires_grad=True)
    chamfer_distance(x, y, distance="euclidean").distance.backward()
    assert torch.all(torch.isfinite(x.grad)) and torch.all(torch.isfinite(y.grad))
    assert x.grad[0, 0].tolist() == [0.0, 0.0, 0.0]


def test_empty_clouds_as_pytorch3d():
    # PyTorch3D's own test: an empty x against 40 points gives 0; 10 zeros vs 40 ones gives
    # 3 (x->y) + 3 (y->x).
    x = torch.zeros(2, 10, 3)
    y = torch.ones(2, 40, 3)
    result = chamfer_distance(x, y, torch.tensor([0, 10]), None, batch_reduction=None)
    assert result.distance.tolist() == [0.0, 6.0]
    empty = chamfer_distance(torch.zeros(0, 5, 3), torch.zeros(0, 5, 3))
    assert empty.distance.item() == 0.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"distance": "l2"}, "distance must be one of"),
        ({"point_reduction": "min"}, "point_reduction must be one of"),
        ({"batch_reduction": "max"}, "batch_reduction must be one of"),
        ({"point_reduction": None}, "batch_reduction must be None"),
        ({"x_normals": torch.zeros(2, 4, 3)}, "give both x_normals and y_normals"),
        (
            {"x_normals": torch.zeros(2, 4, 3), "y_normals": torch.zeros(2, 4, 3)},
            "y_normals must have the shape",
        ),
        (
            {
                "x_normals": torch.zeros(2, 4, 3),
                "y_normals": torch.zeros(2, 5, 3),
                "point_reduction": "max",
            },
            "normals need point_reduction",
        ),
        ({"y": torch.zeros(2, 5, 2)}, "differ in N or D"),
        ({"x_lengths": torch.tensor([5, 1])}, r"x_lengths must lie in \[0, 4\]"),
        ({"x": torch.zeros(4, 3)}, "x must be a float"),
    ],
)
def test_argument_errors(kwargs, match):
    args = {"x": torch.zeros(2, 4, 3), "y": torch.zeros(2, 5, 3)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        chamfer_distance(**args)
