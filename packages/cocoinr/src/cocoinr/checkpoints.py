"""CoCo-INR's files: the VQGAN codebook, and the authors' checkpoint layout.

``<exp>/checkpoints/{Model,Optimizer,Scheduler}Parameters/{<epoch>,latest}.pth``, each
``{"epoch", "<kind>_state_dict"}``, as the original writes them, plus our
``TrainingState/`` (step and seed, for an exact resume). The authors' model files hold the
codebook four times (once per network), ``weight_g``/``weight_v`` weight norm and the never
used ``coordinate_attn.cross_attn`` modules: :func:`authors_to_ours` maps them onto one
codebook, today's weight norm, and drops (and logs) the dead keys.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cocoinr.models.volsdf import NETWORKS
from geomkit.checkpoint import load_checkpoint, load_state_dict_strict, save_checkpoint
from geomkit.errors import CheckpointError, InputError
from geomkit.sdf import map_legacy_weight_norm

log = logging.getLogger(__name__)

CODEBOOK_KEY = "quantize.embedding.weight"
CODEBOOK_HELP = (
    "CoCo-INR reads the codebook of taming-transformers' VQGAN ImageNet f16-16384 "
    "(state_dict -> quantize.embedding.weight, 16384 x 256): the authors' "
    "ckpts/model_16384x256_codebook.ckpt or the VQGAN's last.ckpt; or set "
    "model.use_attention=false for plain VolSDF"
)
KINDS = {"model": "ModelParameters", "optimizer": "OptimizerParameters",
         "scheduler": "SchedulerParameters", "training": "TrainingState"}  # fmt: skip
_DEAD = re.compile(r"^[a-z_]+\.coordinate_attn\.cross_attn\.")


def load_codebook(path: str | Path) -> torch.Tensor:
    """The (n_codes, dim) codebook from a VQGAN checkpoint (read with weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"codebook checkpoint not found: {path}. {CODEBOOK_HELP}")
    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or CODEBOOK_KEY not in state:
        raise InputError(f"{path} has no state_dict -> {CODEBOOK_KEY}. {CODEBOOK_HELP}")
    codebook = state[CODEBOOK_KEY]
    if codebook.dim() != 2:
        raise InputError(f"{path}: {CODEBOOK_KEY} must be 2-D, got {tuple(codebook.shape)}")
    return codebook.float()


def authors_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' model state dict in our layout (see the module docstring)."""
    state = map_legacy_weight_norm(state)
    dead = sorted({m.group(0)[:-1] for key in state if (m := _DEAD.match(key))})
    if dead:
        log.warning("dropped the authors' never used modules: %s", ", ".join(dead))
    ours = {k: v for k, v in state.items() if not _DEAD.match(k)}
    copies = {name: ours.pop(f"{name}.codebook") for name in NETWORKS if f"{name}.codebook" in ours}
    if not copies:
        return ours
    if len(copies) != len(NETWORKS):
        missing = ", ".join(f"{name}.codebook" for name in NETWORKS if name not in copies)
        raise CheckpointError(f"the file holds per-network codebooks but lacks {missing}")
    first, *others = [*copies.values(), *([ours["codebook"]] if "codebook" in ours else [])]
    if any(not torch.equal(first, other) for other in others):
        raise CheckpointError("the file's networks hold different codebooks")
    ours["codebook"] = first
    return ours


def load_model(model: nn.Module, path: str | Path) -> int:
    """Load a ModelParameters file (ours or the authors') strictly; returns its epoch."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, Mapping) or "model_state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a ModelParameters file (no model_state_dict)")
    state = authors_to_ours(checkpoint["model_state_dict"])
    load_state_dict_strict(model, state, source=str(path))
    return int(checkpoint.get("epoch", 0))


def checkpoint_path(exp_dir: Path, kind: str, name: str | int = "latest") -> Path:
    return Path(exp_dir) / "checkpoints" / KINDS[kind] / f"{name}.pth"


def save_all(exp_dir: Path, epoch: int, states: Mapping[str, Mapping]) -> None:
    """Write each kind's ``{"epoch", "<kind>_state_dict"}`` as ``<epoch>.pth``, then as
    ``latest.pth``; ``TrainingState/<epoch>.pth`` comes last of the numbered files, so its
    presence means the epoch's set is complete (each file is written atomically)."""
    for name in (epoch, "latest"):
        for kind in ("model", "optimizer", "scheduler", "training"):
            content = {"epoch": epoch, f"{kind}_state_dict": states[kind]}
            save_checkpoint(checkpoint_path(exp_dir, kind, name), content)


def resume_name(exp_dir: Path, name: str) -> str:
    """The checkpoint to resume from: for ``latest``, the newest epoch whose set of files is
    complete (a kill while saving leaves ``latest.pth`` files of different epochs)."""
    folder = Path(exp_dir) / "checkpoints" / KINDS["training"]
    epochs = [int(p.stem) for p in folder.glob("*.pth") if p.stem.isdigit()]
    if name != "latest" or not epochs:
        return name
    return str(max(epochs))


def load_kind(exp_dir: Path, kind: str, name: str = "latest") -> tuple[int, Mapping]:
    path = checkpoint_path(exp_dir, kind, name)
    content = load_checkpoint(path)
    key = f"{kind}_state_dict"
    if not isinstance(content, Mapping) or key not in content:
        raise CheckpointError(f"{path} has no {key}")
    return int(content.get("epoch", 0)), content[key]
