"""LPIPS (Zhang et al. 2018), version 0.1 of the ``lpips`` package, without torchvision.

The backbones are written here with torchvision's module layout (``features.N.weight``), so
torchvision's ImageNet files load strictly; the linear heads use the ``lpips`` package's key
names (``lin{k}.model.1.weight``), so its ``weights/v0.1/{alex,vgg}.pth`` files load strictly.
Nothing is downloaded: the files are looked up in the weights folder
(:func:`geomkit.weights.weights_dir`) or passed explicitly, and a missing one is a
:class:`~geomkit.errors.CheckpointError` that says where it comes from.

Distance for images x, y (``lpips.LPIPS(net=..., version="0.1")(x, y)``, ``spatial=False``)::

    f_k = unit_normalise_over_channels(tap_k(backbone(scale(x))))       # same for y
    d(x, y) = sum_k spatial_mean(conv1x1_k((f_k(x) - f_k(y)) ** 2))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from geomkit.checkpoint import load_checkpoint, load_state_dict_strict
from geomkit.errors import CheckpointError, ConfigError, InputError
from geomkit.weights import find_weight_file

# The ReLU outputs LPIPS compares, as indices into torchvision's `features` (lpips package,
# pretrained_networks.py: alexnet slices end at 2, 5, 8, 10, 12; vgg16 at 4, 9, 16, 23, 30).
_ALEX_TAPS = (1, 4, 7, 9, 11)  # relu1 .. relu5
_VGG16_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_ALEX_TAP_CHANNELS = (64, 192, 384, 256, 256)
_VGG16_TAP_CHANNELS = (64, 128, 256, 512, 512)
# torchvision's vgg16 configuration "D": 3x3 conv output channels per stage; each stage ends in
# a 2x2 max-pool.
_VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

# Per-net facts: taps, their channels, the smallest image side that reaches the last tap, and
# the default weight file names.
_NETS = {
    "alex": {
        "taps": _ALEX_TAPS,
        "channels": _ALEX_TAP_CHANNELS,
        "min_side": 31,
        "lin_file": "lpips_v0.1_alex.pth",
        "backbone_file": "alexnet-owt-7be5be79.pth",
    },
    "vgg": {
        "taps": _VGG16_TAPS,
        "channels": _VGG16_TAP_CHANNELS,
        "min_side": 16,
        "lin_file": "lpips_v0.1_vgg.pth",
        "backbone_file": "vgg16-397923af.pth",
    },
}
_LPIPS_SOURCE = (
    "lpips/weights/v0.1/{net}.pth of the lpips package "
    "(pip install lpips, or github.com/richzhang/PerceptualSimilarity)"
)
_TORCHVISION_SOURCE = (
    "torchvision's model-zoo file https://download.pytorch.org/models/{name} "
    "(once torchvision has fetched it, in ~/.cache/torch/hub/checkpoints/)"
)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` layout (13 modules; convs at 0, 3, 6, 8, 10).

    Returns:
        Randomly initialised Sequential taking (B, 3, H, W) float images.
    """
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` layout (31 modules, no batch norm).

    Returns:
        Randomly initialised Sequential taking (B, 3, H, W) float images.
    """
    layers: list[nn.Module] = []
    in_channels = 3
    for stage in _VGG16_STAGES:
        for out_channels in stage:
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class TapBackbone(nn.Module):
    """A torchvision-layout ``features`` Sequential that returns the activations at ``taps``."""

    def __init__(self, features: nn.Sequential, taps: tuple[int, ...]):
        super().__init__()
        self.features = features
        self.taps = taps

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (B, 3, H, W). Returns: one (B, C_k, H_k, W_k) activation per tap."""
        activations = []
        hidden = images
        for index, layer in enumerate(self.features[: self.taps[-1] + 1]):
            hidden = layer(hidden)
            if index in self.taps:
                activations.append(hidden)
        return activations


class ScalingLayer(nn.Module):
    """LPIPS v0.1 input normalisation: ``(x - shift) / scale`` per RGB channel, x in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """LPIPS linear head of one tap: dropout then a bias-free 1x1 conv to one channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, squared_diff: torch.Tensor) -> torch.Tensor:
        return self.model(squared_diff)


class LPIPS(nn.Module):
    """Learned perceptual distance, the ``lpips`` package v0.1 (``spatial=False``), frozen.

    Submodules are ``scaling_layer``, ``net`` (its ``features`` has torchvision's keys) and
    ``lin0`` .. ``lin4`` (the lpips weight file's keys). Weights never train and the module
    stays in eval mode (``train()`` is ignored) so dropout in the heads never fires, also
    when LPIPS sits inside a model being trained. Gradients flow to the input images.

    Args:
        net: "alex" (the lpips default, for evaluation) or "vgg" (closer to a perceptual loss).
        lin_path: the lpips package's ``weights/v0.1/{net}.pth``; None: ``lpips_v0.1_{net}.pth``
            in :func:`geomkit.weights.weights_dir`.
        backbone_path: torchvision's ImageNet file; None: ``alexnet-owt-7be5be79.pth`` or
            ``vgg16-397923af.pth`` in the weights folder. Only its ``features.*`` keys
            are used (``classifier.*`` is ignored); they must match exactly.

    Raises:
        ConfigError: unknown ``net``.
        CheckpointError: a weight file is missing, unreadable, or its keys or shapes differ.
    """

    def __init__(
        self,
        net: str = "alex",
        lin_path: str | os.PathLike | None = None,
        backbone_path: str | os.PathLike | None = None,
    ):
        super().__init__()
        if net not in _NETS:
            raise ConfigError(f"unknown LPIPS net {net!r}; choose one of {sorted(_NETS)}")
        facts = _NETS[net]
        self.net_name = net
        self.scaling_layer = ScalingLayer()
        features = alexnet_features() if net == "alex" else vgg16_features()
        self.net = TapBackbone(features, facts["taps"])
        for k, channels in enumerate(facts["channels"]):
            setattr(self, f"lin{k}", NetLinLayer(channels))

        backbone_file = find_weight_file(
            backbone_path,
            facts["backbone_file"],
            f"the LPIPS {net} backbone, " + _TORCHVISION_SOURCE.format(name=facts["backbone_file"]),
        )
        lin_file = find_weight_file(
            lin_path, facts["lin_file"], f"the LPIPS {net} heads, " + _LPIPS_SOURCE.format(net=net)
        )
        backbone_state = _plain_state_dict(backbone_file)
        features_state = {k: v for k, v in backbone_state.items() if k.startswith("features.")}
        load_state_dict_strict(self.net, features_state, source=f"weight file {backbone_file}")
        load_state_dict_strict(
            _linear_heads(self), _plain_state_dict(lin_file), source=f"weight file {lin_file}"
        )

        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LPIPS:
        """Ignored: LPIPS is a fixed metric and stays in eval mode."""
        return self

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, normalize: bool = False
    ) -> torch.Tensor:
        """LPIPS distance per image pair (0 for identical images, symmetric).

        Args:
            pred: (B, 3, H, W) float RGB in [-1, 1] (or [0, 1] with ``normalize=True``), on the
                module's device and dtype; H, W >= 31 (alex) or >= 16 (vgg) to reach every tap.
            target: same shape as ``pred``.
            normalize: map inputs from [0, 1] to [-1, 1] first (``2 x - 1``), as lpips.

        Returns:
            (B,) distances, dtype of the inputs; lower means more similar.
        """
        _check_image_pair(pred, target, _NETS[self.net_name]["min_side"], self.net_name)
        if normalize:
            pred = 2 * pred - 1
            target = 2 * target - 1
        taps_pred = self.net(self.scaling_layer(pred))
        taps_target = self.net(self.scaling_layer(target))
        distance = torch.zeros(pred.shape[0], dtype=pred.dtype, device=pred.device)
        for k, (tap_pred, tap_target) in enumerate(zip(taps_pred, taps_target, strict=True)):
            squared_diff = (_unit_normalise(tap_pred) - _unit_normalise(tap_target)).square()
            distance = distance + getattr(self, f"lin{k}")(squared_diff).mean(dim=(1, 2, 3))
        return distance


def _check_image_pair(pred: torch.Tensor, target: torch.Tensor, min_side: int, net: str) -> None:
    """InputError unless both are (B, 3, H, W) of one shape with H, W >= ``min_side``."""
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
        raise InputError(
            f"LPIPS needs pred and target as (B, 3, H, W) RGB of one shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if min(pred.shape[-2:]) < min_side:
        alternative = " or use net='vgg' (16x16 and up)" if net == "alex" else ""
        raise InputError(
            f"LPIPS {net} needs images of at least {min_side}x{min_side} pixels, got "
            f"{pred.shape[-2]}x{pred.shape[-1]}; upsample them{alternative}"
        )


def _linear_heads(model: LPIPS) -> nn.Module:
    """The ``lin0`` .. ``lin4`` heads of ``model`` under their own names (the weight file's)."""
    heads = nn.Module()
    for k in range(len(model.net.taps)):
        heads.add_module(f"lin{k}", getattr(model, f"lin{k}"))
    return heads


def _unit_normalise(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """lpips ``normalize_tensor``: divide by the L2 norm over channels (dim 1) plus ``eps``."""
    norm = features.square().sum(dim=1, keepdim=True).sqrt()
    return features / (norm + eps)


def _plain_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """Read a plain state dict (name -> tensor); CheckpointError if the file is anything else."""
    state = load_checkpoint(path)
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"weight file {path} is not a plain state dict (name -> tensor); pass the "
            "original file, not a training checkpoint that wraps it"
        )
    return state
