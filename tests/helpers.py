"""Assertions shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def torchrun(*args: str, timeout: float = 600, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 ARGS`` in ``cwd`` (the
    repository root by default), one thread per process, the repository importable (for
    tests.* workers)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def fresh_venv(folder: Path, *packages: str) -> Path:
    """A new venv in ``folder`` with the stack's torch and ``pip install`` of ``packages``
    (paths under the repository, e.g. "shared", "packages/onet"); its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1"], check=True)
    subprocess.run([*pip, *(str(REPO / p) for p in packages)], check=True, cwd=folder)
    return python


def import_every_module(python: Path, package: str, cwd: Path) -> None:
    """Import every module of ``package`` with ``python`` (its declared dependencies suffice)."""
    code = (
        f"import importlib, pkgutil, {package}\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'): "
        "importlib.import_module(m.name)"
    )
    subprocess.run([str(python), "-c", code], check=True, cwd=cwd)


def assert_close(actual, expected, atol: float = 0.0, rtol: float = 0.0, what: str = "") -> None:
    """Elementwise |actual - expected| <= atol + rtol * |expected|, reporting the worst element.

    Works on numpy arrays, torch tensors and scalars; shapes must match exactly.
    """
    a = _as_numpy(actual)
    e = _as_numpy(expected)
    assert a.shape == e.shape, f"{what} shape {a.shape} != expected {e.shape}"
    if a.size == 0:
        return
    both_nan = np.isnan(a) & np.isnan(e)
    diff = np.where(both_nan, 0.0, np.abs(a - e))
    allowed = atol + rtol * np.abs(e)
    excess = np.where(np.isnan(diff), np.inf, diff - allowed)
    worst = np.unravel_index(int(np.argmax(excess)), a.shape) if a.ndim else ()
    assert excess[worst] <= 0, (
        f"{what} differs by {diff[worst]:.3g} at index {tuple(int(i) for i in worst)}: "
        f"actual {a[worst]!r} vs expected {e[worst]!r} (atol {atol}, rtol {rtol}; "
        f"{int((excess > 0).sum())} of {a.size} elements out of tolerance)"
    )


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        return x.numpy().astype(np.float64) if x.is_floating_point() else x.numpy()
    return (
        np.asarray(x, dtype=np.float64) if np.asarray(x).dtype.kind not in "iub" else np.asarray(x)
    )


def assert_raises_naming(exc_type: type[Exception], call, *fragments: str) -> str:
    """``call()`` raises ``exc_type`` whose message contains every fragment; returns it."""
    try:
        call()
    except exc_type as err:
        message = str(err)
    else:
        raise AssertionError(f"{exc_type.__name__} not raised")
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message {message!r} lacks {missing}"
    return message


LEARNING_SEED_VAR = "GEOMKIT_TEST_SEED"
MARGINS_FILE_VAR = "GEOMKIT_MARGINS_FILE"


def learning_seed() -> int:
    """The training seed of a ``learning`` test: $GEOMKIT_TEST_SEED, 0 by default
    (tools/learning_margins.py sweeps it)."""
    return int(os.environ.get(LEARNING_SEED_VAR, "0"))


def assert_margins(test: str, checks: dict[str, tuple[float, float]]) -> None:
    """Assert ``value >= bound`` for each ``name: (value, bound)`` of a learning test, after
    appending every margin ``value - bound`` to $GEOMKIT_MARGINS_FILE (JSON lines) when set,
    so a sweep over seeds and machines sees all of them, failing or not."""
    path = os.environ.get(MARGINS_FILE_VAR)
    if path:
        with open(path, "a") as handle:
            for name, (value, bound) in checks.items():
                record = {"test": test, "check": name, "value": float(value), "bound": bound}
                handle.write(json.dumps({**record, "seed": learning_seed()}) + "\n")
    # written as "not >=" so that a NaN value fails too
    failed = {n: (v, b) for n, (v, b) in checks.items() if not float(v) >= b}
    assert not failed, "; ".join(f"{n} {v:.4f} is not >= {b}" for n, (v, b) in failed.items())
