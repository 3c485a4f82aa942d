"""NPBG++'s feature extractor (prefix ``feature_extractor.`` in its checkpoints): a U-Net on
timm's ``spnasnet_100`` features.

The input is padded (replicate) to a multiple of 32, normalised with the ImageNet mean and std
(buffers ``mean``, ``std``), encoded into 5 maps at strides 2..32 (16, 24, 40, 96, 320
channels), decoded by 5 blocks (bilinear x2 upsampling with align_corners=True, concatenation of
the skip, 3x3 convolution without bias, LeakyReLU(0.01); the last block's skip is the raw padded
RGB), mapped to ``out_channels`` by a 1x1 convolution without bias (``final``), and cropped back
to the input size. Module names follow the authors' so their checkpoints load as they are:
``encoder.*`` (timm's EfficientNetFeatures), ``decoder.blocks.{0..4}.block.0.weight``,
``final.weight``.

The encoder starts from random weights unless ``encoder_weights`` names a local file of timm's
``spnasnet_100`` (ImageNet; nothing is downloaded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from geomkit.errors import CheckpointError
from geomkit.weights import find_weight_file

__all__ = ["ENCODER_WEIGHT_FILE", "Unet", "load_encoder_weights"]

ENCODER_WEIGHT_FILE = "spnasnet_100-048bc3f4.pth"
_ENCODER_SOURCE = (
    "timm's spnasnet_100 ImageNet weights (https://github.com/rwightman/pytorch-image-models/"
    "releases/download/v0.1-weights/spnasnet_100-048bc3f4.pth, or model.safetensors of "
    "timm/spnasnet_100.rmsp_in1k on the Hugging Face hub)"
)
_CLASSIFIER_KEYS = ("conv_head.", "bn2.", "classifier.")  # in the full model, not in features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NEGATIVE_SLOPE = 0.01


class DecoderBlock(nn.Module):
    """Upsample x2 (bilinear, align_corners=True), concatenate the skip, conv 3x3, LeakyReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.upsample = nn.UpsamplingBilinear2d(scale_factor=2.0)
        conv = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=False)
        nn.init.kaiming_uniform_(conv.weight, mode="fan_out", nonlinearity="leaky_relu")
        self.block = nn.Sequential(conv, nn.Identity(), nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.upsample(x)
        if skip is not None:
            x = torch.cat((x, skip), dim=1)
        return self.block(x)


class UnetDecoder(nn.Module):
    """Five :class:`DecoderBlock` from the deepest encoder map up (``blocks``)."""

    def __init__(
        self, encoder_channels: Sequence[int], decoder_channels: Sequence[int], skip_rgb: bool
    ):
        super().__init__()
        deepest_first = list(encoder_channels)[::-1]
        in_channels = [deepest_first[0], *decoder_channels[:-1]]
        skip_channels = [*deepest_first[1:], 3 if skip_rgb else 0]
        layers = zip(in_channels, skip_channels, decoder_channels, strict=True)
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in layers)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: shallowest first (the padded RGB first when skipped)."""
        deepest_first = features[::-1]
        x, skips = deepest_first[0], deepest_first[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return x


class Unet(nn.Module):
    """NPBG++'s U-Net feature extractor.

    Args:
        encoder_name: timm model with 5 feature levels (``spnasnet_100``).
        out_channels: channels of the output (``descriptor_dim``, 8).
        decoder_channels: output channels of the 5 decoder blocks.
        skip_rgb: the last block's skip is the padded input RGB (3 channels).
        eval_mode: every forward puts the module in eval mode (BatchNorm of the encoder always
            uses its running statistics), as the released configs do.
        pretrained: ImageNet normalisation (the authors' ``pretrained_encoder``); without it
            ``mean`` is 0 and ``std`` 1.
        encoder_weights: a local file of timm's ``spnasnet_100`` weights (a state dict, .pth
            or .safetensors) to start the encoder from, or None for random weights.

    Raises:
        CheckpointError: ``encoder_weights`` is missing, unreadable or does not fit.
    """

    def __init__(
        self,
        encoder_name: str = "spnasnet_100",
        out_channels: int = 8,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        skip_rgb: bool = True,
        eval_mode: bool = True,
        pretrained: bool = True,
        encoder_weights: str | os.PathLike | None = None,
    ):
        super().__init__()
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if pretrained else ((0.0,) * 3, (1.0,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.encoder = timm.create_model(encoder_name, features_only=True, pretrained=False)
        levels = len(self.encoder.feature_info.channels())
        if levels != len(decoder_channels):
            raise ValueError(
                f"Unet: {encoder_name} gives {levels} feature maps, decoder_channels has "
                f"{len(decoder_channels)}"
            )
        self.output_stride = 2**levels
        self.decoder = UnetDecoder(
            self.encoder.feature_info.channels(), tuple(decoder_channels), skip_rgb
        )
        self.final = nn.Conv2d(decoder_channels[-1], out_channels, 1, bias=False)
        self.skip_rgb = skip_rgb
        self.eval_mode = eval_mode
        if encoder_weights is not None:
            load_encoder_weights(self.encoder, encoder_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, out_channels, H, W) features."""
        if self.eval_mode:
            self.eval()
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Unet: images must be (B, 3, H, W), got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        top, bottom = _padding(height, self.output_stride)
        left, right = _padding(width, self.output_stride)
        padded = F.pad(images, (left, right, top, bottom), mode="replicate")
        features = self.encoder((padded - self.mean) / self.std)
        skips = [padded, *features] if self.skip_rgb else features
        out = self.final(self.decoder(skips))
        return out[:, :, top : top + height, left : left + width]


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> None:
    """Load a local timm classification state dict into a ``features_only`` encoder.

    The classifier head's keys (``conv_head``, ``bn2``, ``classifier``) are dropped; every
    other key must match.

    Raises:
        CheckpointError: the file is missing or unreadable, or keys or shapes differ.
    """
    found = find_weight_file(path, ENCODER_WEIGHT_FILE, _ENCODER_SOURCE)
    state = _read_state_dict(found)
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_KEYS)}
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"encoder weights {found} do not fit the spnasnet_100 encoder: missing "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
            f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, wrong shapes {wrong[:5]}"
        )
    encoder.load_state_dict(state, strict=True)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise CheckpointError(f"encoder weights {path} are unreadable ({error})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"encoder weights {path} are not a state dict of tensors")
    return state


def _padding(size: int, stride: int) -> tuple[int, int]:
    """(before, after) to reach the next multiple of stride, NPBG++'s split (before = half)."""
    if size % stride == 0:
        return 0, 0
    total = (size // stride + 1) * stride - size
    return total // 2, total - total // 2
