"""Refiners: the raster pyramid -> RGB (prefix ``refiner.``).

:class:`RefinerUnetV2` is NPBG++'s gated U-Net (``light_unet.RefinerUnetV2`` with the released
configs' settings: gated blocks everywhere, no normalisation, bilinear upsampling, skips, no
last activation). :class:`IdentityRefiner` is npbgpp_rgb's: the first 3 channels of the finest
raster.

Channel flow with in_channels [9] * 5, filters [16, 32, 48, 64, 80], out_channels 3::

    start   9 -> 16                          up4.conv  80 + 64 -> 48
    down1  16 -> 23, + raster 1/2  -> 32     up3.conv  48 + 48 -> 24
    down2  32 -> 39, + raster 1/4  -> 48     up2.conv  24 + 32 -> 12
    down3  48 -> 55, + raster 1/8  -> 64     up1.conv  12 + 16 -> 6
    down4  64 -> 71, + raster 1/16 -> 80     final     6 -> 3 (1x1, bias 0.5)
    center 80 -> 80
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from geomkit.errors import ConfigError

MIN_REFLECT_SIZE = 32  # 32 / 2^4 = 2 px at the centre block, the least reflect padding accepts

__all__ = ["GatedBlock", "IdentityRefiner", "RefinerUnetV2"]


class GatedBlock(nn.Module):
    """ELU(conv_f(x)) * sigmoid(conv_m(x)); both 3x3 convs with bias, same padding.

    Keys ``block.conv_f.{weight,bias}``, ``block.conv_m.{weight,bias}`` (the original's
    ModuleDict; its ``norm`` is Identity in every released config and holds nothing).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding_mode: str = "reflect",
    ):
        super().__init__()
        pad = (kernel_size - 1) // 2
        conv = {"padding": pad, "padding_mode": padding_mode}
        self.block = nn.ModuleDict(
            {
                "conv_f": nn.Conv2d(in_channels, out_channels, kernel_size, **conv),
                "act_f": nn.ELU(),
                "conv_m": nn.Conv2d(in_channels, out_channels, kernel_size, **conv),
                "act_m": nn.Sigmoid(),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) -> (N, out, H, W)."""
        features = self.block["act_f"](self.block["conv_f"](x))
        return features * self.block["act_m"](self.block["conv_m"](x))


class DownsampleBlock(nn.Module):
    """Halve (after a bilinear resize to even sides when a side is odd), then a gated conv."""

    def __init__(self, in_channels: int, out_channels: int, padding_mode: str = "reflect"):
        super().__init__()
        self.conv = GatedBlock(in_channels, out_channels, padding_mode=padding_mode)
        self.down = nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) -> (N, out, H // 2, W // 2)."""
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.interpolate(
                x, size=(h // 2 * 2, w // 2 * 2), mode="bilinear", align_corners=False
            )
        return self.conv(self.down(x))


class UpsampleBlock(nn.Module):
    """Bilinear resize to the skip's size, concatenate the skip, gated conv."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        padding_mode: str = "reflect",
        use_skip: bool = True,
    ):
        super().__init__()
        self.use_skip = use_skip
        conv_in = in_channels + skip_channels if use_skip else in_channels
        self.conv = GatedBlock(conv_in, out_channels, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (N, in, h, w), skip (N, skip, H, W) -> (N, out, H, W)."""
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], 1) if self.use_skip else x)


