"""CoCo-INR's SDF network: the authors' size and keys, a sphere at init with the attention
branch disconnected, latents computed once equal per-call ones, twice differentiable."""

from __future__ import annotations

import torch

from cocoinr.models.implicit import ImplicitAttentionNetwork
from geomkit.sdf import LEGACY_WEIGHT_NORM

from ..helpers import assert_close
from .test_attention import LATENTS

DEAD_CROSS_ATTN = 43_125  # coordinate_attn.cross_attn: built by the original, never used


def dtu_sdf_network(seed: int = 0) -> ImplicitAttentionNetwork:
    """dtu.conf's implicit_network (feature 256, dims 4 x 256, bias 0.6, multires 6)."""
    torch.manual_seed(seed)
    return ImplicitAttentionNetwork(
        256, 256, 0.0, 3, 1, [256] * 4, geometric_init=True, bias=0.6,
        weight_norm=True, multires=6, num_cross_depth=1, activation="softplus", **LATENTS,
    )  # fmt: skip


def test_size_and_keys_are_the_authors():
    net = dtu_sdf_network()
    trainable = sum(p.numel() for p in net.parameters())
    assert trainable + DEAD_CROSS_ATTN == 1_496_170  # reference section 2: implicit network
    legacy = {key.replace(new, old) for key in net.state_dict()
              for old, new in LEGACY_WEIGHT_NORM.items() if key.startswith("mlp.")}  # fmt: skip
    assert {f"mlp.{i}.{leaf}" for i in range(5) for leaf in ("weight_g", "weight_v")} <= legacy
    assert net.state_dict()["mlp.0.parametrizations.weight.original1"].shape == (256, 78)


def test_starts_as_a_sphere_without_the_attention_branch():
    net = dtu_sdf_network()
    latents = net.latents(torch.randn(64, 256))
    directions = torch.nn.functional.normalize(torch.randn(300, 3), dim=1)
    radii = torch.linspace(0.0, 1.5, 76)
    points = directions[:, None] * radii[None, :, None]  # (rays, radii, 3)
    with torch.no_grad():
        before = net.sdf(points, latents)[..., 0]
        for parameter in [*net.codebook_attn.parameters(), *net.coordinate_attn.parameters()]:
            parameter.add_(torch.randn_like(parameter))
        after = net.sdf(points, net.latents(torch.randn(64, 256)))[..., 0]
    assert_close(after, before, atol=1e-6, what="SDF with the attention weights changed")
    # A closed surface around the centre; its mean radius varies with the seed (0.44-0.67), as
    # the plain IDR MLP's does with the same weights (tests/geomkit/test_sdf.py).
    assert (before[:, 0] < 0).all() and (before[:, -1] > 0).all()
    crossing = radii[(before > 0).float().argmax(dim=1)]
    assert 0.35 < crossing.mean().item() < 0.8


def test_latents_once_per_step_and_the_eikonal_gradient():
    net = dtu_sdf_network(seed=1)
    with torch.no_grad():  # connect the attention branch, as training soon does
        net.mlp[0].parametrizations.weight.original1.normal_()
    points = torch.randn(4, 5, 3)
    latents = net.latents(torch.randn(64, 256))
    sdf, features, gradient = net.get_outputs(points.clone(), latents)
    assert sdf.shape == (4, 5, 1) and features.shape == (4, 5, 256) and gradient.shape == (4, 5, 3)
    ((gradient.norm(dim=-1) - 1) ** 2).mean().backward()
    assert net.coordinate_attn.cross_attend_blocks[0][0].fn.to_q.weight.grad.abs().sum() > 0
    assert net.codebook_attn.latents.grad.abs().sum() > 0


def test_without_a_codebook_it_is_volsdfs_network_with_its_skip():
    """VolSDF's dtu.conf: dims 8 x 256, skip_in [4], multires 6, geometric init (a sphere)."""
    torch.manual_seed(0)
    net = ImplicitAttentionNetwork(None, 256, 0.0, 3, 1, [256] * 8, bias=0.6, skip_in=[4],
                                   multires=6)  # fmt: skip
    assert not any(key.startswith(("codebook_attn", "coordinate_attn")) for key in net.state_dict())
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes["mlp.3.parametrizations.weight.original1"] == (256 - 39, 256)
    assert shapes["mlp.4.parametrizations.weight.original1"] == (256, 256)
    directions = torch.nn.functional.normalize(torch.randn(100, 3), dim=1)
    with torch.no_grad():
        inside, outside = net.sdf(0.1 * directions)[..., 0], net.sdf(1.5 * directions)[..., 0]
    assert (inside < 0).all() and (outside > 0).all()
    _, _, gradient = net.get_outputs(directions.clone())
    assert gradient.shape == (100, 3)
