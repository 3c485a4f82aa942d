"""VolSDF's error-bounded sampler as CoCo-INR configures it: where the samples go on an analytic
sphere, the error bound and the beta search against numpy written from the paper's definitions,
determinism, and the NeRF++ background's inverse depths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cocoinr.models.sampler import (
    ErrorBoundSampler,
    bisect_beta,
    distance_bound,
    initial_beta,
    opacity_error_bound,
    opacity_error_bounds,
    uniform_z_vals,
)
from geomkit.errors import ConfigError
from geomkit.rays import ray_sphere_intersection
from geomkit.sdf import LaplaceDensity

from ..helpers import assert_close

# dtu.conf's ray_sampler block (reference section 3); R = 3, inverse_sphere_bg as in coco.py.
CONF = dict(
    near=0.0, N_samples=64, N_samples_eval=128, N_samples_extra=32, eps=0.1, beta_iters=10,
    max_total_iters=5, N_samples_inverse_sphere=32, add_tiny=1e-6,
)  # fmt: skip
RADIUS = 3.0
N_FINAL = 64 + 32 + 2
CAMERA = (0.0, 0.0, -2.5)
SPHERE = 0.6


def sphere_sdf(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=-1) - SPHERE


def sampler(**changes) -> ErrorBoundSampler:
    conf = {**CONF, **changes}
    bg = conf.pop("inverse_sphere_bg", True)
    return ErrorBoundSampler(RADIUS, inverse_sphere_bg=bg, **conf)


def rays_through(radii: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rays from CAMERA through points at ``radii`` from the z axis in the plane z = 0."""
    angle = torch.arange(len(radii)) * 2.4
    target = torch.stack((radii * angle.cos(), radii * angle.sin(), torch.zeros_like(radii)), -1)
    cam_loc = torch.tensor(CAMERA).expand(len(radii), 3)
    dirs = target - cam_loc
    return dirs / dirs.norm(dim=-1, keepdim=True), cam_loc


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sphere_exit(dirs: torch.Tensor, origin: tuple, radius: float) -> np.ndarray:
    """Far root of |o + t d| = radius for unit d, in float64."""
    d = dirs.double().numpy()
    o = np.asarray(origin, dtype=np.float64)
    od = d @ o
    return -od + np.sqrt(od**2 - o @ o + radius**2)


# ---- numpy, from the paper's definitions ------------------------------------------------------


def np_laplace_density(s: float, beta: float) -> float:
    """sigma(s) = (1 / beta) Psi(-s), Psi the CDF of a zero-mean Laplace with scale beta."""
    x = -s
    cdf = 0.5 * math.exp(x / beta) if x <= 0 else 1.0 - 0.5 * math.exp(-x / beta)
    return cdf / beta


def np_error_bound(z, sdf, d_star, beta) -> float:
    """max_k (min(exp(E_k), 1e6) - 1) exp(-R_k), one section at a time."""
    riemann, error, bounds = 0.0, 0.0, []
    for i in range(len(z) - 1):
        delta = z[i + 1] - z[i]
        error += math.exp(-d_star[i] / beta) * delta**2 / (4 * beta**2)
        bounds.append((min(math.exp(error), 1e6) - 1.0) * math.exp(-riemann))
        riemann += delta * np_laplace_density(sdf[i], beta)
    return max(bounds)


def np_bisection(z, sdf, d_star, beta0, beta_upper, eps, iters) -> float:
    if np_error_bound(z, sdf, d_star, beta0) <= eps:
        return beta0
    low, high = beta0, beta_upper
    for _ in range(iters):
        mid = (low + high) / 2
        if np_error_bound(z, sdf, d_star, mid) <= eps:
            high = mid
        else:
            low = mid
    return high


def np_gap_to_surface(a: float, b: float, c: float) -> float:
    """Brute force: the least distance from the segment [0, a] to any point outside both balls
    B(0, b) and B(a, c) (the surface may be anywhere there), in a plane through the axis."""
    angles = np.linspace(0.0, np.pi, 4001)
    circle = np.stack((np.cos(angles), np.sin(angles)), -1)
    first, second = b * circle, np.array([a, 0.0]) + c * circle
    boundary = np.concatenate(
        (first[np.linalg.norm(first - [a, 0.0], axis=-1) >= c],
         second[np.linalg.norm(second, axis=-1) >= b])
    )  # fmt: skip
    s = np.linspace(0.0, a, 401)
    points = np.stack((s, np.zeros_like(s)), -1)
    outside = (s > b) & (a - s > c)
    if outside.any():
        return 0.0
    return float(np.linalg.norm(points[:, None] - boundary[None], axis=-1).min())


