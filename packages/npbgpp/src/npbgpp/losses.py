"""NPBG++ / NPBG training losses.

Per training item (render ``R`` and target ``T``, (N, 3, H, W) in [0, 1]; ``empty`` pixels
of the render, outside the warped target, are replaced by the target first)::

    NPBG++:   1 vgg(R, T) + 2500 L1(R/4, T/4) + 1 dimred + 1000 rgb_reg
    NPBG:     1 vgg(R, T) + 2500 L1(R/4, T/4) + 1 dimred
    coefficients_ft:  1e-7 vgg + 2.5e-4 L1(R, T) + 1e-4 L1(R/2, T/2) + 4e-5 L1(R/4, T/4)
                      + 1e-7 dimred

``L1(R/K, T/K)`` is the mean L1 after a bilinear downscale by K (``l1_dK_loss``); dimred is
:func:`npbgpp.models.rgb_converter.dimred_loss`; rgb_reg is the mean L1 between the refiner's
output on :func:`rgb_reg_pyramid` of the target's own features and the target.

The VGG loss needs the Caffe VGG-19 weights (``vgg19-d01eb7cb.pth``, a torchvision-layout
state dict) on this machine; :func:`build_perceptual_loss` with ``"l1_ssim"`` selects an L1+SSIM
stand-in instead, and says so in the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from geomkit.checkpoint import load_checkpoint, load_state_dict_strict
from geomkit.errors import CheckpointError, ConfigError
from geomkit.metrics import ssim
from geomkit.ops.splat import NPBGPP_SCALES
from geomkit.weights import find_weight_file

__all__ = [
    "COEFFICIENTS_FT_LOSS_FACTORS",
    "NPBGPP_LOSS_FACTORS",
    "RGB_REG_FACTOR",
    "L1SSIMLoss",
    "VGGLoss",
    "build_perceptual_loss",
    "down_scale",
    "fill_empty",
    "image_losses",
    "l1_downscaled",
    "l1_pyramid",
    "loss_factors",
    "npbgpp_total_loss",
    "rgb_reg_loss",
    "rgb_reg_pyramid",
    "weighted_sum",
]

log = logging.getLogger(__name__)

VGG19_CAFFE_FILE = "vgg19-d01eb7cb.pth"
VGG19_CAFFE_SOURCE = (
    "the Caffe VGG-19 weights in torchvision layout that NPBG++ uses "
    "(https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth)"
)
CAFFE_MEAN = (103.939, 116.779, 123.680)  # per input channel, in [0, 255]; no RGB->BGR swap
VGG_LAYERS = (1, 3, 6, 8, 11, 13, 15, 17, 20, 22, 24, 26, 29)  # relu1_1 ... relu5_1
_VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M")
_VGG19_CONFIG += (512, 512, 512, 512, "M", 512, 512, 512, 512, "M")

# The defaults of NPBG++'s systems (base.py); a config's system.loss_factors updates them.
NPBGPP_LOSS_FACTORS = {
    "m_reg_loss": 10.0,
    "style_loss": 0.0,
    "vgg_loss": 1.0,
    "mask_loss": 1000.0,
    "l1_d4_loss": 2500.0,
    "dimred_loss": 1.0,
}
# configs/system/coefficients_ft.yaml's loss_factors.
COEFFICIENTS_FT_LOSS_FACTORS = {
    "vgg_loss": 1e-7,
    "l1_d1_loss": 0.00025,
    "l1_d2_loss": 0.00010,
    "l1_d4_loss": 0.00004,
    "mask_loss": 0.00010,
    "dimred_loss": 1e-7,
}
RGB_REG_FACTOR = 1000.0  # NPBG++ only, fixed in its code


class VGGLoss(nn.Module):
    """NPBG++'s perceptual loss: VGG-19 features (Caffe weights), max pools replaced by
    average pools; sum over ``layers`` of the mean L1 between the two images' activations.

    Input normalisation ``(x - CAFFE_MEAN / 255) / (1 / 255)``, applied to the RGB channels in
    order (NPBG++ does not swap to BGR). The weights are frozen; gradients flow to the images.

    Args:
        weights_path: the weight file; None: ``vgg19-d01eb7cb.pth`` in geomkit's weight folders
            (:func:`geomkit.weights.find_weight_file`). Its ``features.*`` keys must be
            torchvision's VGG-19 ones, exactly; other keys (``classifier.*``) are ignored.
        layers: indices into the feature stack whose outputs are compared.

    Raises:
        CheckpointError: the file is missing, unreadable, or its features do not match.
    """

    def __init__(
        self, weights_path: str | os.PathLike | None = None, layers: Sequence[int] = VGG_LAYERS
    ):
        super().__init__()
        path = find_weight_file(weights_path, VGG19_CAFFE_FILE, VGG19_CAFFE_SOURCE)
        features = _vgg19_features()
        view = nn.Module()  # features under their torchvision keys: errors name the file's keys
        view.add_module("features", features)
        load_state_dict_strict(view, _features_state(path), source=f"weight file {path}")
        self.layers = tuple(int(i) for i in layers)
        kept = [
            nn.AvgPool2d(2, 2) if isinstance(layer, nn.MaxPool2d) else layer
            for layer in list(features.children())[: max(self.layers) + 1]
        ]
        self.vgg19 = nn.Sequential(*kept).requires_grad_(False).eval()
        mean = torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1) / 255.0
        self.register_buffer("mean_", mean, persistent=False)
        self.register_buffer("std_", torch.full((1, 3, 1, 1), 1.0 / 255), persistent=False)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """() loss for (N, 3, H, W) images in [0, 1] (the batch mean inside each L1)."""
        x = (input - self.mean_) / self.std_
        y = (target - self.mean_) / self.std_
        loss = input.new_zeros(())
        for index, layer in enumerate(self.vgg19):
            x, y = layer(x), layer(y)
            if index in self.layers:
                loss = loss + F.l1_loss(x, y)
        return loss


class L1SSIMLoss(nn.Module):
    """Stand-in for the VGG loss when its weights are unavailable: L1 + (1 - SSIM).

    Mean absolute error plus one minus the batch mean of geomkit's SSIM (Gaussian window 11,
    sigma 1.5, data range 1). NOT NPBG++'s loss: results are not comparable to the paper's.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """() loss for (N, 3, H, W) images in [0, 1], H and W >= 11."""
        structural = ssim(input, target, data_range=1.0).mean().to(input.dtype)
        return F.l1_loss(input, target) + (1.0 - structural)


