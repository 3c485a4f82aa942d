"""LPIPS (Zhang et al. 2018): the ``lpips`` package, version 0.1, loaded without a download.

``lpips.LPIPS`` fetches its ImageNet backbone through torchvision at construction; here the
backbone is built untrained and its weights come from torchvision's file on this machine
(:func:`geomkit.weights.torchvision_weight_file`: ``$GEOMKIT_WEIGHTS`` or torch hub's cache).
The linear heads are the ones shipped in the lpips wheel (``lpips/weights/v0.1/{net}.pth``).
Both load strictly with ``weights_only=True``.

Distance for images x, y (``spatial=False``)::

    f_k = unit_normalise_over_channels(tap_k(backbone(scale(x))))       # same for y
    d(x, y) = sum_k spatial_mean(conv1x1_k((f_k(x) - f_k(y)) ** 2))
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import lpips
import torch
from torch import nn
from torchvision.models import AlexNet_Weights, VGG16_Weights

from geomkit.checkpoint import load_checkpoint, load_state_dict_strict
from geomkit.errors import CheckpointError, ConfigError, InputError
from geomkit.weights import torchvision_weight_file

# Per net: torchvision's ImageNet weights, and the smallest image side reaching the last tap.
_NETS = {
    "alex": {"weights": AlexNet_Weights.IMAGENET1K_V1, "min_side": 31},
    "vgg": {"weights": VGG16_Weights.IMAGENET1K_V1, "min_side": 16},
}


def shipped_heads(net: str) -> Path:
    """The lpips wheel's v0.1 linear-head file for ``net``."""
    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"


class LPIPS(lpips.LPIPS):
    """Learned perceptual distance, ``lpips.LPIPS(net=net, version="0.1")``, frozen.

    Weights never train and the module stays in eval mode (``train()`` is ignored), so dropout
    in the heads never fires, also inside a model being trained. Gradients flow to the images.

    Args:
        net: "alex" (the lpips default, for evaluation) or "vgg" (closer to a perceptual loss).
        lin_path: linear heads with the lpips keys (``lin{k}.model.1.weight``); None: the
            file shipped in the lpips wheel.
        backbone_path: torchvision's ImageNet file (``alexnet-owt-7be5be79.pth`` or
            ``vgg16-397923af.pth``); None: that file in the weight folders. Its ``features.*``
            keys must match exactly (``classifier.*`` is ignored).

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
        if net not in _NETS:
            raise ConfigError(f"unknown LPIPS net {net!r}; choose one of {sorted(_NETS)}")
        backbone_file = torchvision_weight_file(_NETS[net]["weights"], backbone_path)
        lin_file = Path(lin_path).expanduser() if lin_path is not None else shipped_heads(net)
        if not lin_file.is_file():
            raise CheckpointError(f"weight file {lin_file} not found; it is the LPIPS {net} heads")
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained`
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(
                pretrained=False, net=net, version="0.1", pnet_rand=True, verbose=False
            )
        self.net_name = net
        features = {
            key: value
            for key, value in _plain_state_dict(backbone_file).items()
            if key.startswith("features.")
        }
        load_state_dict_strict(
            _torchvision_view(self.net), features, source=f"weight file {backbone_file}"
        )
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
        return super().forward(pred, target, normalize=normalize).reshape(pred.shape[0])


def _torchvision_view(backbone: nn.Module) -> nn.Module:
    """lpips' tap slices seen as torchvision's ``features`` (each slice holds torchvision's
    layers under their original index), so a strict load names the file's own keys."""
    features = nn.Module()
    for name, layer in backbone.named_modules():
        if name.count(".") == 1:
            features.add_module(name.split(".")[1], layer)
    view = nn.Module()
    view.add_module("features", features)
    return view


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
    """The ``lin0`` .. ``lin4`` heads of ``model`` under their own names (the weight file's;
    lpips also lists them as ``lins.k``, which its files do not hold)."""
    heads = nn.Module()
    for k in range(model.L):
        heads.add_module(f"lin{k}", getattr(model, f"lin{k}"))
    return heads


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
