"""The U-Net feature extractor: the authors' keys and shapes, padding and cropping, eval mode,
gradients, local encoder weights."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from geomkit.errors import CheckpointError
from npbgpp.models.unet import Unet, _padding

DECODER_SHAPES = {
    "decoder.blocks.0.block.0.weight": (256, 416, 3, 3),
    "decoder.blocks.1.block.0.weight": (128, 296, 3, 3),
    "decoder.blocks.2.block.0.weight": (64, 152, 3, 3),
    # 64 + 16 (the stride-2 map of spnasnet_100) = 80 input channels; the reference notes list
    # [32, 88, 3, 3] beside "64+16->32", which contradicts itself: timm builds 80
    "decoder.blocks.3.block.0.weight": (32, 80, 3, 3),
    "decoder.blocks.4.block.0.weight": (16, 35, 3, 3),
    "final.weight": (8, 16, 1, 1),
    "mean": (1, 3, 1, 1),
    "std": (1, 3, 1, 1),
}


@pytest.fixture(scope="module")
def unet() -> Unet:
    torch.manual_seed(0)
    return Unet()


def test_state_dict_keys_and_shapes_are_the_authors(unet):
    state = unet.state_dict()
    head = {k: tuple(v.shape) for k, v in state.items() if not k.startswith("encoder.")}
    assert head == DECODER_SHAPES
    encoder = timm.create_model("spnasnet_100", features_only=True, pretrained=False)
    expected = {f"encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items() if k.startswith("encoder.")}
    assert got == expected
    assert got["encoder.conv_stem.weight"] == (32, 3, 3, 3)
    torch.testing.assert_close(state["mean"].flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(state["std"].flatten(), torch.tensor([0.229, 0.224, 0.225]))
    plain = Unet(pretrained=False).state_dict()
    assert plain["mean"].flatten().tolist() == [0.0] * 3
    assert plain["std"].flatten().tolist() == [1.0] * 3


def test_padding_split_is_npbgpps():
    assert _padding(64, 32) == (0, 0)
    assert _padding(40, 32) == (12, 12)
    assert _padding(41, 32) == (11, 12)
    assert _padding(33, 32) == (15, 16)


@pytest.mark.parametrize("size", [(37, 45), (33, 64)])
def test_output_size_equals_input_size(unet, size):
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = unet(x)
    assert out.shape == (1, 8, *size)
    assert torch.isfinite(out).all()


def test_crop_takes_the_input_window_of_the_padded_output(unet):
    # 41 x 50 pads to 64 x 64 as (11, 12) rows and (7, 7) columns; padding the input by hand the
    # same way gives a 64 x 64 input needing no padding, whose output holds ours at that window
    x = torch.rand(1, 3, 41, 50, generator=torch.Generator().manual_seed(2))
    padded = F.pad(x, (7, 7, 11, 12), mode="replicate")
    with torch.no_grad():
        out = unet(x)
        full = unet(padded)
    assert full.shape[-2:] == (64, 64)
    torch.testing.assert_close(out, full[:, :, 11 : 11 + 41, 7 : 7 + 50], atol=0, rtol=0)


def test_eval_mode_and_gradients(unet):
    unet.train()
    x = torch.rand(1, 3, 35, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = unet(x)
    assert not unet.training and not unet.encoder.bn1.training  # eval_mode=True
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name in ("encoder.conv_stem.weight", "decoder.blocks.0.block.0.weight", "final.weight"):
        grad = dict(unet.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    unet.zero_grad()
    trainable = Unet(eval_mode=False)
    trainable.train()
    trainable(torch.rand(2, 3, 32, 32))
    assert trainable.training


def test_encoder_weights_from_a_local_file(tmp_path):
    torch.manual_seed(5)
    full = timm.create_model("spnasnet_100", pretrained=False)  # with its classifier head
    path = tmp_path / "spnasnet_100-048bc3f4.pth"
    torch.save(full.state_dict(), path)
    unet = Unet(encoder_weights=path)
    for key, value in unet.encoder.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[key], atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="nowhere.pth"):
        Unet(encoder_weights=tmp_path / "nowhere.pth")
    broken = {k: v for k, v in full.state_dict().items() if not k.startswith("blocks.6")}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing.*blocks.6"):
        Unet(encoder_weights=tmp_path / "broken.pth")
