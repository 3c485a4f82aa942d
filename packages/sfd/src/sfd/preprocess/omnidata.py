"""Omnidata's DPT-Hybrid normal network (``vitb_rn50_384``, ``omnidata_dpt_normal_v2.ckpt``).

The encoder is timm's R50+ViT-B/16 hybrid (``vit_base_r50_s16_384``, called
``vit_base_resnet50_384`` in the timm 0.4 the original used; same module tree, same names). The
parameter names are the original's (``pretrained.model.*``, ``pretrained.act_postprocess{3,4}.*``,
``scratch.*``), so the authors' checkpoint loads strictly once its Lightning ``model.`` prefix is
removed. Two differences in form, not in arithmetic: the four DPT readouts (ResNet stages 0 and 1,
ViT blocks 8 and 11) are returned by :meth:`DPTHybridNormal.readouts` instead of being caught by
forward hooks in a global dict, and the original's ``act_postprocess1/2`` (identities, no
parameters) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from geomkit.checkpoint import check_state_dict, load_checkpoint, load_state_dict_strict
from geomkit.errors import CheckpointError

TIMM_NAME = "vit_base_r50_s16_384"
VIT_DIM = 768
FEATURES = 256
STAGE_CHANNELS = (256, 512, VIT_DIM, VIT_DIM)  # channels of the four readouts
HOOK_BLOCKS = (8, 11)  # ViT blocks read out for DPT layers 3 and 4
STRIDE = 32  # input sides must be multiples: the decoder adds maps of strides 4 to 32
LIGHTNING_PREFIX = "model."


class ProjectReadout(nn.Module):
    """DPT's "project" readout: every patch token joined with the class token, Linear + GELU."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, C) tokens, class token first -> (B, N, C)."""
        patches = tokens[:, 1:]
        readout = tokens[:, :1].expand_as(patches)
        return self.project(torch.cat([patches, readout], dim=-1))