# ---- (a) where the samples go ----------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True])
def test_samples_sorted_in_near_far_and_counted(training):
    dirs, cam_loc = rays_through(torch.linspace(0.0, 2.5, 40))
    out = sampler().get_z_vals(dirs, cam_loc, sphere_sdf, LaplaceDensity(0.1), training, seeded(0))
    assert out.z_vals.shape == (40, N_FINAL)  # 64 pdf + 32 extra + near + far
    assert bool((out.z_vals.diff(dim=-1) >= 0).all())
    far = sphere_exit(dirs, CAMERA, RADIUS)
    assert_close(out.z_vals[:, -1], far, atol=1e-5, what="last z = exit of the bounding sphere")
    assert bool((out.z_vals[:, 0] == 0).all()), "near = 0 is the first z"
    assert bool((out.z_vals[:, 1:-1] >= 0).all()) and bool((out.z_vals <= out.z_vals[:, -1:]).all())
    assert out.z_samples_eik.shape == (40, 1)
    assert bool((out.z_samples_eik == out.z_vals).any(-1).all()), "eikonal z is one of z_vals"


@pytest.mark.parametrize("training", [False, True])
def test_samples_concentrate_at_the_surface_only_on_hits(training):
    density = LaplaceDensity(0.1)
    hit_dirs, cam_loc = rays_through(torch.linspace(0.0, 0.35, 32))
    hit_at, _, hit = ray_sphere_intersection(cam_loc, hit_dirs, SPHERE)
    assert bool(hit.all()) and abs(float(hit_at[0]) - 1.9) < 1e-6
    out = sampler().get_z_vals(hit_dirs, cam_loc, sphere_sdf, density, training, seeded(0))
    near_hit = ((out.z_vals - hit_at[:, None]).abs() < 0.25).double().mean(-1)
    # Eval: 0.68-0.70 of the 98 within 2.5 beta of the hit; training: 0.56-0.82 over seeds.
    assert float(near_hit.min()) > 0.5, f"fraction within 0.25 of the hit: {near_hit.min():.3f}"

    miss_dirs, cam_loc = rays_through(torch.linspace(1.9, 2.5, 32))  # pass >= 1.5 from the centre
    _, _, hit = ray_sphere_intersection(cam_loc, miss_dirs, SPHERE)
    assert not bool(hit.any())
    closest = -(cam_loc * miss_dirs).sum(-1)
    out = sampler().get_z_vals(miss_dirs, cam_loc, sphere_sdf, density, training, seeded(0))
    near_closest = ((out.z_vals - closest[:, None]).abs() < 0.25).double().mean(-1)
    # About 0.07-0.26: close to uniform over [0, far] (0.09), nothing like the hits.
    assert float(near_closest.max()) < 0.3, f"misses concentrate: {near_closest.max():.3f}"


def test_eval_extras_are_evenly_spaced_evaluated_z():
    dirs, cam_loc = rays_through(torch.linspace(0.0, 1.0, 16))
    s, density = sampler(), LaplaceDensity(0.1)
    refined = s.refine(dirs, cam_loc, sphere_sdf, density, training=False)
    assert refined.z_vals.shape[-1] == 128 * refined.n_iters
    out = s.get_z_vals(dirs, cam_loc, sphere_sdf, density, training=False)
    index = torch.linspace(0, refined.z_vals.shape[-1] - 1, 32).long()
    extras = refined.z_vals[:, index]
    assert bool((extras[..., None] == out.z_vals[:, None, :]).any(-1).all())


def test_far_without_background_is_twice_the_radius():
    dirs, cam_loc = rays_through(torch.linspace(0.0, 1.0, 8))
    out = sampler(inverse_sphere_bg=False).get_z_vals(
        dirs, cam_loc, sphere_sdf, LaplaceDensity(0.1), training=False
    )
    assert out.z_vals_bg is None
    assert_close(out.z_vals[:, -1], np.full(8, 2 * RADIUS), what="far = 2R")


def test_sdf_runs_without_grad_on_all_new_points_at_once():
    dirs, cam_loc = rays_through(torch.linspace(0.0, 0.3, 8))
    calls = []

    def recording_sdf(points):
        calls.append((points.shape, torch.is_grad_enabled()))
        return sphere_sdf(points)[:, None]  # (M, 1) is accepted too

    density, s = LaplaceDensity(0.1), sampler()
    out = s.get_z_vals(dirs, cam_loc, recording_sdf, density, training=True, generator=seeded(0))
    refined = s.refine(dirs, cam_loc, sphere_sdf, density, training=True, generator=seeded(0))
    assert calls == [(torch.Size([8 * 128, 3]), False)] * refined.n_iters
    assert density.beta.requires_grad and not out.z_vals.requires_grad


