"""The sphere aggregator's per-point ridge regression against a float64 numpy reference built
from its definition, order invariance, invalid points, keys, coefficients; the mean
aggregator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from npbgpp.models.aggregation import (
    HarmonicEmbedding,
    MeanAggregator,
    SphereAggregator,
    split_coefficients,
    view_directions,
)


def _inputs(seed=0, v=7, p=60, c=8):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(v, p, c, generator=g)
    directions = torch.nn.functional.normalize(torch.randn(v, p, 3, generator=g), dim=-1)
    mask = torch.rand(v, p, generator=g) > 0.4
    mask[:, 0] = False  # seen by no view
    mask[:, 1] = False
    mask[3, 1] = True  # seen by one view
    mask[:, 2] = True  # seen by all
    return features, directions, mask


def _aggregator(seed=0) -> SphereAggregator:
    torch.manual_seed(seed)
    return SphereAggregator()


def _float64_copy(aggregator: SphereAggregator) -> SphereAggregator:
    copy = SphereAggregator().double()
    copy.load_state_dict(aggregator.state_dict())
    return copy


def _reference(aggregator, features, directions, mask):
    """float64 numpy: per point, the regression from the list of views that see it."""
    mlp64 = _float64_copy(aggregator)
    with torch.no_grad():
        basis = mlp64.basis(directions.double()).numpy()  # (V, P, m)
    y = features.double().numpy()
    mask = mask.numpy()
    m, (_, p, c) = aggregator.m, y.shape
    ym = np.zeros((p, c))
    beta = np.zeros((p, m, c))
    for i in range(p):
        seen = mask[:, i]
        n = seen.sum()
        if n == 0:
            continue
        X, Y = basis[seen, i], y[seen, i]  # (n, m), (n, c)
        ym[i] = Y.mean(0)
        A = X.T @ X / n + np.eye(m) / n
        beta[i] = np.linalg.inv(A) @ (X.T @ Y / n - np.outer(X.mean(0), ym[i]))
    return ym, beta, basis


def test_solve_equals_float64_reference():
    features, directions, mask = _inputs()
    aggregator = _aggregator()
    aggregator.reset(features.shape[1])
    aggregator.update(features, directions, mask)
    ym, beta, valid = aggregator.solve()
    ym_ref, beta_ref, _ = _reference(aggregator, features, directions, mask)
    assert valid.tolist() == (mask.sum(0) > 0).tolist()
    assert not valid[0] and valid[1] and valid[2]
    assert np.abs(beta_ref).max() > 0.1  # a regression that matters, not beta ~ 0
    np.testing.assert_allclose(ym.numpy(), ym_ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(beta.detach().numpy(), beta_ref, atol=1e-5, rtol=0)
    # descriptors towards a target direction
    target = torch.nn.functional.normalize(torch.randn(features.shape[1], 3), dim=-1)
    descriptors, valid_t = aggregator.descriptors(target)
    with torch.no_grad():
        b = _float64_copy(aggregator).basis(target.double()).numpy()
    expected = ym_ref + np.einsum("pmc,pm->pc", beta_ref, b)
    np.testing.assert_allclose(descriptors.detach().numpy(), expected, atol=1e-5, rtol=0)
    assert torch.equal(valid_t, valid)
    assert (descriptors[0] == 0).all()  # invalid: zero


def test_one_view_gives_its_feature():
    # N = 1: beta solves (b b^T + I) beta = b y^T - b y^T = 0, so the descriptor is y itself
    features, directions, mask = _inputs()
    aggregator = _aggregator()
    aggregator.reset(features.shape[1])
    aggregator.update(features, directions, mask)
    ym, beta, _ = aggregator.solve()
    torch.testing.assert_close(ym[1], features[3, 1])
    torch.testing.assert_close(beta[1], torch.zeros_like(beta[1]), atol=1e-6, rtol=0)


def test_order_and_batching_of_views_do_not_matter():
    features, directions, mask = _inputs(seed=1)
    aggregator = _aggregator()
    aggregator.reset(features.shape[1])
    aggregator.update(features, directions, mask)
    target = torch.nn.functional.normalize(torch.randn(features.shape[1], 3), dim=-1)
    all_at_once, _ = aggregator.descriptors(target)
    for order in ([6, 5, 4, 3, 2, 1, 0], [2, 0, 5, 1, 6, 3, 4]):
        aggregator.reset(features.shape[1])
        for v in order:  # one (P, C) view at a time
            aggregator.update(features[v], directions[v], mask[v])
        one_by_one, _ = aggregator.descriptors(target)
        torch.testing.assert_close(one_by_one, all_at_once, atol=2e-5, rtol=0)


def test_batch_of_scenes_equals_scenes_alone():
    features, directions, mask = _inputs(seed=2, p=40)
    aggregator = _aggregator()
    aggregator.reset((2, 20))  # S = (B, P): views first, (V, B, P, C)
    aggregator.update(features.view(7, 2, 20, 8), directions.view(7, 2, 20, 3), mask.view(7, 2, 20))
    batched = aggregator.coefficients()
    assert batched.shape == (2, 20, 56)
    for b in range(2):
        aggregator.reset(20)
        part = slice(20 * b, 20 * (b + 1))
        aggregator.update(features[:, part], directions[:, part], mask[:, part])
        torch.testing.assert_close(aggregator.coefficients(), batched[b], atol=1e-6, rtol=0)


def test_gradients_reach_features_and_mlp():
    features, directions, mask = _inputs(seed=3)
    features.requires_grad_(True)
    aggregator = _aggregator()
    aggregator.reset(features.shape[1])
    aggregator.update(features, directions, mask)
    descriptors, valid = aggregator.descriptors(directions[0])
    descriptors[valid].square().sum().backward()
    assert features.grad.abs().sum() > 0
    assert (features.grad[~mask] == 0).all()  # unseen features get nothing
    for name in ("mlp.0.weight", "mlp.2.weight", "mlp.4.weight", "mlp.4.bias"):
        grad = dict(aggregator.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_keys_shapes_and_embedding():
    aggregator = _aggregator()
    shapes = {k: tuple(v.shape) for k, v in aggregator.state_dict().items()}
    assert shapes == {
        "harmonic_embedding.frequencies": (3,),
        "mlp.0.weight": (16, 18),
        "mlp.0.bias": (16,),
        "mlp.2.weight": (16, 16),
        "mlp.2.bias": (16,),
        "mlp.4.weight": (6, 16),
        "mlp.4.bias": (6,),
        "alpha": (6, 1),
    }
    assert (aggregator.alpha == 1).all()
    torch.testing.assert_close(
        aggregator.harmonic_embedding.frequencies, torch.tensor([1.0, 2.0, 4.0]) * math.pi / 2
    )
    x = torch.tensor([[0.1, -0.4, 0.7]], dtype=torch.float64)
    args = [c * f * math.pi / 2 for c in (0.1, -0.4, 0.7) for f in (1, 2, 4)]  # coord-major
    expected = [math.sin(a) for a in args] + [math.cos(a) for a in args]
    got = HarmonicEmbedding(3).double()(x)[0]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_coefficients_layout_and_round_trip():
    features, directions, mask = _inputs(seed=4)
    aggregator = _aggregator()
    aggregator.reset(features.shape[1])
    aggregator.update(features, directions, mask)
    ym, beta, valid = aggregator.solve()
    table = aggregator.coefficients()
    assert table.shape == (features.shape[1], 8 * 7)
    torch.testing.assert_close(table[:, :8], ym)
    torch.testing.assert_close(table[:, 8:16], beta[:, 0])  # beta row 0 follows ym
    torch.testing.assert_close(table[:, 48:], beta[:, 5])
    ym2, beta2 = split_coefficients(table, 6)
    assert torch.equal(ym2, ym) and torch.equal(beta2, beta)
    target = torch.nn.functional.normalize(torch.randn(features.shape[1], 3), dim=-1)
    direct, _ = aggregator.descriptors(target)
    again, valid2 = aggregator.evaluate_coefficients(table, target)
    torch.testing.assert_close(again, direct)
    # seen by one view: beta = 0 exactly? not bit-exact, so only the unseen point is invalid
    assert not valid2[0] and valid2[2]
    with pytest.raises(ValueError, match="C \\* \\(m \\+ 1\\)"):
        split_coefficients(torch.zeros(3, 50), 6)


def test_mean_aggregator():
    features, directions, mask = _inputs(seed=5)
    aggregator = MeanAggregator(weighted=True)
    aggregator.reset(features.shape[1])
    for v in range(features.shape[0]):
        aggregator.update(features[v], directions[v], mask[v], scores=mask[v].float())
    mean, valid = aggregator.descriptors()
    w = mask.double()
    expected = (features.double() * w[..., None]).sum(0) / w.sum(0).clamp(min=1)[:, None]
    torch.testing.assert_close(mean.double(), expected, atol=1e-6, rtol=0)
    assert valid.tolist() == (mask.sum(0) > 0).tolist()
    scores = torch.rand(mask.shape, generator=torch.Generator().manual_seed(0))
    aggregator.reset(features.shape[1])
    aggregator.update(features, None, mask, scores=scores)
    weights = torch.where(mask, scores, 0).double()
    expected = (features.double() * weights[..., None]).sum(0) / weights.sum(0).clamp(min=1e-12)[
        :, None
    ]
    torch.testing.assert_close(aggregator.coefficients().double()[valid], expected[valid])


def test_view_directions_from_camera_centre():
    R = torch.eye(3)[None]
    T = torch.tensor([[0.0, 0.0, 5.0]])  # centre at (0, 0, -5)
    points = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, -1.0]])
    d = view_directions(points, R, T)
    torch.testing.assert_close(d[0, 0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(d[0, 1], torch.tensor([0.6, 0.0, 0.8]), atol=1e-6, rtol=0)
