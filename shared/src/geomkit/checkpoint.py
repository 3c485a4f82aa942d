"""Checkpoints: atomic saving, resolving ``latest``, safe loading, strict key matching, resume.

- Loading always uses ``torch.load(weights_only=True)``; the few Python objects official files
  carry (``argparse.Namespace`` in NU-MCC's, numpy scalars in ONet's) are allow-listed in
  :data:`SAFE_GLOBALS`, anything else is refused with a message naming it.
- Loading a state dict is strict: missing, unexpected and mis-shaped keys are reported together
  in one :class:`~geomkit.errors.CheckpointError`, never ignored. Authors' key layouts are
  translated by :func:`remap_keys` tables first.
- A training state holds model, optimizer, scheduler, grad scaler, RNG states and the step, so
  a resumed run continues exactly where the saved one stopped.
"""

from __future__ import annotations

import argparse
import pickle
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from geomkit.errors import ArgumentParser, CheckpointError
from geomkit.io.files import atomic_path


def _numpy_scalar_globals() -> list:
    """What a pickled numpy scalar (np.float64 in ONet's checkpoints) needs: its constructor
    under both numpy 1 and 2 module names, and the dtype classes."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtypes = [np.dtype(t).__class__ for t in ("f8", "f4", "i8", "i4", "?")]
    return [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *dtypes,
    ]


# Python objects that official checkpoints contain, allowed for weights_only loading.
SAFE_GLOBALS: list = [argparse.Namespace, *_numpy_scalar_globals()]

_MAX_LISTED = 12


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", extra_safe_globals: Sequence = ()
):
    """Read a checkpoint with ``weights_only=True`` and the :data:`SAFE_GLOBALS` allow-list.

    Raises:
        CheckpointError: missing or unreadable file, or an object outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([*SAFE_GLOBALS, *extra_safe_globals]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found:
            raise CheckpointError(
                f"checkpoint {path} contains the Python object {found.group(1)}, which safe "
                "loading does not allow; if you trust the file, pass it in extra_safe_globals"
            ) from err
        raise CheckpointError(f"checkpoint {path} is not a readable torch file: {err}") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is not a readable torch file ({first})") from err


def save_checkpoint(path: str | Path, state: Mapping) -> Path:
    """Write ``state`` with torch.save through a temporary file, fsync and rename.

    An interrupted save leaves the previous file intact.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    return path


def resolve_checkpoint(path: str | Path, name: str = "latest") -> Path:
    """The checkpoint file that ``path`` designates.

    ``path`` may be a file, or a folder in which ``name`` is looked up: ``latest`` picks a file
    named ``latest.*`` if present, else the file whose stem is the largest integer (``1000.pth``,
    ``20000.pt``); any other name is a stem (``model``) or a file name (``model.pt``).

    Raises:
        CheckpointError: nothing matches.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} not found")
    files = [p for p in path.iterdir() if p.is_file() and p.suffix in (".pt", ".pth", ".ckpt")]
    if name == "latest":
        named = [p for p in files if p.stem == "latest"]
        numbered = [p for p in files if p.stem.isdigit()]
        if named:
            return named[0]
        if numbered:
            return max(numbered, key=lambda p: int(p.stem))
    else:
        matches = [p for p in files if name in (p.name, p.stem)]
        if matches:
            return sorted(matches)[0]
    listing = ", ".join(sorted(p.name for p in files)) or "no checkpoint files"
    raise CheckpointError(f"no checkpoint '{name}' in {path} (found: {listing})")


def remap_keys(
    state_dict: Mapping[str, torch.Tensor], rules: Iterable[tuple[str, str | None]]
) -> dict[str, torch.Tensor]:
    """Rename keys by the first matching rule: (regex matched at the start, replacement).

    A replacement of None drops the key. Keys no rule matches are kept as they are. Example
    (torchvision ResNet inside an encoder): ``[(r"^fc\\.", None), (r"^", "encoder.features.")]``.
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            if pattern.match(key):
                if repl is not None:
                    out[pattern.sub(repl, key, count=1)] = value
                break
        else:
            out[key] = value
    return out


def check_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Raise one CheckpointError listing missing, unexpected and mis-shaped keys, if any."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict
        and isinstance(state_dict[k], torch.Tensor)
        and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = [
        _listing("missing", missing),
        _listing("unexpected", unexpected),
        _listing("mis-shaped", misshaped),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointError(
            f"{source} does not match {type(module).__name__}: " + "; ".join(problems)
        )


def load_state_dict_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    rules: Iterable[tuple[str, str | None]] = (),
    source: str = "checkpoint",
) -> None:
    """Remap keys by ``rules``, check them against ``module`` and load them (strict)."""
    remapped = remap_keys(state_dict, rules)
    check_state_dict(module, remapped, source)
    module.load_state_dict(remapped, strict=True)


def _listing(label: str, keys: list[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)} {label}: {shown}{more}"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel/DataParallel wrappers."""
    return (
        model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    )


def rng_state() -> dict:
    """RNG states of Python, numpy (global), torch and CUDA, as weights_only-loadable values."""
    # The legacy global numpy state is what third-party code draws from, so it is what resumes.
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(_as_tuple(state["python"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    legacy = ("MT19937", keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(legacy)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    step: int = 0,
    **extra,
) -> dict:
    """Everything a run needs to resume exactly: weights (unwrapped from DDP), optimizer,
    scheduler, grad scaler, RNG states, the step counter, and any ``extra`` values."""
    state = {"model": unwrap(model).state_dict(), "step": int(step), "rng": rng_state()}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    state.update(extra)
    return state


def restore_training_state(
    state: Mapping,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    source: str = "checkpoint",
) -> int:
    """Load what :func:`training_state` saved (strictly) and return the step to continue from."""
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and name not in state:
            raise CheckpointError(f"{source} has no {name} state to resume from")
    load_state_dict_strict(unwrap(model), state["model"], source=source)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
    if "rng" in state:
        set_rng_state(state["rng"])
    return int(state.get("step", 0))


def describe(checkpoint, key: str | None = None) -> list[str]:
    """Lines listing a checkpoint's entries, and each tensor of its state dict with its shape."""
    if key is not None:
        if not isinstance(checkpoint, Mapping) or key not in checkpoint:
            found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else []
            raise CheckpointError(f"checkpoint has no entry {key!r} (entries: {found})")
        checkpoint = checkpoint[key]
    if not isinstance(checkpoint, Mapping):
        return [f"{type(checkpoint).__name__}"]
    lines = []
    for name, value in checkpoint.items():
        if isinstance(value, torch.Tensor):
            lines.append(f"{name}  {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}")
        elif isinstance(value, Mapping):
            lines.append(f"{name}  dict of {len(value)}")
        else:
            lines.append(f"{name}  {type(value).__name__}: {str(value)[:60]}")
    return lines


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m geomkit.checkpoint",
        description="List what a checkpoint holds (loaded safely, with weights_only=True).",
    )
    parser.add_argument("path", help="checkpoint file, or a folder (its latest checkpoint)")
    parser.add_argument("--key", help="entry holding a state dict to list, e.g. model")
    args = parser.parse_args(argv)
    path = resolve_checkpoint(args.path)
    print(path)
    for line in describe(load_checkpoint(path), args.key):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    from geomkit.errors import run_main

    run_main(main)
