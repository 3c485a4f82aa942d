"""VolSDF's error-bounded sampler (Yariv et al. 2021, Algorithm 1) as CoCo-INR runs it, with
the NeRF++ inverted-sphere background.

Facts from lioryariv/volsdf and fukunyin/CoCo-NeRF, ``code/model/ray_sampler.py`` (the same
algorithm; CoCo adds leading batch dimensions). Per ray:

1. ``N_samples_eval`` z from ``linspace(near, far)``, jittered within half-way bins in
   training. ``far`` is the exit of the radius-``scene_bounding_sphere`` sphere with
   ``inverse_sphere_bg``, else ``2 * scene_bounding_sphere``.
2. Algorithm 1, at most ``max_total_iters`` rounds: the SDF at the new z (no grad), then per
   ray the smallest beta in [beta0, beta] (bisection, ``beta_iters`` steps) whose opacity error
   bound is at most ``eps``; beta0 is the density's beta. When no ray is left above beta0, or
   at the last round, stop; else add ``N_samples_eval`` z from the bound's pdf (deterministic
   quantiles, in training too). The SDF is thus evaluated at ``N_samples_eval * rounds`` z.
3. ``N_samples`` z from the pdf of the rendering weights at the final beta (random quantiles
   in training, evenly spaced in eval), plus ``N_samples_extra`` of the evaluated z (a random
   subset shared by all rays in training, evenly spaced indices in eval), plus near and far.

With CoCo's ``ray_sampler`` block the model receives 64 + 32 + 2 = 98 sorted z per ray; it
renders the first 97 and uses the last (far) only as the end of the 97th interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from geomkit.errors import ConfigError
from geomkit.rays import ray_sphere_intersection, sample_pdf
from geomkit.sdf import LaplaceDensity, laplace_density

SdfFn = Callable[[torch.Tensor], torch.Tensor]

_FINAL_PDF_PADDING = 1e-5  # added to the rendering weights before the last pdf sampling
_GROWTH_CLAMP = 1e6  # exp(accumulated error) is clamped here


class SamplerOutput(NamedTuple):
    """What the model receives from :meth:`ErrorBoundSampler.get_z_vals`.

    Attributes:
        z_vals: (..., N_samples + N_samples_extra + 2) sorted distances along the rays, near
            and far included (values may repeat). The last is far; the model renders the
            others and uses far as the end of their last interval.
        z_samples_eik: (..., 1) one of ``z_vals`` per ray, index uniform at random (in eval
            too, as the original): where the near-surface eikonal point goes.
        z_vals_bg: (..., N_samples_inverse_sphere) increasing inverse distances in
            [0, 1 / scene_bounding_sphere] for the NeRF++ background (the model flips them to
            run from the sphere outwards); None without ``inverse_sphere_bg``.
    """

    z_vals: torch.Tensor
    z_samples_eik: torch.Tensor
    z_vals_bg: torch.Tensor | None


class Refinement(NamedTuple):
    """The state at the end of Algorithm 1.

    Attributes:
        z_vals: (..., n) sorted z where the SDF was evaluated, n = N_samples_eval * n_iters.
        sdf: (..., n) the SDF there.
        d_star: (..., n - 1) :func:`distance_bound` of each section.
        beta: (...) each ray's beta; its error bound is <= eps unless the bisection's upper
            end did not satisfy it either.
        beta0: () the density's beta.
        n_iters: rounds run.
    """

    z_vals: torch.Tensor
    sdf: torch.Tensor
    d_star: torch.Tensor
    beta: torch.Tensor
    beta0: torch.Tensor
    n_iters: int


def uniform_z_vals(
    near: torch.Tensor,
    far: torch.Tensor,
    n_samples: int,
    perturb: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """VolSDF's ``UniformSampler``: ``linspace(near, far, n_samples)``, ends included; perturbed,
    each value is uniform between the midpoints to its neighbours (half bins at both ends).

    Not geomkit's ``sample_stratified``, which uses equal bins and never returns near or far.

    Args:
        near, far: (..., 1).
        n_samples: per ray.
        perturb: jitter (training).
        generator: for the jitter, on the device of ``near``.

    Returns:
        (..., n_samples) increasing.
    """
    t = torch.linspace(0.0, 1.0, n_samples, dtype=near.dtype, device=near.device)
    z_vals = near * (1.0 - t) + far * t
    if not perturb:
        return z_vals
    mids = 0.5 * (z_vals[..., 1:] + z_vals[..., :-1])
    upper = torch.cat((mids, z_vals[..., -1:]), -1)
    lower = torch.cat((z_vals[..., :1], mids), -1)
    jitter = torch.rand(z_vals.shape, generator=generator, dtype=z_vals.dtype, device=z_vals.device)
    return lower + (upper - lower) * jitter


def distance_bound(z_vals: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
    """VolSDF's d* (Theorem 1): a lower bound on |SDF| inside each section from the values at
    its ends, for a 1-Lipschitz SDF; 0 where the SDF changes sign (or is 0) across it.

    With a = section length, b, c = |SDF| at its start and end: b if the angle at the start is
    not acute (a^2 + b^2 <= c^2), c if the one at the end is not, else the height over side a
    of the triangle (a, b, c), or 0 if that triangle is degenerate.

    Args:
        z_vals: (..., n) sorted.
        sdf: (..., n).

    Returns:
        (..., n - 1).
    """
    a = z_vals[..., 1:] - z_vals[..., :-1]
    b, c = sdf[..., :-1].abs(), sdf[..., 1:].abs()
    start_closest = a.pow(2) + b.pow(2) <= c.pow(2)
    end_closest = a.pow(2) + c.pow(2) <= b.pow(2)
    s = (a + b + c) / 2.0
    # Clamped: only rounding makes it negative, and the original's sqrt then gives NaN.
    area_squared = (s * (s - a) * (s - b) * (s - c)).clamp_min(0.0)
    inside = ~start_closest & ~end_closest & (b + c - a > 0)
    height = 2.0 * torch.sqrt(area_squared) / a
    d_star = torch.where(inside, height, torch.zeros_like(a))
    d_star = torch.where(start_closest, b, d_star)
    d_star = torch.where(end_closest, c, d_star)
    same_sign = sdf[..., 1:].sign() * sdf[..., :-1].sign() == 1
    return same_sign * d_star


def section_free_energy(
    z_vals: torch.Tensor, sdf: torch.Tensor, beta: torch.Tensor | float
) -> torch.Tensor:
    """(..., n - 1) ``length * density(start)`` per section: the left Riemann sum's terms."""
    dists = z_vals[..., 1:] - z_vals[..., :-1]
    return dists * laplace_density(sdf[..., :-1], beta)


