"""project-noisypixel's files (Computer-Vision-IIITH-2021/project-noisypixel): their PyTorch
Lightning checkpoints, read without Lightning, and the model their weights describe.

Their ``.ckpt`` holds ``state_dict`` with the ``net.encoder.*`` / ``net.decoder.*`` weights of
their ``ONetLit`` and no hyper-parameters, so the encoder, decoder and sizes are read from the
keys and shapes (:func:`architecture`). Files written by Lightning < 1.5 key ``callbacks`` by the
``ModelCheckpoint`` class; a stand-in class answers that name, so the safe ``weights_only``
loader reads them. Runs of their older code also saved the same tensors as ``encoder_model.*`` /
``decoder_model.*``; those are checked equal to the ``net.*`` ones and dropped.

Their encoders keep their keys here (``features.*``, ``fc.*``); their decoders are renamed:
decoder-cbn is our legacy CBN decoder (``block{k}`` -> ``block{k-1}``, ``batchnorm_0/1`` ->
``bn_0/1``, ``gamma``/``beta`` -> ``fc_gamma``/``fc_beta``, ``.batchnorm.`` -> ``.bn.``) and
decoder-fc our simple decoder (``blocks.{i}.`` -> ``block{i}.``, ``fc.`` -> ``fc_out.``) with
their residual block (``model.decoder_kwargs.noisypixel_block``), which ignores ``fc_0``: their
weights were trained with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from geomkit.checkpoint import load_checkpoint, load_state_dict_strict, unwrap
from geomkit.errors import CheckpointError

MODEL_CHECKPOINT = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"


class ModelCheckpoint:
    """Stand-in for Lightning's callback class, which Lightning < 1.5 pickles as the key of the
    ``callbacks`` entry; only the name is needed, nothing of it is ever called."""


LIGHTNING_GLOBALS = [(ModelCheckpoint, MODEL_CHECKPOINT)]
# Their images are stored at 137 px and fed unresized.
IMG_SIZE = 137
# EfficientNet variant by the number of MBConv blocks (efficientnet_pytorch's b0, b1, b5, b7).
EFFICIENTNET_BLOCKS = {16: "b0", 23: "b1", 39: "b5", 55: "b7"}
# Older runs' duplicates of the net.* weights: prefix -> the net.* prefix it copies.
DUPLICATES = {"encoder_model.": "encoder.", "decoder_model.": "decoder."}
# Their decoder keys -> ours: every (pattern, replacement) applied in turn to decoder.* keys.
RENAMES = {
    "decoder-cbn": [
        (r"^decoder\.block([1-5])\.", lambda m: f"decoder.block{int(m[1]) - 1}."),
        (r"\.batchnorm_([01])\.", r".bn_\1."),
        (r"\.gamma\.", ".fc_gamma."),
        (r"\.beta\.", ".fc_beta."),
        (r"\.batchnorm\.", ".bn."),
    ],
    "decoder-fc": [
        (r"^decoder\.blocks\.(\d+)\.", r"decoder.block\1."),
        (r"^decoder\.fc\.", "decoder.fc_out."),
    ],
}
FC_BLOCK_NOTE = (
    "their decoder-fc runs with their residual block x + relu(fc_1 x) (fc_0 unused), the one "
    "these weights were trained with (model.decoder_kwargs.noisypixel_block)"
)


def read_checkpoint(path: str | Path):
    """A checkpoint file read with ``weights_only=True``, Lightning's callback class allowed."""
    return load_checkpoint(path, extra_safe_globals=LIGHTNING_GLOBALS)


def is_lightning(checkpoint) -> bool:
    """Whether a loaded checkpoint is a Lightning container (``state_dict``, no ``model``)."""
    return (
        isinstance(checkpoint, Mapping) and "state_dict" in checkpoint and "model" not in checkpoint
    )


