"""RefinerUnetV2: the authors' key names and shapes, and its forward against a float64 chain of
F.conv2d calls written from the state dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geomkit.errors import ConfigError
from npbgpp.models.refiner import IdentityRefiner, RefinerUnetV2
from tests.helpers import assert_close

# (prefix, in, out) of every gated block of the released config: in [9]*5, filters
# [16, 32, 48, 64, 80], out 3.
GATED = [
    ("start", 9, 16),
    ("down1.conv", 16, 23),
    ("down2.conv", 32, 39),
    ("down3.conv", 48, 55),
    ("down4.conv", 64, 71),
    ("center", 80, 80),
    ("up4.conv", 144, 48),
    ("up3.conv", 96, 24),
    ("up2.conv", 56, 12),
    ("up1.conv", 28, 6),
]


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for prefix, cin, cout in GATED:
        for conv in ("conv_f", "conv_m"):
            shapes[f"{prefix}.block.{conv}.weight"] = (cout, cin, 3, 3)
            shapes[f"{prefix}.block.{conv}.bias"] = (cout,)
    shapes["final.weight"] = (3, 6, 1, 1)
    shapes["final.bias"] = (3,)
    return shapes


def test_state_dict_keys_and_shapes_are_the_authors():
    refiner = RefinerUnetV2()
    state = refiner.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == _expected_shapes()
    assert list(state) == list(_expected_shapes())  # also in the authors' order
    assert torch.equal(state["final.bias"], torch.full((3,), 0.5))
    mask_head = RefinerUnetV2(out_channels=4).state_dict()["final.bias"]
    assert mask_head.tolist() == [0.5, 0.5, 0.5, 0.0]
    assert mask_head.shape == (4,)
    assert sum(v.numel() for v in state.values()) == sum(
        2 * (cout * cin * 9 + cout) for _, cin, cout in GATED
    ) + (3 * 6 + 3)


def _gated(x, state, prefix):
    conv = {}
    for name in ("conv_f", "conv_m"):
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        conv[name] = F.conv2d(
            padded, state[f"{prefix}.block.{name}.weight"], state[f"{prefix}.block.{name}.bias"]
        )
    return F.elu(conv["conv_f"]) * torch.sigmoid(conv["conv_m"])


def _reference_forward(state, rasters):
    """The U-Net written out: halve (odd sides resized bilinearly to even first), concat the
    raster of that scale, and back up with bilinear resizes to each skip's size."""
    x = _gated(rasters[0], state, "start")
    skips = [x]
    for k in range(1, 5):
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.interpolate(x, size=(h - h % 2, w - w % 2), mode="bilinear")
        x = _gated(F.avg_pool2d(x, 2), state, f"down{k}.conv")
        x = torch.cat([x, rasters[k]], 1)
        skips.append(x)
    x = _gated(skips[4], state, "center")
    for k in (4, 3, 2, 1):
        skip = skips[k - 1]
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = _gated(torch.cat([x, skip], 1), state, f"up{k}.conv")
    return F.conv2d(x, state["final.weight"], state["final.bias"])


@pytest.mark.parametrize("size", [(37, 53), (32, 48)])
def test_forward_matches_the_written_out_network_and_keeps_odd_sizes(size):
    torch.manual_seed(0)
    refiner = RefinerUnetV2()
    with torch.no_grad():  # non-trivial biases, so a missing bias term shows
        for name, value in refiner.named_parameters():
            if name.endswith("bias"):
                value.normal_(0, 0.3)
    rasters = [
        torch.rand(2, 9, int(s * size[0]), int(s * size[1])) for s in (1, 0.5, 0.25, 0.125, 0.0625)
    ]
    out = refiner(rasters)
    assert out.shape == (2, 3, *size)
    state = {k: v.double() for k, v in refiner.state_dict().items()}
    expected = _reference_forward(state, [r.double() for r in rasters])
    assert_close(out, expected, atol=2e-6, what="refiner output")


def test_declared_scales_and_identity_refiner():
    with pytest.raises(ValueError, match="got 4 input scales but declared 5"):
        RefinerUnetV2()([torch.rand(1, 9, 32, 32)] * 4)
    with pytest.raises(ValueError, match="gated"):
        RefinerUnetV2(decoder_conv_block_name="basic")
    raster = torch.rand(2, 4, 5, 6)
    assert torch.equal(IdentityRefiner()([raster, raster[:, :, :2]]), raster[:, :3])
    assert torch.equal(IdentityRefiner()(raster), raster[:, :3])
    assert list(IdentityRefiner().state_dict()) == []


@pytest.mark.parametrize("size", [16, 31])
def test_images_too_small_for_reflect_padding_are_a_config_error(size):
    """The original crashed inside F.pad; here the message names the size and the fix."""
    rasters = [torch.rand(1, 9, int(size / 2**k), int(size / 2**k)) for k in range(5)]
    with pytest.raises(ConfigError, match=f"{size}x{size} px image is too small.*at least 32"):
        RefinerUnetV2()(rasters)