def transmittance_before(free_energy: torch.Tensor) -> torch.Tensor:
    """(..., n - 1) ``exp(-sum_{j<i} free_energy_j)``: the light reaching the start of section i."""
    shifted = torch.cat((torch.zeros_like(free_energy[..., :1]), free_energy[..., :-1]), -1)
    return torch.exp(-torch.cumsum(shifted, -1))


def opacity_error_bounds(
    z_vals: torch.Tensor, sdf: torch.Tensor, d_star: torch.Tensor, beta: torch.Tensor | float
) -> torch.Tensor:
    """VolSDF's bound on the error of the estimated opacity at the end of each section:
    ``(min(exp(E_i), 1e6) - 1) * exp(-R_i)`` with the accumulated error
    ``E_i = sum_{j<=i} exp(-d*_j / beta) dists_j^2 / (4 beta^2)`` and ``R_i`` the Riemann sum of
    the density before section i.

    Args:
        z_vals: (..., n) sorted.
        sdf: (..., n).
        d_star: (..., n - 1) from :func:`distance_bound`.
        beta: scalar or (..., 1).

    Returns:
        (..., n - 1).
    """
    dists = z_vals[..., 1:] - z_vals[..., :-1]
    error = torch.exp(-d_star / beta) * dists.pow(2) / (4 * beta**2)
    growth = torch.exp(torch.cumsum(error, -1)).clamp(max=_GROWTH_CLAMP) - 1.0
    return growth * transmittance_before(section_free_energy(z_vals, sdf, beta))


def opacity_error_bound(
    z_vals: torch.Tensor, sdf: torch.Tensor, d_star: torch.Tensor, beta: torch.Tensor | float
) -> torch.Tensor:
    """(...) the largest of :func:`opacity_error_bounds` along each ray (``get_error_bound``)."""
    return opacity_error_bounds(z_vals, sdf, d_star, beta).amax(-1)


def initial_beta(z_vals: torch.Tensor, eps: float) -> torch.Tensor:
    """(...) VolSDF's Lemma 2: a beta whose error bound is at most eps whatever the SDF,
    ``sqrt(sum dists^2 / (4 log(1 + eps)))``."""
    dists = z_vals[..., 1:] - z_vals[..., :-1]
    log_term = torch.log(torch.tensor(eps + 1.0, dtype=z_vals.dtype, device=z_vals.device))
    return torch.sqrt((1.0 / (4.0 * log_term)) * dists.pow(2).sum(-1))