def network_state(checkpoint: Mapping, source: str) -> dict[str, torch.Tensor]:
    """Their network's weights as ``encoder.*`` / ``decoder.*`` in their module names: ``net.``
    stripped, older duplicates checked and dropped, anything else refused."""
    state = checkpoint["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"{source}: its state_dict is not a mapping of tensors")
    net = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    if not net:
        raise CheckpointError(
            f"{source} holds no net.* weights: not a project-noisypixel ONetLit checkpoint "
            f"(keys start {sorted(state)[:3]})"
        )
    for key, value in state.items():
        if not key.startswith("net."):
            _check_duplicate(key, value, net, source)
    return net


def _check_duplicate(key: str, value: torch.Tensor, net: Mapping, source: str) -> None:
    prefix = next((p for p in DUPLICATES if key.startswith(p)), None)
    if prefix is None:
        raise CheckpointError(f"{source}: unexpected key {key} beside the net.* weights")
    twin = DUPLICATES[prefix] + key[len(prefix) :]
    if twin not in net or not torch.equal(net[twin], value):
        raise CheckpointError(f"{source}: {key} differs from net.{twin}, which is the one loaded")


def architecture(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """Config overrides (dotted keys) for the network of ``state`` (from :func:`network_state`):
    model.encoder/decoder/c_dim/z_dim/decoder_kwargs.*, data.dim and data.img_size."""
    encoder, c_dim = _encoder(state, source)
    decoder, hidden, dim = _decoder(state, source)
    overrides = {
        "model.encoder": encoder,
        "model.decoder": decoder,
        "model.c_dim": c_dim,
        "model.z_dim": 0,
        "model.decoder_kwargs.hidden_size": hidden,
        "data.dim": dim,
        "data.img_size": IMG_SIZE,
    }
    if decoder == "decoder-fc":
        overrides["model.decoder_kwargs.noisypixel_block"] = True
    return overrides


def _shape(state: Mapping, key: str, ndim: int, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{source}: no {key}, which its layout needs; not their model?")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{source}: {key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _encoder(state: Mapping, source: str) -> tuple[str, int]:
    """(their encoder name, c_dim)."""
    if "encoder.features._conv_stem.weight" in state:
        blocks = {k.split(".")[3] for k in state if k.startswith("encoder.features._blocks.")}
        if len(blocks) not in EFFICIENTNET_BLOCKS:
            raise CheckpointError(
                f"{source}: an EfficientNet with {len(blocks)} blocks; their variants have "
                f"{sorted(EFFICIENTNET_BLOCKS)} (b0, b1, b5, b7)"
            )
        c_dim = _shape(state, "encoder.features._fc.weight", 2, source)[0]
        return f"efficientnet-{EFFICIENTNET_BLOCKS[len(blocks)]}", c_dim
    if "encoder.features.conv1.weight" in state:
        name = "resnet-50" if "encoder.features.layer1.0.conv3.weight" in state else "resnet-18"
        return name, _shape(state, "encoder.fc.weight", 2, source)[0]
    raise CheckpointError(
        f"{source}: unknown encoder layout (no encoder.features._conv_stem or .conv1 weight)"
    )


def _decoder(state: Mapping, source: str) -> tuple[str, int, int]:
    """(their decoder name, hidden size, point dimension)."""
    if any(k.startswith("decoder.block1.") for k in state):
        hidden, dim, _ = _shape(state, "decoder.fc_p.weight", 3, source)
        return "decoder-cbn", hidden, dim
    if any(k.startswith("decoder.blocks.0.") for k in state):
        hidden, dim = _shape(state, "decoder.fc_p.weight", 2, source)
        return "decoder-fc", hidden, dim
    raise CheckpointError(
        f"{source}: unknown decoder layout (no decoder.block1.* or decoder.blocks.0.* keys)"
    )


def rename(state: Mapping[str, torch.Tensor], decoder: str) -> dict[str, torch.Tensor]:
    """Their keys -> ours for ``decoder`` (decoder-cbn or decoder-fc); encoder keys as they are."""
    out = {}
    for key, value in state.items():
        if key.startswith("decoder."):
            for pattern, replacement in RENAMES[decoder]:
                key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def lightning_weights(checkpoint: Mapping, source: str) -> tuple[dict, dict]:
    """(state dict in our key names, config overrides) of a loaded Lightning checkpoint."""
    state = network_state(checkpoint, source)
    overrides = architecture(state, source)
    return rename(state, overrides["model.decoder"]), overrides


def load_lightning_weights(model: nn.Module, checkpoint: Mapping, source: str) -> None:
    """Load a loaded Lightning checkpoint into ``model`` strictly.

    Raises:
        CheckpointError: the file is not theirs, or ``model`` is not the network it holds (the
            message says which one it is), or a decoder-fc model lacks their residual block.
    """
    state, overrides = lightning_weights(checkpoint, source)
    model = unwrap(model)
    fc = overrides["model.decoder"] == "decoder-fc"
    if fc and not getattr(model.decoder, "noisypixel_block", False):
        raise CheckpointError(
            f"{source} is their decoder-fc, trained with their residual block (fc_0 unused): "
            "set model.decoder_kwargs.noisypixel_block=true, or use the config that "
            "python -m onet.import_lightning writes"
        )
    try:
        load_state_dict_strict(model, state, source=source)
    except CheckpointError as err:
        described = ", ".join(f"{k} {v}" for k, v in overrides.items())
        raise CheckpointError(f"{err} (the file holds {described})") from err
    if fc:
        print(FC_BLOCK_NOTE)


def checkpoint_model_config(path: str | Path) -> dict:
    """Config overrides (dotted keys, see :func:`architecture`) for the model a checkpoint file
    holds: read from the weights of a project-noisypixel ``.ckpt``; ``{}`` for any other
    checkpoint, whose config describes it."""
    checkpoint = read_checkpoint(path)
    if not is_lightning(checkpoint):
        return {}
    return architecture(network_state(checkpoint, f"checkpoint {path}"), f"checkpoint {path}")
