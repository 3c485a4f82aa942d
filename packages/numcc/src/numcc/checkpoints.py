"""NU-MCC's and MCC's checkpoint files: the authors' (udf-ep99.pth, numcc_hypersim_550c.pth,
co3dv2_all_categories.pth) and ours, all laid out as {"model", "args", "epoch", "optimizer",
"scaler"} (a bare state dict is accepted too).

- Read with ``torch.load(weights_only=True)``, ``argparse.Namespace`` allow-listed
  (:func:`geomkit.checkpoint.load_checkpoint`); nothing else in the file is executed.
- The weights say what to build, so no flag has to be guessed: NU-MCC or MCC from the key
  names; the anchor count (--n_groups) from ``decoderl1.init_embedding``'s rows (200 in
  udf-ep99.pth, 550 in the Hypersim file); --no_fine from whether the pixel layers are there;
  MCC's --regress_color from ``decoder_pred``'s rows. Every other flag is the run's ``args``
  (e.g. --nneigh 12 --nn_seen 12 for the README's smoothing), or the file's own when none are
  given.
- Loading is strict: missing, unexpected and mis-shaped keys are one CheckpointError that
  names the file and the keys.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from geomkit.checkpoint import check_state_dict, load_checkpoint
from geomkit.errors import CheckpointError
from numcc.args import get_args_parser
from numcc.models import ModelSizes, build_model

ANCHORS_KEY = "decoderl1.init_embedding.weight"
PIXEL_KEYS = ("decoderl2.fc_s.weight", "decoderl2.ct1.w_kc.weight", "decoderl2.ct1.w_vc.weight")
MCC_HEAD_KEY = "decoder_pred.weight"


class LoadedModel(NamedTuple):
    """A loaded model (on the CPU, in train mode as built), the flags it was built with
    (args.model is "numcc" or "mcc"), and the whole file (epoch, optimizer, scaler, args)."""

    model: nn.Module
    args: argparse.Namespace
    checkpoint: Mapping


def read_checkpoint(path: str | Path) -> tuple[Mapping[str, torch.Tensor], Mapping]:
    """The state dict (the file's ``model`` entry, or the file itself) and the whole file.

    Raises:
        CheckpointError: missing or unreadable file, a disallowed object, no state dict.
    """
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict")
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"checkpoint {path} has no 'model' entry holding a state dict")
    return state, checkpoint


def model_kind(state: Mapping[str, torch.Tensor], path: str | Path) -> str:
    """ "numcc" (keys under decoderl1.) or "mcc" (decoder_blocks. at the top level)."""
    if any(k.startswith("decoderl1.") for k in state):
        return "numcc"
    if any(k.startswith("decoder_blocks.") for k in state):
        return "mcc"
    raise CheckpointError(
        f"checkpoint {path} holds neither NU-MCC weights (decoderl1.*) nor MCC weights "
        "(decoder_blocks.*)"
    )


def weight_flags(kind: str, state: Mapping[str, torch.Tensor]) -> dict:
    """The flags the weights fix (only those whose keys are present)."""
    if kind == "mcc":
        return {"regress_color": state[MCC_HEAD_KEY].shape[0] == 4} if MCC_HEAD_KEY in state else {}
    flags = {"no_fine": 0 if any(k in state for k in PIXEL_KEYS) else 1}
    if ANCHORS_KEY in state:
        flags["n_groups"] = state[ANCHORS_KEY].shape[0]
    return flags


def model_args(kind: str, state, saved, args: argparse.Namespace | None) -> argparse.Namespace:
    """The parser's defaults, overlaid by ``args`` (or, without them, the file's own args),
    then by what the weights fix."""
    values = vars(get_args_parser().parse_args([]))
    if args is not None:
        values.update(vars(args))
    elif isinstance(saved, argparse.Namespace):
        values.update(vars(saved))
    elif isinstance(saved, Mapping):
        values.update(saved)
    if values.get("model_size") is None:  # the file's size, else the published one
        saved = vars(saved) if isinstance(saved, argparse.Namespace) else saved
        values["model_size"] = (saved or {}).get("model_size") or "base"
    values.update(weight_flags(kind, state), model=kind)
    return argparse.Namespace(**values)


def load_model(
    path: str | Path, args: argparse.Namespace | None = None, sizes: ModelSizes | None = None
) -> LoadedModel:
    """Build the model a checkpoint holds and load its weights strictly.

    Args:
        path: the checkpoint file.
        args: the run's flags (None: the file's own args over the parser's defaults).
        sizes: widths and depths (default: the preset the flags' --model_size names, the
            published model for the authors' files).

    Raises:
        CheckpointError: unreadable file, or weights that do not match (one line naming the
            file and the missing, unexpected or mis-shaped keys).
    """
    state, checkpoint = read_checkpoint(path)
    kind = model_kind(state, path)
    run_args = model_args(kind, state, checkpoint.get("args"), args)
    with torch.device("meta"):  # no memory or initialisation for weights about to be replaced
        model = build_model(run_args, sizes)
    check_state_dict(model, state, source=f"checkpoint {path}")
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return LoadedModel(model, run_args, checkpoint)