def build_perceptual_loss(
    kind: str = "vgg", weights_path: str | os.PathLike | None = None
) -> nn.Module:
    """The perceptual term chosen by a config value.

    Args:
        kind: "vgg" (NPBG++'s :class:`VGGLoss`) or "l1_ssim" (the :class:`L1SSIMLoss` fallback,
            logged as such).
        weights_path: VGG weight file, see :class:`VGGLoss`.

    Raises:
        ConfigError: unknown kind.
        CheckpointError: "vgg" without its weight file.
    """
    if kind == "vgg":
        return VGGLoss(weights_path)
    if kind == "l1_ssim":
        log.warning(
            "perceptual loss: the L1+SSIM fallback, NOT NPBG++'s VGG-19 loss; renders and "
            "metrics are not comparable to the paper's (put %s in a weight folder and use "
            "'vgg' for those)",
            VGG19_CAFFE_FILE,
        )
        return L1SSIMLoss()
    raise ConfigError(f"unknown perceptual loss {kind!r}; choose 'vgg' or 'l1_ssim'")


def loss_factors(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """NPBG++'s default weights updated by a config's ``system.loss_factors`` (may be None)."""
    factors = dict(NPBGPP_LOSS_FACTORS)
    for key, value in (overrides or {}).items():
        try:
            factors[str(key)] = float(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"system.loss_factors.{key} must be a number, got {value!r}") from err
    return factors


def down_scale(image: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, int(H / factor), int(W / factor)), bilinear, align_corners=False."""
    h, w = image.shape[-2:]
    size = (int(h / factor), int(w / factor))
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def l1_downscaled(pred: torch.Tensor, target: torch.Tensor, factor: int) -> torch.Tensor:
    """() mean L1 between both images downscaled by ``factor`` (:func:`down_scale`)."""
    return F.l1_loss(down_scale(pred, factor), down_scale(target, factor))


def l1_pyramid(
    pred: torch.Tensor, target: torch.Tensor, factors: Mapping[str, float]
) -> dict[str, torch.Tensor]:
    """``{"l1_dK_loss": l1_downscaled(pred, target, K)}`` for every such key in ``factors``."""
    losses = {}
    for key in factors:
        if key.startswith("l1_d") and key.endswith("_loss"):
            losses[key] = l1_downscaled(pred, target, int(key[len("l1_d") : -len("_loss")]))
    return losses


def fill_empty(rendered: torch.Tensor, target: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """The render with its ``empty`` pixels ((N, 1, H, W) bool) taken from the target."""
    return torch.where(empty, target, rendered)


def image_losses(
    rendered: torch.Tensor,
    target: torch.Tensor,
    empty: torch.Tensor | None,
    perceptual: nn.Module,
    factors: Mapping[str, float],
) -> dict[str, torch.Tensor]:
    """Unweighted ``vgg_loss`` and ``l1_dK_loss`` terms, empty pixels filled from the target.

    Args:
        rendered: (N, 3, H, W) refiner output.
        target: (N, 3, H, W) target image.
        empty: (N, 1, H, W) bool pixels outside the target's valid area, or None.
        perceptual: :func:`build_perceptual_loss`'s module.
        factors: :func:`loss_factors` (which l1_dK terms to compute).
    """
    if empty is not None:
        rendered = fill_empty(rendered, target, empty)
    return {"vgg_loss": perceptual(rendered, target), **l1_pyramid(rendered, target, factors)}


def weighted_sum(losses: Mapping[str, torch.Tensor], factors: Mapping[str, float]) -> torch.Tensor:
    """sum_k factors[k] * losses[k] (every loss needs a factor)."""
    missing = [key for key in losses if key not in factors]
    if missing:
        raise ConfigError(f"no loss factor for {', '.join(missing)}")
    return sum(factors[key] * value for key, value in losses.items())


def npbgpp_total_loss(
    losses: Mapping[str, torch.Tensor],
    factors: Mapping[str, float],
    rgb_reg: torch.Tensor | None = None,
) -> torch.Tensor:
    """NPBG++'s objective: :func:`weighted_sum` + 1000 rgb_reg (None for NPBG/coefficients_ft)."""
    total = weighted_sum(losses, factors)
    return total if rgb_reg is None else total + RGB_REG_FACTOR * rgb_reg


def rgb_reg_pyramid(
    features: torch.Tensor,
    bg_feature: torch.Tensor,
    scales: Sequence[float] = NPBGPP_SCALES,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """A raster-like pyramid of a dense feature map (NPBG++'s ``get_multi_scale_img``).

    Per scale s: nearest resize to (int(s * H), int(s * W)); each pixel kept with probability
    1 - s / 2 (and where ``mask``); dropped pixels get ``bg_feature``; a mask channel (1 kept,
    0 dropped) appended. Detached: the pyramid trains the refiner alone.

    Args:
        features: (N, C, H, W) e.g. the feature extractor's output on the target image.
        bg_feature: (1, C, 1, 1) the rasterizer's background.
        scales: the rasterizer's scales.
        mask: (N, 1, H, W) bool foreground, or None.
        generator: for the dropout draws (torch.rand on the features' device).

    Returns:
        One (N, C + 1, int(s * H), int(s * W)) tensor per scale.
    """
    features = features.detach()
    n, _, h, w = features.shape
    background = bg_feature.detach().to(features.dtype)
    pyramid = []
    for scale in scales:
        size = (int(scale * h), int(scale * w))
        scaled = F.interpolate(features, size=size, mode="nearest")
        draws = torch.rand(n, 1, *size, device=features.device, generator=generator)
        keep = draws > scale / 2
        if mask is not None:
            keep = keep & F.interpolate(mask.to(features.dtype), size=size, mode="nearest").bool()
        scaled = torch.where(keep, scaled, background)
        pyramid.append(torch.cat((scaled, keep.to(features.dtype)), dim=1))
    return pyramid


def rgb_reg_loss(refined: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """() mean L1 between the refiner's first 3 channels on the pyramid and the target."""
    return F.l1_loss(refined[:, :3].float(), target)


def _vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` layout (indices 0..36), untrained."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


def _features_state(path) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a VGG-19 state dict (``classifier.*`` left out)."""
    state = load_checkpoint(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"weight file {path} is not a state dict (name -> tensor)")
    return {
        key: value
        for key, value in state.items()
        if isinstance(key, str) and key.startswith("features.")
    }
