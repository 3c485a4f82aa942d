"""ONet models and the builder that makes one from a config (the authors' get_model)."""

from __future__ import annotations

from functools import partial

from torch import nn

from geomkit.errors import ConfigError
from onet.models.decoders import Decoder, DecoderCBatchNorm, decoder_cbn
from onet.models.encoders import (
    EFFICIENTNET_VARIANTS,
    EfficientNetEncoder,
    Resnet18,
    Resnet50,
    ResnetPointnet,
    VoxelEncoder,
)
from onet.models.latent import LatentEncoder
from onet.models.onet import OccupancyNetwork

# The hyphenated names are project-noisypixel's (their --encoder/--decoder values).
ENCODERS = {
    "resnet18": Resnet18,
    "pointnet_resnet": ResnetPointnet,
    "voxel_simple": VoxelEncoder,
    "resnet-18": Resnet18,
    "resnet-50": Resnet50,
    **{f"efficientnet-{v}": partial(EfficientNetEncoder, variant=v) for v in EFFICIENTNET_VARIANTS},
}
# Their decoder-fc trains our (correct) simple decoder; their checkpoints set noisypixel_block.
DECODERS = {
    "simple": Decoder,
    "cbatchnorm": DecoderCBatchNorm,
    "decoder-cbn": decoder_cbn,
    "decoder-fc": Decoder,
}
LATENT_ENCODERS = {"simple": LatentEncoder}


def _make(table: dict, name: str, what: str, **kwargs) -> nn.Module:
    if name not in table:
        raise ConfigError(f"model.{what} {name!r} is not supported; choose one of {sorted(table)}")
    try:
        return table[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"model.{what} {name!r}: {err}") from err


def build_model(cfg: dict, dataset_size: int | None = None) -> OccupancyNetwork:
    """The OccupancyNetwork a config describes (model.* and data.dim)."""
    m = cfg["model"]
    dim, z_dim, c_dim = cfg["data"]["dim"], m["z_dim"], m["c_dim"]
    decoder = _make(
        DECODERS, m["decoder"], "decoder", dim=dim, z_dim=z_dim, c_dim=c_dim, **m["decoder_kwargs"]
    )
    encoder_latent = None
    if z_dim != 0:
        encoder_latent = _make(
            LATENT_ENCODERS,
            m["encoder_latent"],
            "encoder_latent",
            dim=dim,
            z_dim=z_dim,
            c_dim=c_dim,
            **m["encoder_latent_kwargs"],
        )
    encoder = None
    if m["encoder"] == "idx":
        if dataset_size is None:
            raise ConfigError("model.encoder 'idx' needs the dataset (one code per object)")
        encoder = nn.Embedding(dataset_size, c_dim)
    elif m["encoder"] is not None:
        encoder = _make(ENCODERS, m["encoder"], "encoder", c_dim=c_dim, **m["encoder_kwargs"])
    return OccupancyNetwork(decoder, encoder, encoder_latent, z_dim)


__all__ = ["DECODERS", "ENCODERS", "OccupancyNetwork", "build_model"]
