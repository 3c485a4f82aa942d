"""Checkpoints in the authors' PyTorch Lightning layout, without Lightning.

A ``.ckpt`` the original writes (``checkpoints/epoch{E}.ckpt``, ``last.ckpt``) is a dict with
``epoch``, ``global_step``, ``pytorch-lightning_version``, ``state_dict``, ``optimizer_states``,
``lr_schedulers``, ``callbacks`` and ``hyper_parameters`` (the whole Hydra configuration, pickled
as an OmegaConf ``DictConfig`` by Lightning 1.4). We read such files with
``torch.load(weights_only=True)``: the OmegaConf node classes are allow-listed, and the
Lightning callback classes whose state the file may carry are read into a stand-in, never
imported. The state dict then loads strictly: the original's ``strict=False`` inside a bare
``except`` (a wrong file "loaded" silently) becomes an error listing the keys.

We write the same layout, with ``hyper_parameters`` as plain containers, plus ``npbgpp_resume``:
RNG states and our loop's counters, so ``last.ckpt`` resumes a run exactly.
"""

from __future__ import annotations

import collections
import logging
import typing
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode, BooleanNode, BytesNode, FloatNode, IntegerNode, StringNode
from torch import nn

from geomkit.checkpoint import load_checkpoint, load_state_dict_strict, save_checkpoint
from geomkit.errors import CheckpointError

log = logging.getLogger(__name__)

LIGHTNING_VERSION = "1.4.8"  # the version the authors' checkpoints were written with

# Keys the original's LightningModule.state_dict() leaves out of every checkpoint.
DROPPED_KEY_PARTS = ("cached", "_inception", "vgg_loss", "bg_rgb", "lpips")


class CallbackState(dict):
    """Stands in for a Lightning callback class named in a checkpoint's ``callbacks`` keys."""


def _defaultdict_as_dict(default_factory=None) -> dict:
    """Read a pickled ``collections.defaultdict`` as a plain dict: weights_only loading fills
    only plain dicts, and OmegaConf's metadata holds one (``resolver_cache``, holding the
    ``${now:...}`` values once resolved). :func:`read_lightning_checkpoint` turns it back."""
    del default_factory
    return {}


_CALLBACK_NAMES = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.progress.ProgressBar",
    "npbgplusplus.utils.callbacks.CheckpointEveryEpoch",
)

SAFE_GLOBALS = [
    DictConfig,
    ListConfig,
    ContainerMetadata,
    Metadata,
    AnyNode,
    BooleanNode,
    BytesNode,
    FloatNode,
    IntegerNode,
    StringNode,
    typing.Any,
    (_defaultdict_as_dict, "collections.defaultdict"),
    dict,
    int,
    float,
    bool,
    str,
    list,
    *[(CallbackState, name) for name in _CALLBACK_NAMES],
]


def read_lightning_checkpoint(path: str | Path) -> dict:
    """Load a Lightning ``.ckpt`` safely; it must hold a ``state_dict``."""
    checkpoint = load_checkpoint(path, extra_safe_globals=SAFE_GLOBALS)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(f"{path} is not a Lightning checkpoint: no 'state_dict' in {found}")
    checkpoint = dict(checkpoint)
    hyper = checkpoint.get("hyper_parameters")
    if isinstance(hyper, (DictConfig, ListConfig)):
        metadata = hyper._metadata
        metadata.resolver_cache = collections.defaultdict(dict, metadata.resolver_cache)
    return checkpoint


def saved_state_dict(system: nn.Module) -> dict[str, torch.Tensor]:
    """``system.state_dict()`` without the keys the original never saves."""
    return {
        key: value
        for key, value in system.state_dict().items()
        if not any(part in key for part in DROPPED_KEY_PARTS)
    }


def load_weights(
    system: nn.Module, path: str | Path, unused_prefixes: tuple[str, ...] = ()
) -> dict:
    """``weights_path``: load a checkpoint's state dict into ``system``, strictly (every saved
    key of the system present, nothing unexpected, shapes equal). Keys of the file under
    ``unused_prefixes`` (an NPBG++ checkpoint's ``feature_extractor.`` when fine-tuning its
    coefficients) are left out and named in the log. Returns the checkpoint."""
    checkpoint = read_lightning_checkpoint(path)
    state = dict(checkpoint["state_dict"])
    unused = [k for k in state if k.startswith(unused_prefixes)] if unused_prefixes else []
    if unused:
        log.info(
            "%s: %d keys under %s are not part of %s and stay unused",
            path, len(unused), ", ".join(unused_prefixes), type(system).__name__,
        )  # fmt: skip
        state = {k: v for k, v in state.items() if k not in set(unused)}
    expected = saved_state_dict(system)
    # the buffers the original never saves (VGG, LPIPS) are not in the file; keep the system's
    state.update({k: v for k, v in system.state_dict().items() if k not in expected})
    load_state_dict_strict(system, state, source=str(path))
    return checkpoint


def write_checkpoint(
    path: str | Path,
    system: nn.Module,
    epoch: int,
    global_step: int,
    optimizers: list[torch.optim.Optimizer | Mapping],
    cfg: DictConfig | Mapping,
    resume: Mapping | None = None,
) -> Path:
    """Atomically write a checkpoint in the authors' layout (``epoch`` is the epoch that just
    finished, counted from 0, as Lightning writes it). ``optimizers``: optimizers or their
    state dicts."""
    hyper = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    state = {
        "epoch": int(epoch),
        "global_step": int(global_step),
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": saved_state_dict(system),
        "callbacks": {},
        "optimizer_states": [
            dict(o) if isinstance(o, Mapping) else o.state_dict() for o in optimizers
        ],
        "lr_schedulers": [],
        "hyper_parameters": hyper,
    }
    if resume is not None:
        state["npbgpp_resume"] = dict(resume)
    return save_checkpoint(path, state)
