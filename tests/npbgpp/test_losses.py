"""NPBG++ losses against hand-written formulas: the VGG loss on fabricated 'Caffe' weights, the
L1 pyramid, loss weights, rgb_reg's pyramid, and the rgb_converter's dimred loss."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from geomkit.errors import CheckpointError, ConfigError
from geomkit.metrics import ssim
from npbgpp.losses import (
    COEFFICIENTS_FT_LOSS_FACTORS,
    VGG19_CAFFE_FILE,
    L1SSIMLoss,
    VGGLoss,
    build_perceptual_loss,
    image_losses,
    l1_downscaled,
    loss_factors,
    npbgpp_total_loss,
    rgb_reg_pyramid,
)
from npbgpp.models.rgb_converter import RGBConverter, dimred_loss
from tests.helpers import assert_close

# torchvision VGG-19 features: conv index -> (out, in); ReLU at index + 1; pools at 4, 9, 18, 27.
VGG19_CONVS = {
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128),
    10: (256, 128), 12: (256, 256), 14: (256, 256), 16: (256, 256),
    19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512),
    28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512),
}  # fmt: skip
POOLS = (4, 9, 18, 27)


@pytest.fixture(scope="module")
def caffe_file(tmp_path_factory):
    """Random He-initialised VGG-19 weights in the umich file's layout (plus classifier keys)."""
    g = torch.Generator().manual_seed(5)
    state = {}
    for index, (cout, cin) in VGG19_CONVS.items():
        std = (2.0 / (cin * 9)) ** 0.5
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
        state[f"features.{index}.bias"] = 0.1 * torch.randn(cout, generator=g)
    state["classifier.0.weight"] = torch.randn(4, 6, generator=g)
    path = tmp_path_factory.mktemp("vgg") / VGG19_CAFFE_FILE
    torch.save(state, path)
    return path, state


def _reference_vgg_loss(state, x, y):
    """float64: (x - mean / 255) * 255, conv/relu/avg-pool chain, sum of mean |relu_a - relu_b|
    at relu1_1, 1_2, 2_1, 2_2, 3_1..3_4, 4_1..4_4, 5_1 (indices 1, 3, ..., 29)."""
    mean = torch.tensor([103.939, 116.779, 123.68], dtype=torch.float64).view(1, 3, 1, 1)
    a, b = (x.double() * 255 - mean), (y.double() * 255 - mean)
    total = torch.zeros((), dtype=torch.float64)
    for index in range(29):
        if index in POOLS:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        elif index in VGG19_CONVS:
            weight = state[f"features.{index}.weight"].double()
            bias = state[f"features.{index}.bias"].double()
            a = F.relu(F.conv2d(a, weight, bias, padding=1))
            b = F.relu(F.conv2d(b, weight, bias, padding=1))
            total = total + (a - b).abs().mean()
    return total


def test_vgg_loss_equals_the_written_out_network(caffe_file):
    path, state = caffe_file
    loss = VGGLoss(path)
    assert len(loss.vgg19) == 30 and isinstance(loss.vgg19[4], torch.nn.AvgPool2d)
    assert not any(p.requires_grad for p in loss.parameters())
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 40, generator=g), torch.rand(2, 3, 32, 40, generator=g)
    x.requires_grad_(True)
    value = loss(x, y)
    assert_close(value.detach(), _reference_vgg_loss(state, x.detach(), y), rtol=2e-5)
    value.backward()
    assert float(x.grad.abs().sum()) > 0
    assert float(loss(y, y)) == 0.0


def test_vgg_loss_found_in_the_weight_folder_and_clear_errors(caffe_file, tmp_path, monkeypatch):
    path, state = caffe_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match=f"{VGG19_CAFFE_FILE} not found in .*umich"):
        VGGLoss()
    with pytest.raises(CheckpointError, match=VGG19_CAFFE_FILE):
        build_perceptual_loss("vgg")
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(path.parent))
    found = VGGLoss()
    assert torch.equal(found.vgg19[28].weight, state["features.28.weight"])
    broken = {k: v for k, v in state.items() if k != "features.10.bias"}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"1 missing: features\.10\.bias"):
        VGGLoss(tmp_path / "broken.pth")


def test_l1_ssim_fallback_is_selected_by_name_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="npbgpp.losses"):
        fallback = build_perceptual_loss("l1_ssim")
    assert isinstance(fallback, L1SSIMLoss)
    assert "fallback" in caplog.text and "NOT NPBG++'s VGG-19 loss" in caplog.text
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    expected = (x - y).abs().mean() + 1 - ssim(x, y, data_range=1.0).mean().float()
    assert_close(fallback(x, y), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="'alex'"):
        build_perceptual_loss("alex")


def test_l1_downscaled_is_the_mean_error_of_bilinear_quarter_images():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 16, 24, generator=g), torch.rand(2, 3, 16, 24, generator=g)

    # Downscaling by exactly 4, bilinear (align_corners=False) samples at 4i + 1.5: the mean of
    # the two middle pixels of each 4x4 block in each direction.
    def quarter(img):
        return (
            img[..., 1::4, :][..., :, 1::4] / 4
            + img[..., 2::4, :][..., :, 1::4] / 4
            + (img[..., 1::4, :][..., :, 2::4] / 4 + img[..., 2::4, :][..., :, 2::4] / 4)
        )

    expected = (quarter(x.double()) - quarter(y.double())).abs().mean()
    assert_close(l1_downscaled(x, y, 4), expected, atol=1e-6)
    assert_close(l1_downscaled(x, y, 1), (x - y).abs().mean(), atol=1e-7)


