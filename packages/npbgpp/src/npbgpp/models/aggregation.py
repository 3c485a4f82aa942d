"""NPBG++'s aggregators (prefix ``aggregator.``): per-point statistics of the features the
input views see, accumulated one view (or batch of views) at a time, and the descriptor of each
point towards a target camera. Both are invariant to the order of the views.

* :class:`SphereAggregator` (``npbgpp_sphere``, ``coefficients_ft``): per point a ridge
  regression of the features on a learned basis of the viewing direction,
  ``y(d) ~ ym + beta^T b(d)``; b = MLP(harmonic embedding of d), m = 6 functions.
* :class:`MeanAggregator` (``npbgpp_mean``, ``npbgpp_rgb``): the visibility-weighted mean.

Shapes: the aggregator is reset for a point shape S, ``(P,)`` for one scene or ``(B, P)`` for
a batch of scenes; ``update`` takes features ``(*V, *S, C)``, directions ``(*V, *S, 3)`` and a
mask ``(*V, *S)`` whose leading dims V (any number, possibly none) are views and summed over.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "HarmonicEmbedding",
    "MeanAggregator",
    "SphereAggregator",
    "split_coefficients",
    "view_directions",
]

_DIRECTION_EPS = 1e-7  # NPBG++ divides by |d| + 1e-7


class HarmonicEmbedding(nn.Module):
    """x -> [sin(x_i f_k), cos(x_i f_k)] with f = (pi / 2) * 2^k, k < n (buffer ``frequencies``).

    The sines come first, then the cosines; within each, coordinate-major:
    ``[sin(x0 f0), sin(x0 f1), sin(x0 f2), sin(x1 f0), ...]``. (..., D) -> (..., 2 n D).
    """

    def __init__(self, n_harmonic_functions: int = 3):
        super().__init__()
        frequencies = (math.pi / 2) * 2.0 ** torch.arange(n_harmonic_functions)
        self.register_buffer("frequencies", frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed = (x[..., None] * self.frequencies.to(x.dtype)).flatten(-2)
        return torch.cat((embed.sin(), embed.cos()), dim=-1)


class SphereAggregator(nn.Module):
    """Per-point ridge regression of features on a learned basis of the viewing direction.

    With b_v = b(d_v) (m,) the basis of view v's direction to the point, y_v (C,) its feature
    and N the number of views that see the point (mask true)::

        ym   = sum_v y_v / N
        beta = (sum_v b_v b_v^T / N + diag(alpha) / N)^-1
               (sum_v b_v y_v^T / N - (sum_v b_v / N) ym^T)
        descriptor(d) = ym + beta^T b(d)

    (Y centred, the basis not; alpha = 1.) Points no view sees are invalid (descriptor 0).
    Differentiable with respect to the features and, through the views' basis, the MLP; the
    target's basis is detached as in the original.

    Args:
        m: number of basis functions (6).
        width, depth: the MLP's hidden width (16) and number of extra hidden layers (1):
            Linear(18, 16), LeakyReLU, Linear(16, 16), LeakyReLU, Linear(16, 6) for the
            defaults (keys ``mlp.0``, ``mlp.2``, ``mlp.4``).
        n_harmonic_functions: frequencies of the embedding (3 -> 18 inputs).
    """

    def __init__(self, m: int = 6, width: int = 16, depth: int = 1, n_harmonic_functions: int = 3):
        super().__init__()
        self.m = int(m)
        self.harmonic_embedding = HarmonicEmbedding(n_harmonic_functions)
        layers: list[nn.Module] = [nn.Linear(6 * n_harmonic_functions, width), nn.LeakyReLU()]
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.LeakyReLU()]
        layers.append(nn.Linear(width, self.m))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("alpha", torch.ones(self.m, 1))
        self.reset(0)

    def basis(self, directions: torch.Tensor) -> torch.Tensor:
        """(..., 3) unit directions (camera to point) -> (..., m) basis values."""
        return self.mlp(self.harmonic_embedding(directions))

    def reset(self, n_points: int | tuple[int, ...]) -> None:
        """Forget all statistics; the next updates are for points of shape ``n_points``."""
        self.point_shape = (n_points,) if isinstance(n_points, int) else tuple(n_points)
        self._stats: dict[str, torch.Tensor] | None = None
        self._solution: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def update(self, features: torch.Tensor, directions: torch.Tensor, mask: torch.Tensor) -> None:
        """Accumulate the views' features.

        Args:
            features: (*V, *S, C) float features sampled at the points.
            directions: (*V, *S, 3) unit directions from each view's camera to the points.
            mask: (*V, *S) bool, the view sees the point (NPBG++: visible & score > 0).
        """
        y, d, mask = _views_first(self.point_shape, features, directions, mask)
        basis = y.new_zeros(*mask.shape, self.m)
        basis[mask] = self.basis(d[mask].to(y.dtype))
        y = torch.where(mask[..., None], y, 0.0)
        stats = {
            "sum_b": basis.sum(0),
            "sum_y": y.sum(0),
            "sum_bb": torch.einsum("v...i,v...j->...ij", basis, basis),
            "sum_by": torch.einsum("v...i,v...c->...ic", basis, y),
            "count": mask.to(y.dtype).sum(0),
        }
        if self._stats is not None:
            stats = {key: self._stats[key] + value for key, value in stats.items()}
        self._stats = stats
        self._solution = None

    def solve(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-point regression: ym (*S, C), beta (*S, m, C), valid (*S,) bool.

        Cached until the next update or reset. Invalid points have ym = beta = 0.
        """
        if self._solution is not None:
            return self._solution
        if self._stats is None:
            raise RuntimeError("SphereAggregator: no view was accumulated since reset()")
        s = self._stats
        valid = s["count"] > 0
        count = torch.where(valid, s["count"], 1.0)[..., None]  # (*S, 1)
        eye = torch.eye(self.m, dtype=count.dtype, device=count.device)
        regulariser = self.alpha.to(count.dtype) * eye  # diag(alpha)
        system = (s["sum_bb"] + regulariser) / count[..., None]
        system = torch.where(valid[..., None, None], system, eye)
        ym = s["sum_y"] / count
        rhs = s["sum_by"] / count[..., None] - (s["sum_b"] / count)[..., :, None] * ym[..., None, :]
        beta = torch.linalg.solve(system, rhs)
        beta = torch.where(valid[..., None, None], beta, 0.0)
        self._solution = (ym, beta, valid)
        return self._solution

    def descriptors(self, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Descriptors towards a target: directions (*S, 3) -> (*S, C) and valid (*S,) bool."""
        ym, beta, valid = self.solve()
        basis = self.basis(directions.to(ym.dtype)).detach()
        return ym + torch.einsum("...mc,...m->...c", beta, basis), valid

    def coefficients(self) -> torch.Tensor:
        """(*S, C * (m + 1)) per point [ym (C) | beta (m x C, row-major)], the layout of the
        original's ``descriptors/<scene>.pth`` and of the coefficients_ft tables."""
        ym, beta, _ = self.solve()
        return torch.cat((ym[..., None, :], beta), dim=-2).flatten(-2)

    def evaluate_coefficients(
        self, coefficients: torch.Tensor, directions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Descriptors from stored coefficients (*S, C * (m + 1)) towards directions (*S, 3):
        (*S, C) and valid (*S,) = beta not all zero (the original's rule for loaded tables)."""
        ym, beta = split_coefficients(coefficients, self.m)
        basis = self.basis(directions.to(ym.dtype)).detach()
        valid = (beta != 0).flatten(-2).any(dim=-1)
        return ym + torch.einsum("...mc,...m->...c", beta, basis), valid


class MeanAggregator(nn.Module):
    """Visibility-weighted mean of the views' features (no parameters).

    Args:
        weighted: weight each view by its ``scores`` (default the mask itself); the released
            configs set it, and pass the visibility as the score, so it is the plain mean over
            the views that see the point.
    """

    m = 0

    def __init__(self, weighted: bool = True):
        super().__init__()
        self.weighted = bool(weighted)
        self.reset(0)

    def reset(self, n_points: int | tuple[int, ...]) -> None:
        """Forget all statistics; the next updates are for points of shape ``n_points``."""
        self.point_shape = (n_points,) if isinstance(n_points, int) else tuple(n_points)
        self._sum: torch.Tensor | None = None
        self._total: torch.Tensor | None = None

    def update(
        self,
        features: torch.Tensor,
        directions: torch.Tensor | None,
        mask: torch.Tensor,
        scores: torch.Tensor | None = None,
    ) -> None:
        """Accumulate features (*V, *S, C) where mask (*V, *S); directions are not used."""
        del directions
        y, _, mask = _views_first(self.point_shape, features, None, mask)
        weights = mask.to(y.dtype)
        if self.weighted and scores is not None:
            scores = scores.reshape(mask.shape).to(y.dtype)
            weights = torch.where(mask, scores, 0.0)
        total = weights.sum(0)
        weighted = (torch.where(mask[..., None], y, 0.0) * weights[..., None]).sum(0)
        self._sum = weighted if self._sum is None else self._sum + weighted
        self._total = total if self._total is None else self._total + total

    def descriptors(
        self, directions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(*S, C) the mean and (*S,) valid (total weight > 1e-8); directions are not used."""
        if self._sum is None:
            raise RuntimeError("MeanAggregator: no view was accumulated since reset()")
        valid = self._total > 1e-8
        mean = self._sum / torch.where(valid, self._total, 1.0)[..., None]
        return mean, valid

    def coefficients(self) -> torch.Tensor:
        """(*S, C) the means (what the original saves for this aggregator)."""
        return self.descriptors()[0]


def split_coefficients(coefficients: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :meth:`SphereAggregator.coefficients`: (*S, C (m + 1)) -> ym (*S, C),
    beta (*S, m, C)."""
    if coefficients.shape[-1] % (m + 1):
        raise ValueError(
            f"coefficients: last dimension {coefficients.shape[-1]} is not C * (m + 1), m = {m}"
        )
    table = coefficients.unflatten(-1, (m + 1, coefficients.shape[-1] // (m + 1)))
    return table[..., 0, :], table[..., 1:, :]


def view_directions(points: torch.Tensor, R_row: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """(N, P, 3) unit vectors from the N cameras' centres to the points.

    Args:
        points: (N, P, 3) or (P, 3) world points.
        R_row, T: (N, 3, 3), (N, 3) world-to-view (``X_view = X @ R_row + T``). The centre is
            ``-T @ R_row^-1``, right for any invertible R_row (the original's ``-R_row @ T``
            is right for rotations only).

    Returns:
        (points - centre) / (|points - centre| + 1e-7), as the original normalises.
    """
    centre = -torch.linalg.solve(R_row.transpose(1, 2), T[..., None])[..., 0]  # (N, 3)
    offsets = points - centre[:, None, :]
    return offsets / (offsets.norm(dim=-1, keepdim=True) + _DIRECTION_EPS)


def _views_first(point_shape, features, directions, mask):
    """Reshape (*V, *S, ...) inputs to (V, *S, ...) with V = prod of the leading dims."""
    k = len(point_shape)
    if mask.shape[mask.dim() - k :] != point_shape or features.shape[:-1] != mask.shape:
        raise ValueError(
            f"aggregator: features (*V, *S, C) and mask (*V, *S) with S = {point_shape} "
            f"expected, got {tuple(features.shape)} and {tuple(mask.shape)}"
        )
    if directions is not None and directions.shape != (*mask.shape, 3):
        raise ValueError(
            f"aggregator: directions must be {(*mask.shape, 3)}, got {tuple(directions.shape)}"
        )
    mask = mask.to(torch.bool).reshape(-1, *point_shape)
    features = features.reshape(-1, *point_shape, features.shape[-1])
    if directions is not None:
        directions = directions.reshape(-1, *point_shape, 3)
    return features, directions, mask
