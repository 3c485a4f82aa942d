"""Pieces of the IDR/VolSDF/NeuS signed-distance networks that cocoinr and sfd share: the NeRF
positional encoding, the geometric initialisation of an SDF MLP (it starts as a sphere), weight
norm with the authors' legacy checkpoint keys, and VolSDF's Laplace density.

The packages keep their own module and key names (``lin0``.. in VolSDF and NeuS, ``mlp.0``.. in
CoCo-INR); these functions act on the ``nn.Linear`` layers they hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0",
                      "weight_v": "parametrizations.weight.original1"}  # fmt: skip


def nerf_embedding(x: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    """(..., D) -> (..., D + 2 D n_frequencies): [x, sin(x), cos(x), sin(2x), cos(2x), ...,
    sin(2^(n-1) x), cos(2^(n-1) x)], IDR's and NeRF's order (bands 2^0 .. 2^(n-1), the input
    first, no pi). ``n_frequencies`` 0 returns ``x``."""
    parts = [x]
    for k in range(n_frequencies):
        scaled = x * (2.0**k)
        parts += [torch.sin(scaled), torch.cos(scaled)]
    return torch.cat(parts, dim=-1)


def embedding_width(d_in: int, n_frequencies: int) -> int:
    """The width of :func:`nerf_embedding`'s output."""
    return d_in * (1 + 2 * n_frequencies)


@torch.no_grad()
def geometric_init_(
    layers: Sequence[nn.Linear],
    radius: float,
    n_raw: int = 3,
    embedded: bool = False,
    skip_in: Sequence[int] = (),
    inside_outside: bool = False,
) -> None:
    """IDR's geometric initialisation (Atzmon & Lipman, SAL) of an SDF MLP's linear layers, so
    that with Softplus(beta=100) activations its first output starts near |x| - radius.

    Args:
        layers: the MLP's linear layers in order, the last giving the SDF (then features).
        radius: the initial sphere's radius (the configs' ``bias``).
        n_raw: leading input columns that are the raw coordinates.
        embedded: whether the input is positionally encoded: then only the raw columns of
            the first layer (and of a skip layer's re-injected input) start non-zero.
        skip_in: indices of the layers that also take the input (concatenated, / sqrt 2).
        inside_outside: NeuS's option for scenes seen from inside (negated last layer).
    """
    d_in = layers[0].in_features
    for index, layer in enumerate(layers):
        out_dim = layer.out_features
        if index == len(layers) - 1:
            mean = math.sqrt(math.pi) / math.sqrt(layer.in_features)
            layer.weight.normal_(-mean if inside_outside else mean, 1e-4)
            layer.bias.fill_(radius if inside_outside else -radius)
            continue
        layer.bias.zero_()
        layer.weight.normal_(0.0, math.sqrt(2) / math.sqrt(out_dim))
        if embedded and index == 0:
            layer.weight[:, n_raw:] = 0.0
        elif embedded and index in skip_in:
            layer.weight[:, -(d_in - n_raw) :] = 0.0


def with_weight_norm(layer: nn.Linear) -> nn.Linear:
    """Weight norm over the output rows (dim 0), as ``nn.utils.weight_norm`` gave the originals;
    today's parametrisation, whose keys :func:`map_legacy_weight_norm` maps old files to."""
    return weight_norm(layer, dim=0)


def map_legacy_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the legacy ``<prefix>.weight_g`` / ``.weight_v`` keys of
    ``nn.utils.weight_norm`` renamed to today's ``<prefix>.parametrizations.weight.original0``
    / ``original1``; other keys unchanged."""
    renamed = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf in LEGACY_WEIGHT_NORM:
            key = f"{prefix}.{LEGACY_WEIGHT_NORM[leaf]}" if prefix else LEGACY_WEIGHT_NORM[leaf]
        renamed[key] = value
    return renamed


def has_weight_norm(layer: nn.Module) -> bool:
    return parametrize.is_parametrized(layer, "weight")


def laplace_density(sdf: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """VolSDF's density: (1 / beta) times the CDF of a zero-mean Laplace(beta) at -sdf, i.e.
    (1 / beta) (0.5 + 0.5 sign(s) expm1(-|s| / beta))."""
    alpha = 1.0 / beta
    return alpha * (0.5 + 0.5 * sdf.sign() * torch.expm1(-sdf.abs() / beta))


class LaplaceDensity(nn.Module):
    """VolSDF's density with a learnt scale: key ``beta`` (a scalar), beta = |beta| + beta_min."""

    def __init__(self, beta: float = 0.1, beta_min: float = 1e-4):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(beta))
        self.beta_min = beta_min

    def get_beta(self) -> torch.Tensor:
        return self.beta.abs() + self.beta_min

    def forward(self, sdf: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
        return laplace_density(sdf, self.get_beta() if beta is None else beta)