def test_loss_weights_and_empty_pixels():
    """NPBG++ = vgg + 2500 l1_d4 + dimred + 1000 rgb_reg; coefficients_ft's own factors."""

    def perceptual(a, b):
        return (a - b).square().mean()

    g = torch.Generator().manual_seed(3)
    render, target = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    empty = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    empty[..., :, :4] = True
    filled = torch.cat((target[..., :4], render[..., 4:]), dim=3)

    factors = loss_factors(None)
    losses = image_losses(render, target, empty, perceptual, factors)
    assert sorted(losses) == ["l1_d4_loss", "vgg_loss"]
    assert_close(losses["vgg_loss"], perceptual(filled, target), atol=0)
    assert_close(losses["l1_d4_loss"], l1_downscaled(filled, target, 4), atol=0)
    losses["dimred_loss"] = torch.tensor(0.5)
    total = npbgpp_total_loss(losses, factors, rgb_reg=torch.tensor(0.25))
    expected = losses["vgg_loss"] + 2500 * losses["l1_d4_loss"] + 0.5 + 1000 * 0.25
    assert_close(total, expected, rtol=1e-6)
    assert_close(npbgpp_total_loss(losses, factors), expected - 250, rtol=1e-6)

    ft = loss_factors(COEFFICIENTS_FT_LOSS_FACTORS)
    assert (ft["vgg_loss"], ft["l1_d1_loss"], ft["l1_d2_loss"]) == (1e-7, 2.5e-4, 1e-4)
    assert (ft["l1_d4_loss"], ft["dimred_loss"]) == (4e-5, 1e-7)
    ft_losses = image_losses(render, target, empty, perceptual, ft)
    assert sorted(ft_losses) == ["l1_d1_loss", "l1_d2_loss", "l1_d4_loss", "vgg_loss"]
    assert_close(ft_losses["l1_d1_loss"], (filled - target).abs().mean(), atol=1e-7)
    with pytest.raises(ConfigError, match="loss_factors.vgg_loss"):
        loss_factors({"vgg_loss": "a lot"})


def test_rgb_reg_pyramid_nearest_dropout_and_mask():
    g = torch.Generator().manual_seed(4)
    features = torch.randn(4, 8, 64, 64, generator=g, requires_grad=True)
    background = torch.arange(8.0).view(1, 8, 1, 1) + 100
    pyramid = rgb_reg_pyramid(features, background, generator=torch.Generator().manual_seed(9))
    draws = torch.Generator().manual_seed(9)
    for scale, level in zip((1, 0.5, 0.25, 0.125, 0.0625), pyramid, strict=True):
        step = int(1 / scale)
        side = 64 // step
        assert level.shape == (4, 9, side, side) and not level.requires_grad
        keep = torch.rand(4, 1, side, side, generator=draws) > scale / 2
        assert torch.equal(level[:, 8:], keep.float())
        nearest = features.detach()[..., ::step, ::step]  # nearest at an integer factor
        assert torch.equal(level[:, :8], torch.where(keep, nearest, background))
    kept = [float(level[:, 8].mean()) for level in pyramid[:3]]
    assert abs(kept[0] - 0.5) < 0.02 and abs(kept[1] - 0.75) < 0.03 and abs(kept[2] - 0.875) < 0.05

    mask = torch.zeros(4, 1, 64, 64, dtype=torch.bool)
    mask[..., :32] = True
    masked = rgb_reg_pyramid(features, background, mask=mask)
    assert not bool(masked[0][..., 8, :, 32:].any()) and bool(masked[0][..., 8, :, :32].any())


def test_rgb_converter_and_dimred_loss():
    torch.manual_seed(0)
    converter = RGBConverter(8)
    state = converter.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "lin1.weight": (3, 8),
        "lin1.bias": (3,),
        "lin2.weight": (8, 3),
        "lin2.bias": (8,),
    }
    descriptors = torch.randn(2, 50, 8, requires_grad=True)
    valid = torch.rand(2, 50) > 0.3
    w1, b1, w2, b2 = (v.double() for v in state.values())
    d = descriptors.detach().double()
    rgb = 0.9 * torch.sigmoid(d @ w1.T + b1)
    assert_close(converter(descriptors), rgb, atol=1e-6)
    expected = ((rgb @ w2.T + b2 - d).abs() * valid[..., None]).sum()
    loss = dimred_loss(converter, descriptors, valid)
    assert_close(loss, expected, rtol=1e-5)
    loss.backward()
    assert descriptors.grad is None  # only the visualisation head learns
    assert converter.lin1.weight.grad is not None
    image = torch.randn(1, 8, 4, 5)
    expected_image = converter(image.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.equal(converter.feature_map_to_rgb(image), expected_image)
