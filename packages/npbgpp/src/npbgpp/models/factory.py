"""Builders named by the ``_target_`` keys of ``configs/system/*.yaml``.

Each takes the authors' keys for that component (``system.feature_extractor``, ``aggregator``,
``rasterizer``, ``refiner``) and returns the module; a setting no released configuration uses is
a clear error rather than being ignored. :func:`build` instantiates a config node through Hydra,
so a user's own class path works as in the original.
"""

from __future__ import annotations

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from geomkit.errors import ConfigError


def build(node: DictConfig, **extra) -> nn.Module:
    """Instantiate a component from its config node (``_target_`` plus keyword arguments)."""
    try:
        return instantiate(node, **extra, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__ or error
        raise ConfigError(f"configuration: {node.get('_target_')}: {cause}") from None


def unet(
    encoder_name: str = "spnasnet_100",
    out_channels: int = 8,
    decoder_channels=(256, 128, 64, 32, 16),
    decoder_layers=(1, 1, 1, 1, 1),
    act_layer: str = "torch.nn.LeakyReLU",
    norm_layer: str = "torch.nn.Identity",
    upsample: str = "bilinear",
    decoder_kernel_size: int = 3,
    pretrained_encoder: bool = True,
    encoder_weights_path: str | None = None,
    skip_rgb: bool = True,
    append_rgb: bool = False,
    eval_mode: bool = True,
) -> nn.Module:
    """NPBG++'s feature extractor (``system.feature_extractor``)."""
    from npbgpp.models.unet import Unet

    expected = {
        "decoder_layers": (list(decoder_layers), [1] * 5),
        "act_layer": (act_layer, "torch.nn.LeakyReLU"),
        "norm_layer": (norm_layer, "torch.nn.Identity"),
        "upsample": (upsample, "bilinear"),
        "decoder_kernel_size": (decoder_kernel_size, 3),
        "append_rgb": (append_rgb, False),
    }
    _require_released(expected, "feature_extractor")
    return Unet(
        encoder_name=encoder_name,
        out_channels=out_channels,
        decoder_channels=tuple(decoder_channels),
        skip_rgb=skip_rgb,
        eval_mode=eval_mode,
        encoder_weights=encoder_weights_path if pretrained_encoder else None,
        pretrained=pretrained_encoder,
    )


def sphere_aggregator(
    type: str = "learnable_v",  # noqa: A002 - the authors' key
    m: int = 6,
    tanh: bool = False,
    depth: int = 1,
    width: int = 16,
    learnable_freq: bool = False,
) -> nn.Module:
    """NPBG++'s view-dependent aggregator (``system.aggregator``)."""
    from npbgpp.models.aggregation import SphereAggregator

    _require_released(
        {
            "type": (type, "learnable_v"),
            "tanh": (tanh, False),
            "learnable_freq": (learnable_freq, False),
        },
        "aggregator",
    )
    return SphereAggregator(m=m, depth=depth, width=width)


def mean_aggregator(weighted: bool = True) -> nn.Module:
    """The visibility-weighted mean of the inputs' features (npbgpp_mean, npbgpp_rgb)."""
    from npbgpp.models.aggregation import MeanAggregator

    return MeanAggregator(weighted=weighted)


def identity() -> nn.Module:
    """npbgpp_rgb's feature extractor: the image itself (3 channels)."""
    return nn.Identity()


def rasterizer(
    descriptor_dim: int = 8,
    cat_mask: bool = True,
    scales=(1.0, 0.5, 0.25, 0.125, 0.0625),
    ss_scale=(1, 1, 1, 1, 1),
    invert_mask_values: bool = False,
    learnable: bool = False,
    near: float = 1.0,
) -> nn.Module:
    """The five-scale nearest-point rasterizer (``system.rasterizer``)."""
    from npbgpp.models.rasterizer import NearestScatterRasterizer

    try:
        return NearestScatterRasterizer.from_config(
            descriptor_dim, cat_mask, tuple(scales), tuple(ss_scale), invert_mask_values,
            learnable, near,
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(f"configuration: system.{error}") from None


def refiner_unet_v2(
    in_channels=(9, 9, 9, 9, 9),
    out_channels: int = 3,
    filters=(16, 32, 48, 64, 80),
    stem_conv_block_name: str = "gated",
    encoder_conv_block_name: str = "gated",
    decoder_conv_block_name: str = "gated",
    padding_mode: str = "reflect",
    use_skip: bool = True,
) -> nn.Module:
    """The gated U-Net that turns the raster pyramid into an image (``system.refiner``)."""
    from npbgpp.models.refiner import RefinerUnetV2

    blocks = {stem_conv_block_name, encoder_conv_block_name, decoder_conv_block_name}
    _require_released(
        {"conv blocks": (sorted(blocks), ["gated"]), "use_skip": (use_skip, True)}, "refiner"
    )
    return RefinerUnetV2(
        in_channels=tuple(in_channels), out_channels=out_channels, filters=tuple(filters),
        padding_mode=padding_mode,
    )  # fmt: skip


def identity_refiner() -> nn.Module:
    """npbgpp_rgb's refiner: the full-resolution raster's colour channels."""
    from npbgpp.models.refiner import IdentityRefiner

    return IdentityRefiner()


def splat_colours(
    ndc: torch.Tensor, rgb: torch.Tensor, image_size, valid: torch.Tensor, near: float
) -> torch.Tensor:
    """(1, 3, H, W) the nearest point's colour per pixel, white where none lands."""
    from npbgpp.models.rasterizer import NearestScatterRasterizer

    splat = NearestScatterRasterizer(descriptor_dim=3, scales=(1.0,), near=near).to(rgb)
    splat.bg_feature.fill_(1.0)
    return splat(ndc, rgb, image_size, valid[None])[0][:, :3]


def _require_released(values: dict, component: str) -> None:
    for key, (value, released) in values.items():
        if value != released:
            raise ConfigError(
                f"configuration: system.{component}.{key}={value} is not implemented "
                f"(the released configs use {released})"
            )


class ColorJitter:
    """NPBG++'s colour augmentation: kornia's ColorJitter(brightness 0.1, saturation 0.5,
    hue 0.5) with probability p, the same draw applied to the target and its source views."""

    def __init__(self, p: float):
        from kornia.augmentation import ColorJitter as KorniaJitter

        self.jitter = KorniaJitter(brightness=0.1, saturation=0.5, hue=0.5, p=p)

    def __call__(self, target: dict, sources: list[dict]) -> tuple[dict, list[dict]]:
        image = target["image"][None]
        jittered = self.jitter(image)
        params = self.jitter._params
        if not bool(params["batch_prob"].any()):
            return target, sources
        target = {**target, "image": jittered[0]}
        sources = [{**s, "image": self.jitter(s["image"][None], params=params)[0]} for s in sources]
        return target, sources


def color_jitter(p: float) -> ColorJitter | None:
    """The augmentation, or None when ``color_aug_p`` is 0."""
    return ColorJitter(p) if p > 0 else None
