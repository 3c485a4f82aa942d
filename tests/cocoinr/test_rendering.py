"""CoCo-INR's colour networks: the authors' sizes and keys for the foreground (idr) and the
NeRF++ background (nerf), what each mode reads (and IDR's no_view_dir), latents computed once."""

from __future__ import annotations

import pytest
import torch

from cocoinr.models.rendering import D_IN, RenderingAttentionNetwork
from geomkit.errors import ConfigError

from ..helpers import assert_close
from .test_attention import LATENTS

DEAD = {"idr": 107_875, "nerf": 106_321}  # the unused coordinate_attn.cross_attn of each
REFERENCE = {"idr": 1_614_485, "nerf": 1_496_596}  # reference section 2: rendering, bg_rendering


def colour_network(mode: str) -> RenderingAttentionNetwork:
    """dtu.conf's rendering_network (idr, 2 blocks) or bg_network.rendering_network (nerf);
    no_view_dir as idr."""
    torch.manual_seed(0)
    blocks = 1 if mode == "nerf" else 2
    return RenderingAttentionNetwork(
        256, 256, mode, D_IN[mode], 3, multires_view=4, num_layers=0,
        hidden_dim=0, num_cross_depth=blocks, activation="gelu", **LATENTS,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["idr", "nerf"])
def test_sizes_and_keys_are_the_authors(mode):
    net = colour_network(mode)
    assert sum(p.numel() for p in net.parameters()) + DEAD[mode] == REFERENCE[mode]
    width = 289 if mode == "idr" else 283
    assert net.state_dict()["color_mlp.0.weight"].shape == (3, width)
    last = "cross_attend_blocks.1" if mode == "idr" else "cross_attend_blocks.0"
    assert f"coordinate_attn.{last}.1.fn.0.weight" in net.state_dict()


def test_what_each_mode_reads():
    points, normals, views = torch.randn(3, 2, 7, 3).unbind(0)
    features = torch.randn(2, 7, 256)
    codebook = torch.randn(64, 256)
    for mode in ("idr", "nerf", "no_view_dir"):
        net = colour_network(mode)
        latents = net.latents(codebook)
        normals_leaf = normals.clone().requires_grad_(True)
        rgb = net(points, normals_leaf, views, features, latents)
        assert rgb.shape == (2, 7, 3) and ((rgb > 0) & (rgb < 1)).all()
        turned = net(points, normals_leaf, -views, features, latents)
        if mode == "no_view_dir":
            assert_close(turned, rgb, atol=0, what="no_view_dir mode ignores the view direction")
        else:
            assert not torch.allclose(turned, rgb)
        moved = net(points + 1, normals_leaf + 1, views, features, latents)
        if mode == "nerf":
            assert_close(moved, rgb, atol=1e-6, what="nerf mode ignores points and normals")
        else:
            rgb.sum().backward()  # the RGB loss reaches the SDF network through the normals
            assert normals_leaf.grad.abs().sum() > 0
            assert not torch.allclose(moved, rgb)


def test_unknown_mode_and_a_wrong_input_width_are_named():
    with pytest.raises(ConfigError, match="'phong'"):
        RenderingAttentionNetwork(8, 16, "phong", 9, 3)
    with pytest.raises(ConfigError, match="d_in must be 6 in mode 'no_view_dir', got 9"):
        RenderingAttentionNetwork(8, 16, "no_view_dir", 9, 3)


def test_no_view_dir_reads_xyz_normal_and_features():
    net = RenderingAttentionNetwork(None, 256, "no_view_dir", 6, 3, multires_view=4,
                                    num_layers=1, hidden_dim=8)  # fmt: skip
    assert net.state_dict()["color_mlp.0.0.weight"].shape == (8, 262)


def test_without_a_codebook_it_is_volsdfs_plain_network():
    net = RenderingAttentionNetwork(None, 256, "idr", 9, 3, multires_view=4, num_layers=4,
                                    hidden_dim=256)  # fmt: skip
    assert not any(key.startswith(("codebook_attn", "coordinate_attn")) for key in net.state_dict())
    assert net.state_dict()["color_mlp.0.0.weight"].shape == (256, 289)
    rgb = net(*torch.randn(3, 5, 3).unbind(0), torch.randn(5, 256))
    assert rgb.shape == (5, 3)