def bisect_beta(
    z_vals: torch.Tensor,
    sdf: torch.Tensor,
    d_star: torch.Tensor,
    beta0: torch.Tensor,
    beta_upper: torch.Tensor,
    eps: float,
    iters: int,
) -> torch.Tensor:
    """VolSDF's line search: per ray, beta0 if it meets ``bound <= eps``, else ``iters``
    bisection steps on [beta0, beta_upper] keeping the upper end where the bound holds.

    Returns:
        (...) the upper ends.
    """
    high = torch.where(opacity_error_bound(z_vals, sdf, d_star, beta0) <= eps, beta0, beta_upper)
    low = beta0.expand_as(high)
    for _ in range(iters):
        mid = (low + high) / 2.0
        holds = opacity_error_bound(z_vals, sdf, d_star, mid[..., None]) <= eps
        high = torch.where(holds, mid, high)
        low = torch.where(holds, low, mid)
    return high


def rendering_weights(
    z_vals: torch.Tensor, sdf: torch.Tensor, beta: torch.Tensor | float
) -> torch.Tensor:
    """(..., n - 1) ``alpha * transmittance`` of each section (the last, open one left out)."""
    free_energy = section_free_energy(z_vals, sdf, beta)
    return (1.0 - torch.exp(-free_energy)) * transmittance_before(free_energy)