def _reassemble(*tail: nn.Module) -> nn.Sequential:
    """``act_postprocess3/4``: readout (index 0), then convolutions from index 3 on.

    Indices 1-2 were the original's token-to-grid reshape for a fixed 384 px input; the reshape
    happens in :meth:`DPTHybridNormal.readouts` for any size, and two identities keep the
    checkpoint's indices.
    """
    return nn.Sequential(
        ProjectReadout(VIT_DIM), nn.Identity(), nn.Identity(), nn.Conv2d(VIT_DIM, VIT_DIM, 1), *tail
    )


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))), 3x3 convolutions with bias, no normalisation."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT's feature fusion: add the refined skip map, refine, upsample x2, 1x1 projection.

    ``resConfUnit1`` exists (and is in the checkpoint) even where no skip map is given.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _output_head(features: int, channels: int) -> nn.Sequential:
    """``scratch.output_conv`` of DPTDepthModel (non_negative: ReLU at the end)."""
    return nn.Sequential(
        nn.Conv2d(features, features // 2, 3, padding=1),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(features // 2, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, channels, 1),
        nn.ReLU(),
        nn.Identity(),
    )


class DPTHybridNormal(nn.Module):
    """Omnidata's DPTDepthModel(backbone="vitb_rn50_384", num_channels=3), readout "project".

    Input (B, 3, H, W) RGB in [0, 1] (Omnidata's normal model takes no normalisation), H and W
    multiples of 32; output (B, 3, H, W) >= 0, which the caller clamps to [0, 1].
    """

    def __init__(self, num_channels: int = 3) -> None:
        super().__init__()
        self.pretrained = nn.Module()
        self.pretrained.model = timm.create_model(TIMM_NAME, pretrained=False)
        self.pretrained.act_postprocess3 = _reassemble()
        self.pretrained.act_postprocess4 = _reassemble(
            nn.Conv2d(VIT_DIM, VIT_DIM, 3, stride=2, padding=1)
        )
        self.scratch = nn.Module()
        for i, channels in enumerate(STAGE_CHANNELS, 1):
            conv = nn.Conv2d(channels, FEATURES, 3, padding=1, bias=False)
            self.scratch.add_module(f"layer{i}_rn", conv)
        for i in range(1, 5):
            self.scratch.add_module(f"refinenet{i}", FusionBlock(FEATURES))
        self.scratch.output_conv = _output_head(FEATURES, num_channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        maps = self.readouts(image)
        s = self.scratch
        layers = [s.layer1_rn, s.layer2_rn, s.layer3_rn, s.layer4_rn]
        rn1, rn2, rn3, rn4 = (conv(m) for conv, m in zip(layers, maps, strict=True))
        path = s.refinenet4(rn4)
        path = s.refinenet3(path, rn3)
        path = s.refinenet2(path, rn2)
        path = s.refinenet1(path, rn1)
        return s.output_conv(path)

    def readouts(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The four DPT inputs: ResNet stages 0 and 1 (strides 4, 8), ViT blocks 8 and 11
        reassembled to strides 16 and 32."""
        _, _, h, w = image.shape
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"DPT input sides must be multiples of {STRIDE}, got {h}x{w}")
        vit = self.pretrained.model
        backbone = vit.patch_embed.backbone
        layer_1 = backbone.stages[0](backbone.stem(image))
        layer_2 = backbone.stages[1](layer_1)
        grid = vit.patch_embed.proj(backbone.norm(backbone.stages[2](layer_2)))
        tokens = torch.cat(
            [vit.cls_token.expand(len(grid), -1, -1), grid.flatten(2).transpose(1, 2)], dim=1
        )
        tokens = tokens + self._pos_embed(grid.shape[-2:])
        hooked = []
        for i, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if i in HOOK_BLOCKS:
                hooked.append(tokens)
        post = (self.pretrained.act_postprocess3, self.pretrained.act_postprocess4)
        deep = [_tokens_to_map(p, t, grid.shape[-2:]) for p, t in zip(post, hooked, strict=True)]
        return [layer_1, layer_2, *deep]

    def _pos_embed(self, grid_size: torch.Size) -> torch.Tensor:
        """The position embedding resized to the token grid (bilinear, as the original)."""
        pos = self.pretrained.model.pos_embed
        cls_pos, grid_pos = pos[:, :1], pos[:, 1:]
        side = int(round(grid_pos.shape[1] ** 0.5))
        grid_pos = grid_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if tuple(grid_size) != (side, side):
            grid_pos = F.interpolate(grid_pos, size=tuple(grid_size), mode="bilinear")
        return torch.cat([cls_pos, grid_pos.flatten(2).transpose(1, 2)], dim=1)


def _tokens_to_map(post: nn.Sequential, tokens: torch.Tensor, grid_size) -> torch.Tensor:
    """Readout, then (B, N, C) -> (B, C, h, w), then the convolutions of ``act_postprocess``."""
    patches = post[0](tokens)
    grid = patches.transpose(1, 2).reshape(len(tokens), -1, *grid_size)
    return post[3:](grid)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's weights from ``path``: a Lightning checkpoint (``state_dict`` with keys
    ``model.<name>``, as Omnidata ships) or a bare state dict, as the original accepts.

    Raises:
        CheckpointError: missing or unreadable file, no state dict, a key without ``model.``.
    """
    if not Path(path).is_file():
        raise CheckpointError(
            f"Omnidata checkpoint {path} not found; download omnidata_dpt_normal_v2.ckpt "
            "(Omnidata's DPT-Hybrid normal weights) and give its path"
        )
    raw = load_checkpoint(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a state dict")
    if "state_dict" not in raw:
        return dict(raw)
    state = raw["state_dict"]
    stray = [k for k in state if not k.startswith(LIGHTNING_PREFIX)]
    if stray:
        raise CheckpointError(
            f"{path}: state_dict key {stray[0]!r} lacks the {LIGHTNING_PREFIX!r} prefix of "
            "Omnidata's Lightning checkpoints; pass omnidata_dpt_normal_v2.ckpt"
        )
    return {k.removeprefix(LIGHTNING_PREFIX): v for k, v in state.items()}


def validate_checkpoint(path: str | Path) -> None:
    """CheckpointError unless ``path`` holds exactly the network's keys and shapes (checked on
    a meta-device model, so nothing is allocated)."""
    with torch.device("meta"):
        model = DPTHybridNormal()
    check_state_dict(model, read_state_dict(path), source=str(path))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DPTHybridNormal:
    """The network with the weights of ``path`` (strict), in eval mode on ``device``.

    Built on the meta device first: every parameter comes from the checkpoint, so timm's random
    initialisation would be wasted work.
    """
    state = read_state_dict(path)
    with torch.device("meta"):
        model = DPTHybridNormal()
    model = model.to_empty(device=device)
    load_state_dict_strict(model, state, source=str(path))
    return model.eval()