class RefinerUnetV2(nn.Module):
    """NPBG++'s gated U-Net with multi-scale input (the authors' ``system.refiner`` keys).

    Args:
        in_channels: channels of the input at each of up to 5 scales (descriptor_dim + 1 each);
            an int or a shorter list leaves the remaining scales without input (0).
        out_channels: 3 (RGB), or 4 with a foreground-mask logit (its final bias starts at 0).
        filters: the 5 encoder widths.
        upsample_mode: 'bilinear' (the only mode of the released configs).
        last_act: '' (no last activation; final bias starts at 0.5).
        stem_conv_block_name, encoder_conv_block_name, decoder_conv_block_name: 'gated'.
        padding_mode: the convs' padding ('reflect' in the released configs).
        use_skip: concatenate the encoder features in the decoder.
    """

    def __init__(
        self,
        in_channels: int | Sequence[int] = (9, 9, 9, 9, 9),
        out_channels: int = 3,
        filters: Sequence[int] = (16, 32, 48, 64, 80),
        upsample_mode: str = "bilinear",
        last_act: str = "",
        stem_conv_block_name: str = "gated",
        encoder_conv_block_name: str = "gated",
        decoder_conv_block_name: str = "gated",
        padding_mode: str = "reflect",
        use_skip: bool = True,
    ):
        super().__init__()
        _check_supported(
            filters,
            upsample_mode,
            last_act,
            (stem_conv_block_name, encoder_conv_block_name, decoder_conv_block_name),
        )
        inputs = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        self.num_input_channels = (inputs + [0] * 5)[:5]
        self.out_channels = out_channels
        self.padding_mode = padding_mode
        f, c, pad = list(filters), self.num_input_channels, padding_mode
        self.start = GatedBlock(c[0], f[0], padding_mode=pad)
        for k in range(1, 5):
            setattr(self, f"down{k}", DownsampleBlock(f[k - 1], f[k] - c[k], padding_mode=pad))
        self.center = GatedBlock(f[4], f[4], padding_mode=pad)
        widths = [out_channels * m for m in (16, 8, 4, 2)]  # up4, up3, up2, up1
        previous = f[4]
        for k, width in zip((4, 3, 2, 1), widths, strict=True):
            block = UpsampleBlock(previous, f[k - 1], width, padding_mode=pad, use_skip=use_skip)
            setattr(self, f"up{k}", block)
            previous = width
        self.final = nn.Conv2d(out_channels * 2, out_channels, 1)
        with torch.no_grad():
            self.final.bias.fill_(0.5)
            if out_channels == 4:
                self.final.bias[3] = 0.0

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Raster pyramid -> image.

        Args:
            inputs: one (N, in_channels[k], H_k, W_k) tensor per declared scale, finest first
                (the rasterizer's output; H_k = int(H / 2^k) for NPBG++'s scales). A tensor
                alone is the one-scale case.

        Returns:
            (N, out_channels, H, W) at the finest input's size, no activation.
        """
        inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        declared = sum(1 for c in self.num_input_channels if c)
        if len(inputs) != declared:
            raise ValueError(f"refiner: got {len(inputs)} input scales but declared {declared}")
        self._check_size(*inputs[0].shape[-2:])
        skips = [self.start(inputs[0])]
        for k in range(1, 5):
            x = getattr(self, f"down{k}")(skips[-1])
            if self.num_input_channels[k]:
                x = torch.cat([x, inputs[k]], 1)
            skips.append(x)
        x = self.center(skips.pop())
        for k in (4, 3, 2, 1):
            x = getattr(self, f"up{k}")(x, skips[k - 1])
        return self.final(x)

    def _check_size(self, height: int, width: int) -> None:
        """ConfigError for images whose coarsest level (4 halvings) cannot be reflect-padded."""
        if self.padding_mode == "reflect" and min(height, width) < MIN_REFLECT_SIZE:
            raise ConfigError(
                f"refiner: a {height}x{width} px image is too small: its 4 halvings leave "
                f"{height // 16}x{width // 16} px, and reflect padding needs 2; render or crop "
                f"at least {MIN_REFLECT_SIZE} px (dataloader image_size)"
            )


class IdentityRefiner(nn.Module):
    """npbgpp_rgb's refiner: the first 3 channels of the (finest) raster; no parameters."""

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(N, C >= 3, H, W) or a list of such (the first is used) -> (N, 3, H, W)."""
        if not isinstance(x, torch.Tensor):
            x = x[0]
        return x[:, :3, :, :]


def _check_supported(filters, upsample_mode, last_act, block_names) -> None:
    if len(filters) != 5:
        raise ValueError(f"refiner: filters must list 5 widths, got {list(filters)}")
    if upsample_mode != "bilinear" or last_act != "" or set(block_names) != {"gated"}:
        raise ValueError(
            "refiner: only upsample_mode='bilinear', last_act='' and gated blocks are "
            f"supported (the released configs), got upsample_mode={upsample_mode!r}, "
            f"last_act={last_act!r}, blocks={list(block_names)}"
        )
