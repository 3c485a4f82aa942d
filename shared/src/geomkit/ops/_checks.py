"""Argument checks shared by the ops; every message starts with the op's name."""

from __future__ import annotations

import numbers

import torch


def shape_of(x) -> str:
    """A tensor's shape, or the type name of anything else, for error messages."""
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_lengths(
    lengths: torch.Tensor | None, N: int, P: int, device: torch.device, op: str, name: str
) -> torch.Tensor:
    """Per-cloud lengths of a ragged (N, P, ...) batch as (N,) int64 on ``device``; None: all P.

    Raises:
        ValueError: not an integer tensor of shape (N,), or a value outside [0, P].
    """
    if lengths is None:
        return torch.full((N,), P, dtype=torch.int64, device=device)
    if (
        not isinstance(lengths, torch.Tensor)
        or lengths.shape != (N,)
        or lengths.is_floating_point()
        or lengths.is_complex()
    ):
        raise ValueError(f"{op}: {name} must be an integer tensor of shape ({N},)")
    if N and (int(lengths.min()) < 0 or int(lengths.max()) > P):
        raise ValueError(f"{op}: {name} must lie in [0, {P}]")
    return lengths.to(device=device, dtype=torch.int64).contiguous()