def test_leading_batch_dims_give_the_same_samples():
    dirs, cam_loc = rays_through(torch.linspace(0.0, 1.0, 12))
    s, density = sampler(), LaplaceDensity(0.05)
    flat = s.get_z_vals(dirs, cam_loc, sphere_sdf, density, training=False)
    batched = s.get_z_vals(dirs[None], cam_loc[None], sphere_sdf, density, training=False)
    assert_close(batched.z_vals[0], flat.z_vals, what="(1, R) vs (R,)")
    assert_close(batched.z_vals_bg[0], flat.z_vals_bg, what="bg")


# ---- (b) the error bound ---------------------------------------------------------------------


def hand_made_ray():
    """12 uneven z through a sign change of a made-up SDF (double precision)."""
    z = np.array([0.0, 0.3, 0.55, 0.7, 0.8, 0.86, 0.9, 0.95, 1.05, 1.3, 1.6, 2.0])
    sdf = np.array([0.8, 0.52, 0.3, 0.17, 0.08, 0.03, -0.01, -0.05, -0.14, -0.3, -0.45, -0.6])
    return torch.tensor(z), torch.tensor(sdf)


@pytest.mark.parametrize("beta", [0.02, 0.05, 0.2])
def test_error_bound_matches_the_formula(beta):
    z, sdf = hand_made_ray()
    d_star = distance_bound(z, sdf)
    expected = np_error_bound(z.tolist(), sdf.tolist(), d_star.tolist(), beta)
    actual = opacity_error_bound(z, sdf, d_star, beta)
    assert_close(actual, expected, rtol=1e-12, what=f"bound at beta {beta}")
    per_section = opacity_error_bounds(z, sdf, d_star, beta)
    assert per_section.shape == (11,) and float(per_section.max()) == float(actual)


def test_error_bound_at_lemma_2_beta_is_below_eps():
    gen = torch.Generator().manual_seed(3)
    z = torch.sort(torch.rand(64, 50, generator=gen, dtype=torch.float64) * 4, -1).values
    sdf = torch.randn(64, 50, generator=gen, dtype=torch.float64) * 0.2
    beta = initial_beta(z, 0.1)
    bound = opacity_error_bound(z, sdf, distance_bound(z, sdf), beta[:, None])
    assert float(bound.max()) <= 0.1 + 1e-12


@pytest.mark.parametrize(
    "a, b, c",
    [(1.0, 1.0, 1.5), (1.0, 1.5, 1.0), (0.2, 0.15, 0.15), (0.3, 0.1, 0.25), (0.5, 0.1, 0.1)],
)  # start closest, end closest, triangle height (twice), a gap between the balls: 0
def test_distance_bound_is_the_brute_force_gap(a, b, c):
    z = torch.tensor([0.0, a], dtype=torch.float64)
    for sign in (1.0, -1.0):
        d_star = distance_bound(z, torch.tensor([sign * b, sign * c], dtype=torch.float64))
        assert_close(d_star, [np_gap_to_surface(a, b, c)], atol=1e-3, what=f"d* {a, b, c}")
    across = distance_bound(z, torch.tensor([b, -c], dtype=torch.float64))
    assert float(across) == 0.0, "a sign change means the surface may be in the section"


def test_distance_bound_is_conservative_when_one_ball_holds_the_other():
    z = torch.tensor([0.0, 1.0], dtype=torch.float64)
    d_star = distance_bound(z, torch.tensor([0.5, 1.6], dtype=torch.float64))
    assert float(d_star) == 0.5 and np_gap_to_surface(1.0, 0.5, 1.6) > 0.59


def test_bisection_matches_numpy_from_the_definition():
    z, sdf = hand_made_ray()
    rays_z, rays_sdf = torch.stack((z, z * 1.5, z)), torch.stack((sdf, sdf, sdf + 2.0))
    d_star = distance_bound(rays_z, rays_sdf)
    beta0 = torch.tensor(0.01, dtype=torch.float64)
    upper = initial_beta(rays_z, 0.1)
    actual = bisect_beta(rays_z, rays_sdf, d_star, beta0, upper, eps=0.1, iters=10)
    expected = [
        np_bisection(rz.tolist(), rs.tolist(), ds.tolist(), 0.01, float(u), 0.1, 10)
        for rz, rs, ds, u in zip(rays_z, rays_sdf, d_star, upper, strict=True)
    ]
    assert_close(actual, expected, rtol=1e-12, what="beta after bisection")
    assert float(actual[2]) == 0.01, "a ray far from the surface keeps beta0"
    assert float(actual[0]) > 0.01, "the crossing needs a larger beta than 0.01"


