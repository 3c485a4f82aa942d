"""geomkit.sdf: the NeRF embedding, IDR's geometric initialisation (a sphere from the start),
weight norm with the legacy checkpoint keys, VolSDF's Laplace density."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from geomkit.sdf import (
    LaplaceDensity,
    embedding_width,
    geometric_init_,
    has_weight_norm,
    laplace_density,
    map_legacy_weight_norm,
    nerf_embedding,
    with_weight_norm,
)

from ..helpers import assert_close

RADIUS = 0.6  # the configs' bias


def test_nerf_embedding_order_and_width():
    x = torch.tensor([[0.5, -1.0, 2.0]])
    out = nerf_embedding(x, 2)
    expected = torch.cat([x, x.sin(), x.cos(), (2 * x).sin(), (2 * x).cos()], dim=1)
    assert out.shape[1] == embedding_width(3, 2) == 15
    assert_close(out, expected, atol=1e-7)
    assert torch.equal(nerf_embedding(x, 0), x)


def idr_mlp(seed: int, n_frequencies: int = 6, inside_outside: bool = False):
    """VolSDF's and CoCo-INR's SDF MLP: embedded xyz -> 256 x 4 -> 1 + 256, Softplus(100)."""
    torch.manual_seed(seed)
    dims = [embedding_width(3, n_frequencies), 256, 256, 256, 256, 257]
    layers = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)]
    geometric_init_(layers, RADIUS, embedded=n_frequencies > 0, inside_outside=inside_outside)
    layers = [with_weight_norm(layer) for layer in layers]
    act = nn.Softplus(beta=100)

    def sdf(x):
        h = nerf_embedding(x, n_frequencies)
        for i, layer in enumerate(layers):
            h = layer(h)
            h = act(h) if i < len(layers) - 1 else h
        return h[:, 0]

    return sdf, layers


@pytest.mark.parametrize("seed", [0, 1])
def test_geometric_init_starts_as_the_sphere(seed):
    """Along 1000 rays from the centre the SDF goes from negative to positive near 0.6: IDR's
    init is a lumpy sphere whose mean radius varies with the seed (0.44-0.67 over ten seeds;
    single rays cross between about 0.45 and 0.85)."""
    sdf, layers = idr_mlp(seed)
    assert torch.equal(layers[0].weight[:, 3:], torch.zeros_like(layers[0].weight[:, 3:]))
    assert layers[-1].bias[0].item() == pytest.approx(-RADIUS) and has_weight_norm(layers[-1])
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(1000, 3, generator=g), dim=1)
    radii = torch.linspace(0.0, 1.5, 151)
    with torch.no_grad():
        values = torch.stack([sdf(directions * r) for r in radii], dim=1)
    crossing = radii[(values > 0).float().argmax(dim=1)]
    assert 0.35 < crossing.mean().item() < 0.8
    inside, outside = values[:, radii < 0.4], values[:, radii > 0.9]
    assert ((inside < 0).all(1) & (outside > 0).all(1)).float().mean() > 0.98


def test_inside_outside_flips_the_sign():
    sdf, _ = idr_mlp(0, n_frequencies=0, inside_outside=True)
    with torch.no_grad():
        assert sdf(torch.zeros(1, 3)).item() > 0 and sdf(torch.full((1, 3), 1.0)).item() < 0


def test_legacy_weight_norm_keys_load_into_the_parametrisation():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecated API wrote the files
        legacy = nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 5)), nn.Softplus(100))
    legacy_state = legacy.state_dict()
    assert {"0.weight_g", "0.weight_v"} <= set(legacy_state)
    modern = nn.Sequential(with_weight_norm(nn.Linear(4, 5)), nn.Softplus(100))
    modern.load_state_dict(map_legacy_weight_norm(legacy_state), strict=True)
    x = torch.randn(7, 4)
    assert_close(modern(x), legacy(x), atol=1e-6)
    assert map_legacy_weight_norm({"weight_g": torch.ones(1)}).keys() == {
        "parametrizations.weight.original0"
    }


def test_laplace_density():
    beta = 0.1
    sdf = torch.tensor([-1.0, -0.05, 0.0, 0.05, 1.0])
    cdf = torch.where(sdf > 0, 0.5 * torch.exp(-sdf / beta), 1 - 0.5 * torch.exp(sdf / beta))
    assert_close(laplace_density(sdf, beta), cdf / beta, atol=1e-5)
    density = LaplaceDensity(beta=-0.1)
    assert density.get_beta().item() == pytest.approx(0.1 + 1e-4)
    assert density(torch.zeros(1)).item() == pytest.approx(0.5 / (0.1 + 1e-4))
    assert list(density.state_dict()) == ["beta"]
    assert math.isclose(density(torch.zeros(1), beta=torch.tensor(1.0)).item(), 0.5)