class ErrorBoundSampler:
    """VolSDF's ``ErrorBoundSampler``; arguments are the config's ``ray_sampler`` block plus the
    model's ``scene_bounding_sphere`` and ``inverse_sphere_bg`` (True in CoCo-INR)."""

    def __init__(self, scene_bounding_sphere: float, near: float, N_samples: int,
                 N_samples_eval: int, N_samples_extra: int, eps: float, beta_iters: int,
                 max_total_iters: int, inverse_sphere_bg: bool = False,
                 N_samples_inverse_sphere: int = 0, add_tiny: float = 0.0):  # fmt: skip
        for key, value, least in (
            ("N_samples", N_samples, 1),
            ("N_samples_eval", N_samples_eval, 2),
            ("max_total_iters", max_total_iters, 1),
        ):
            if value < least:
                raise ConfigError(f"ray_sampler.{key} must be at least {least}, got {value}")
        self.scene_bounding_sphere = scene_bounding_sphere
        self.near = near
        self.far = 2.0 * scene_bounding_sphere
        self.N_samples = N_samples
        self.N_samples_eval = N_samples_eval
        self.N_samples_extra = N_samples_extra
        self.eps = eps
        self.beta_iters = beta_iters
        self.max_total_iters = max_total_iters
        self.inverse_sphere_bg = inverse_sphere_bg
        self.N_samples_inverse_sphere = N_samples_inverse_sphere
        self.add_tiny = add_tiny

    @torch.no_grad()
    def get_z_vals(
        self,
        ray_dirs: torch.Tensor,
        cam_loc: torch.Tensor,
        sdf_fn: SdfFn,
        density: LaplaceDensity,
        training: bool,
        generator: torch.Generator | None = None,
    ) -> SamplerOutput:
        """Samples along rays ``cam_loc + z * ray_dirs`` (no gradients flow through them).

        Args:
            ray_dirs: (..., 3) unit directions, e.g. (R, 3).
            cam_loc: (..., 3) ray origins, inside the bounding sphere with inverse_sphere_bg
                (rays that miss it get far = 0, as in the original).
            sdf_fn: (M, 3) points -> (M,) or (M, 1) signed distances; called once per round on
                all new points, under no_grad.
            density: its ``get_beta()`` (detached) is beta0.
            training: random jitter and pdf quantiles (else deterministic, see the module).
            generator: for every random draw, on the rays' device; None uses torch's global RNG.

        Returns:
            SamplerOutput; counts and order in its docstring.
        """
        near, far = self.near_far(ray_dirs, cam_loc)
        refined = self.refine(ray_dirs, cam_loc, sdf_fn, density, training, generator, near, far)
        weights = rendering_weights(refined.z_vals, refined.sdf, refined.beta[..., None])
        z_samples = sample_pdf(refined.z_vals, weights, self.N_samples, not training, generator,
                               eps=_FINAL_PDF_PADDING)  # fmt: skip
        extra = self._extra_z_vals(refined.z_vals, training, generator)
        z_vals, _ = torch.sort(torch.cat((z_samples, near, far, extra), -1), -1)
        z_samples_eik = self._eikonal_z(z_vals, generator)
        z_vals_bg = (
            self._background_z(near, training, generator) if self.inverse_sphere_bg else None
        )
        return SamplerOutput(z_vals, z_samples_eik, z_vals_bg)

    def near_far(self, ray_dirs: torch.Tensor, cam_loc: torch.Tensor):
        """(..., 1) near (constant) and far: the bounding sphere's exit with inverse_sphere_bg
        (0 for rays that miss it), else ``2 * scene_bounding_sphere``."""
        shape = ray_dirs.shape[:-1] + (1,)
        near = torch.full(shape, self.near, dtype=ray_dirs.dtype, device=ray_dirs.device)
        if not self.inverse_sphere_bg:
            return near, torch.full_like(near, self.far)
        _, far, _ = ray_sphere_intersection(cam_loc, ray_dirs, self.scene_bounding_sphere)
        return near, far[..., None]

    @torch.no_grad()
    def refine(
        self,
        ray_dirs: torch.Tensor,
        cam_loc: torch.Tensor,
        sdf_fn: SdfFn,
        density: LaplaceDensity,
        training: bool,
        generator: torch.Generator | None = None,
        near: torch.Tensor | None = None,
        far: torch.Tensor | None = None,
    ) -> Refinement:
        """Steps 1 and 2 of the module docstring (Algorithm 1); arguments as :meth:`get_z_vals`,
        near and far from :meth:`near_far` when not given."""
        if near is None or far is None:
            near, far = self.near_far(ray_dirs, cam_loc)
        beta0 = density.get_beta().detach()
        z_vals = uniform_z_vals(near, far, self.N_samples_eval, training, generator)
        beta = initial_beta(z_vals, self.eps)
        new_z, order, sdf = z_vals, None, None
        for n_iters in range(1, self.max_total_iters + 1):
            new_sdf = _sdf_at(sdf_fn, cam_loc, ray_dirs, new_z)
            if order is None:
                sdf = new_sdf
            else:  # the sort that merged the new z into z_vals also merges their SDF
                sdf = torch.gather(torch.cat((sdf, new_sdf), -1), -1, order)
            d_star = distance_bound(z_vals, sdf)
            beta = bisect_beta(z_vals, sdf, d_star, beta0, beta, self.eps, self.beta_iters)
            if not bool(beta.max() > beta0) or n_iters == self.max_total_iters:
                break
            bound = opacity_error_bounds(z_vals, sdf, d_star, beta[..., None])
            new_z = sample_pdf(z_vals, self._upsampling_weights(bound), self.N_samples_eval,
                               deterministic=True, eps=self.add_tiny)  # fmt: skip
            z_vals, order = torch.sort(torch.cat((z_vals, new_z), -1), -1)
        return Refinement(z_vals, sdf, d_star, beta, beta0, n_iters)

    def _upsampling_weights(self, bound: torch.Tensor) -> torch.Tensor:
        # With add_tiny = 0 (VolSDF's default) a ray far from every surface at small beta has an
        # all-zero bound and the original's pdf is 0/0 (NaN samples); sample it uniformly.
        if self.add_tiny > 0:
            return bound
        empty = bound.sum(-1, keepdim=True) <= 0
        return torch.where(empty, torch.ones_like(bound), bound)

    def _extra_z_vals(
        self, z_vals: torch.Tensor, training: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(..., k) evaluated z: the first k of a random permutation shared by all rays in
        training (k = min(N_samples_extra, n)), else k = N_samples_extra evenly spaced indices."""
        n = z_vals.shape[-1]
        if self.N_samples_extra <= 0:
            return z_vals[..., :0]
        if training:
            index = torch.randperm(n, generator=generator, device=z_vals.device)
            index = index[: self.N_samples_extra]
        else:
            # Float32 linspace truncated, as the original (it can round an index down).
            index = torch.linspace(0, n - 1, self.N_samples_extra, dtype=torch.float32).long()
        return z_vals[..., index.to(z_vals.device)]

    @staticmethod
    def _eikonal_z(z_vals: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        index = torch.randint(z_vals.shape[-1], z_vals.shape[:-1] + (1,), generator=generator,
                              device=z_vals.device)  # fmt: skip
        return torch.gather(z_vals, -1, index)

    def _background_z(
        self, near: torch.Tensor, training: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(..., N_samples_inverse_sphere) the uniform sampler on [0, 1], scaled by 1 / R."""
        zero, one = torch.zeros_like(near), torch.ones_like(near)
        unit = uniform_z_vals(zero, one, self.N_samples_inverse_sphere, training, generator)
        return unit * (1.0 / self.scene_bounding_sphere)


def _sdf_at(
    sdf_fn: SdfFn, cam_loc: torch.Tensor, ray_dirs: torch.Tensor, z_vals: torch.Tensor
) -> torch.Tensor:
    """(..., n) ``sdf_fn`` at ``cam_loc + z * ray_dirs``, all points in one call."""
    points = cam_loc[..., None, :] + z_vals[..., None] * ray_dirs[..., None, :]
    sdf = sdf_fn(points.reshape(-1, 3))
    if sdf.numel() != z_vals.numel():
        raise ValueError(
            f"sdf_fn returned {tuple(sdf.shape)} for {z_vals.numel()} points; expected (M,) "
            "or (M, 1)"
        )
    return sdf.reshape(z_vals.shape)