@pytest.mark.parametrize(
    "changes, beta",
    [({}, 0.1), ({}, 0.01), ({"N_samples_eval": 32, "max_total_iters": 2}, 0.01),
     ({"max_total_iters": 1}, 0.003)],
)  # fmt: skip
def test_after_refinement_bound_holds_or_beta_was_raised(changes, beta):
    dirs, cam_loc = rays_through(torch.linspace(0.0, 2.5, 64))
    refined = sampler(**changes).refine(
        dirs, cam_loc, sphere_sdf, LaplaceDensity(beta), training=True, generator=seeded(0)
    )
    args = (refined.z_vals, refined.sdf, refined.d_star)
    at_beta = opacity_error_bound(*args, refined.beta[:, None])
    at_beta0 = opacity_error_bound(*args, refined.beta0)
    raised = refined.beta > refined.beta0
    assert float(at_beta.max()) <= CONF["eps"]
    assert bool((at_beta0[raised] > CONF["eps"]).all()), "beta raised although beta0 was fine"
    assert bool((refined.beta[~raised] == refined.beta0).all())
    if refined.n_iters < changes.get("max_total_iters", CONF["max_total_iters"]):
        assert not bool(raised.any()), "stopped early although some ray was above beta0"
    if changes:
        assert bool(raised.any()), "this setting was chosen to leave rays above beta0"


def test_vanishing_bound_without_add_tiny_stays_finite():
    # A ray pointing away from the sphere: its bound underflows to 0 everywhere; the original's
    # pdf is 0/0 there with add_tiny = 0 (VolSDF's default). Other rays keep it upsampling.
    dirs, cam_loc = rays_through(torch.linspace(0.0, 0.3, 4))
    dirs = torch.cat((dirs, torch.tensor([[0.0, 0.0, -1.0]])))
    cam_loc = torch.tensor(CAMERA).expand(5, 3)
    s, density = sampler(add_tiny=0.0), LaplaceDensity(0.01)
    assert s.refine(dirs, cam_loc, sphere_sdf, density, training=False).n_iters > 1
    out = s.get_z_vals(dirs, cam_loc, sphere_sdf, density, training=False)
    assert bool(torch.isfinite(out.z_vals).all())
    z = uniform_z_vals(*s.near_far(dirs[4:], cam_loc[4:]), 128, perturb=False)
    sdf = sphere_sdf(cam_loc[4:, None] + z[..., None] * dirs[4:, None])
    bound = opacity_error_bounds(z, sdf, distance_bound(z, sdf), 0.0101)
    assert float(bound.abs().max()) == 0.0


# ---- (c) determinism -------------------------------------------------------------------------


def test_eval_is_deterministic_and_training_reproducible_with_a_generator():
    dirs, cam_loc = rays_through(torch.linspace(0.0, 1.0, 24))
    s, density = sampler(), LaplaceDensity(0.05)
    first = s.get_z_vals(dirs, cam_loc, sphere_sdf, density, training=False)
    torch.manual_seed(123)  # eval draws only the eikonal index
    second = s.get_z_vals(dirs, cam_loc, sphere_sdf, density, training=False)
    assert torch.equal(first.z_vals, second.z_vals)
    assert torch.equal(first.z_vals_bg, second.z_vals_bg)

    runs = [s.get_z_vals(dirs, cam_loc, sphere_sdf, density, True, seeded(k)) for k in (7, 7, 8)]
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(runs[0].z_vals, runs[2].z_vals)
    assert not torch.equal(runs[0].z_vals, first.z_vals)


def test_uniform_z_vals_eval_is_linspace_and_training_stays_in_half_bins():
    near, far = torch.zeros(5, 1), torch.full((5, 1), 4.0)
    grid = torch.linspace(0.0, 4.0, 9)
    assert_close(uniform_z_vals(near, far, 9, perturb=False)[0], grid, atol=1e-6, what="linspace")
    jittered = uniform_z_vals(near, far, 9, perturb=True, generator=seeded(0))
    lower = torch.cat((grid[:1], (grid[1:] + grid[:-1]) / 2))
    upper = torch.cat(((grid[1:] + grid[:-1]) / 2, grid[-1:]))
    assert bool(((jittered >= lower) & (jittered <= upper)).all())
    assert not torch.equal(jittered, grid.expand(5, 9))


# ---- (d) background ---------------------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True])
def test_background_inverse_depths(training):
    dirs, cam_loc = rays_through(torch.linspace(0.0, 2.0, 10))
    out = sampler().get_z_vals(dirs, cam_loc, sphere_sdf, LaplaceDensity(0.1), training, seeded(1))
    bg = out.z_vals_bg
    assert bg.shape == (10, 32)
    assert bool((bg >= 0).all()) and bool((bg <= 1 / RADIUS).all())
    assert bool((bg.diff(dim=-1) >= 0).all()), "increasing; the model flips them"
    if not training:
        expected = torch.linspace(0.0, 1.0, 32) * (1 / RADIUS)
        assert_close(bg, expected.expand(10, 32), atol=1e-7, what="eval inverse depths")
    else:
        assert bg.unique().numel() > 32 * 9, "jittered independently per ray"


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="ray_sampler.max_total_iters"):
        sampler(max_total_iters=0)
