"""PhySG spherical-Gaussian (SG) shading as SfD uses it: an environment of SG lights, a Lambertian
diffuse term and a GGX specular term whose normal distribution is itself an SG.

An SG is G(w) = mu * exp(lambda * (w . xi - 1)) with unit axis xi, sharpness lambda and RGB
amplitude mu. Lights are stored as the original's ``lgtSGs`` rows [xi (3, any length), lambda,
mu (3)]; the renderer uses |lambda| and |mu| so the raw parameters may take any sign.

Outputs are linear HDR radiance (no tone mapping, no clipping above), as the Mat stage trains on
linearised images. The specular NDF is lambda = 2 / r^4, mu = lambda / (2 pi): the
normalisation of upstream commit 911aa8a (InvRender had mu = lambda / pi, twice too bright).

Light visibility is an SG-weighted mean of a visibility field over directions sampled inside
each light lobe (and inside the specular lobe), see :func:`sg_light_visibility`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from geomkit.errors import InputError

TINY = 1e-6
# The clamped cosine max(w . n, 0) ~ COS_MU * exp(COS_LAMBDA * (w . n - 1)) - COS_ALPHA (PhySG).
COS_MU, COS_LAMBDA, COS_ALPHA = 32.7080, 0.0315, 31.7003
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))

VisFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class LightVisibility(NamedTuple):
    """Visibility factors in [0, 1] that scale the light SGs' amplitudes.

    diffuse: (N, M) per point and light lobe, for the diffuse term.
    specular: (N,) per point, over the specular lobe, for the specular term (all lights).
    """

    diffuse: torch.Tensor
    specular: torch.Tensor


def fibonacci_lobes(n: int) -> torch.Tensor:
    """(n, 3) float32 unit vectors spread evenly over the sphere (a Fibonacci spiral from +y to
    -y), the original's deterministic light-lobe initialisation."""
    if n < 1:
        raise InputError(f"fibonacci_lobes needs n >= 1, got {n}")
    i = torch.arange(n, dtype=torch.float64)
    y = 1.0 - 2.0 * i / (n - 1 + 1e-5)
    radius = torch.sqrt((1.0 - y * y).clamp_min(0.0))
    theta = GOLDEN_ANGLE * i
    return torch.stack([torch.cos(theta) * radius, y, torch.sin(theta) * radius], -1).float()


def split_sgs(lgtSGs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 7) SG rows -> unit axes (..., 3), sharpness |lambda| (..., 1), amplitude |mu|
    (..., 3)."""
    if lgtSGs.shape[-1] != 7:
        raise InputError(
            f"lgtSGs must be (M, 7) rows [axis, lambda, mu rgb], got {tuple(lgtSGs.shape)}"
        )
    axes = lgtSGs[..., :3] / (lgtSGs[..., :3].norm(dim=-1, keepdim=True) + TINY)
    return axes, lgtSGs[..., 3:4].abs(), lgtSGs[..., 4:7].abs()


def sg_energy(lgtSGs: torch.Tensor) -> torch.Tensor:
    """(M, 3) integral of each SG over the whole sphere: 2 pi mu / lambda (1 - exp(-2 lambda))."""
    _, lam, mu = split_sgs(lgtSGs)
    return 2.0 * math.pi * mu / lam * (1.0 - torch.exp(-2.0 * lam))


def ggx_ndf_sg(roughness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GGX normal distribution as an SG around the normal: sharpness 2 / r^4 and amplitude
    lambda / (2 pi), which integrates (times h . n) to one over the hemisphere."""
    lam = 2.0 / roughness.clamp_min(TINY) ** 4
    return lam, lam / (2.0 * math.pi)


def envmap_directions(height: int, width: int) -> torch.Tensor:
    """(H, W, 3) unit directions of an equirectangular image's pixel centres, Blender's
    convention as the original's ``compute_envmap``: +z up at row 0, azimuth +pi at column 0
    decreasing to -pi. (The original spaces rows and columns with linspace, endpoints
    included; pixel centres are what an image resized with area averaging holds.)"""
    if height < 1 or width < 1:
        raise InputError(f"envmap size must be positive, got {height}x{width}")
    polar = (torch.arange(height, dtype=torch.float32) + 0.5) * math.pi / height
    azimuth = math.pi - (torch.arange(width, dtype=torch.float32) + 0.5) * 2.0 * math.pi / width
    polar, azimuth = torch.meshgrid(polar, azimuth, indexing="ij")
    sin_polar = torch.sin(polar)
    return torch.stack(
        [torch.cos(azimuth) * sin_polar, torch.sin(azimuth) * sin_polar, torch.cos(polar)], -1
    )


def eval_sgs(lgtSGs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """(..., 3) radiance of the sum of the (M, 7) SGs in the (..., 3) unit directions."""
    axes, lam, mu = split_sgs(lgtSGs)
    flat = dirs.reshape(-1, 3).to(lgtSGs)
    weights = torch.exp(lam[:, 0] * (flat @ axes.T - 1.0))  # (P, M)
    return (weights @ mu).reshape(dirs.shape)


def sg_to_envmap(lgtSGs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W, 3) linear HDR equirectangular image of the SG lights (see envmap_directions)."""
    return eval_sgs(lgtSGs, envmap_directions(height, width).to(lgtSGs.device))


def envmap_solid_angles(height: int, width: int) -> torch.Tensor:
    """(H, 1) solid angle of one pixel in each row of an equirectangular image (sums to 4 pi)."""
    edges = torch.arange(height + 1, dtype=torch.float64) * math.pi / height
    band = torch.cos(edges[:-1]) - torch.cos(edges[1:])
    return (band * 2.0 * math.pi / width).float()[:, None]


def render_with_sg(
    lgtSGs: torch.Tensor,
    specular_reflectance: torch.Tensor,
    roughness: torch.Tensor,
    diffuse_albedo: torch.Tensor,
    normal: torch.Tensor,
    viewdirs: torch.Tensor,
    light_visibility: LightVisibility | None = None,
) -> dict[str, torch.Tensor]:
    """Shade N surface points lit by M SG lights (direct light only, as SfD).

    Args:
        lgtSGs: (M, 7) light SGs in the world frame.
        specular_reflectance: (N, 3) or broadcastable (1, 1) F0 of the Fresnel term.
        roughness: (N, 1) GGX roughness, > 0.
        diffuse_albedo: (N, 3) linear albedo.
        normal: (N, 3) unit normals, world frame.
        viewdirs: (N, 3) unit directions from the point towards the camera.
        light_visibility: per-lobe and specular visibility, None for an unshadowed scene.

    Returns:
        dict of (N, 3) linear radiance: ``sg_rgb`` = ``sg_diffuse_rgb`` + ``sg_specular_rgb``.
    """
    _check_shading_inputs(lgtSGs, roughness, diffuse_albedo, normal, viewdirs, light_visibility)
    axes, lam, mu = (t.unsqueeze(0) for t in split_sgs(lgtSGs))  # (1, M, .)
    n = normal.unsqueeze(1)  # (N, 1, 3)
    vis_diffuse = vis_specular = 1.0
    if light_visibility is not None:
        vis_diffuse = light_visibility.diffuse.unsqueeze(-1)
        vis_specular = light_visibility.specular[:, None, None]

    diffuse = cosine_weighted_integral(axes, lam, mu * vis_diffuse, n).sum(1)
    diffuse = (diffuse * diffuse_albedo / math.pi).clamp_min(0.0)

    brdf_axis, brdf_lam, brdf_mu = specular_brdf_sg(
        specular_reflectance, roughness, normal, viewdirs
    )
    prod_axis, prod_lam, prod_mu = sg_product(
        axes, lam, mu * vis_specular, brdf_axis[:, None], brdf_lam[:, None], brdf_mu[:, None]
    )
    specular = cosine_weighted_integral(prod_axis, prod_lam, prod_mu, n).sum(1).clamp_min(0.0)
    return {"sg_rgb": diffuse + specular, "sg_diffuse_rgb": diffuse, "sg_specular_rgb": specular}


def specular_brdf_sg(
    specular_reflectance: torch.Tensor,
    roughness: torch.Tensor,
    normal: torch.Tensor,
    viewdirs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The GGX specular BRDF (without the cosine) as one SG over incoming directions: the NDF SG
    warped from half vectors to the mirror direction (PhySG's spherical warp), its amplitude
    scaled by Fresnel (Schlick, UE4's exponent fit) and Smith-Schlick shadowing / (4 n.l n.v).

    Returns axis (N, 3), sharpness (N, 1), amplitude (N, 3).
    """
    ndf_lam, ndf_mu = ggx_ndf_sg(roughness)
    n_dot_v = (normal * viewdirs).sum(-1, keepdim=True).clamp_min(0.0)
    axis = _normalize(2.0 * n_dot_v * normal - viewdirs)
    lam = ndf_lam / (4.0 * n_dot_v + TINY)

    v_dot_h = (viewdirs * _normalize(axis + viewdirs)).sum(-1, keepdim=True).clamp_min(0.0)
    fresnel = specular_reflectance + (1.0 - specular_reflectance) * torch.pow(
        2.0, -(5.55473 * v_dot_h + 6.8316) * v_dot_h
    )
    n_dot_l = (axis * normal).sum(-1, keepdim=True).clamp_min(0.0)
    k = (roughness + 1.0) ** 2 / 8.0
    shadowing = _smith_g1(n_dot_l, k) * _smith_g1(n_dot_v, k)
    mu = ndf_mu * fresnel * shadowing / (4.0 * n_dot_l * n_dot_v + TINY)
    return axis, lam, mu


def _smith_g1(cos: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return cos / (cos * (1.0 - k) + k + TINY)


def sg_product(axis1, lam1, mu1, axis2, lam2, mu2):
    """The product of two SGs is an SG: axis along lam1 xi1 + lam2 xi2, sharpness its length,
    amplitude mu1 mu2 exp(lam3 - lam1 - lam2). The exponent is computed as
    2 lam1 lam2 (xi1.xi2 - 1) / (lam3 + lam1 + lam2), free of the cancellation that loses
    precision when one sharpness is far larger than the other (a mirror-like specular lobe)."""
    combined = lam1 * axis1 + lam2 * axis2
    lam3 = combined.norm(dim=-1, keepdim=True)
    axis3 = combined / (lam3 + TINY)
    dot = (axis1 * axis2).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    exponent = 2.0 * lam1 * lam2 * (dot - 1.0) / (lam3 + lam1 + lam2 + TINY)
    return axis3, lam3, mu1 * mu2 * torch.exp(exponent)


def hemisphere_integral(lam: torch.Tensor, cos_beta: torch.Tensor) -> torch.Tensor:
    """Integral over the hemisphere around n of an SG with mu = 1 whose axis makes cos_beta with
    n: PhySG's fitted blend between the integrals with the lobe on the pole (2 pi / lam
    (1 - e^-lam)) and at the antipode (2 pi / lam (e^-lam - e^-2lam))."""
    lam = lam + TINY
    inv = 1.0 / lam
    t = torch.sqrt(lam) * (1.6988 + 10.8438 * inv) / (1.0 + 6.2201 * inv + 10.2415 * inv * inv)
    e_t = torch.exp(-t)
    # s = (e^{t c} - e^{-t}) / ((1 - e^{-t}) (e^{t c} + 1)), written without overflow per sign.
    e_pos = torch.exp(-t * cos_beta.clamp_min(0.0))
    s_pos = (1.0 - e_t * e_pos) / (1.0 - e_t + e_pos - e_t * e_pos)
    e_neg = torch.exp(t * cos_beta.clamp_max(0.0))
    s_neg = (e_neg - e_t) / ((1.0 - e_t) * (e_neg + 1.0))
    s = torch.where(cos_beta >= 0, s_pos, s_neg)
    upper = 2.0 * math.pi * inv * (1.0 - torch.exp(-lam))
    lower = 2.0 * math.pi * inv * (torch.exp(-lam) - torch.exp(-2.0 * lam))
    return lower * (1.0 - s) + upper * s


def cosine_weighted_integral(axis, lam, mu, normal) -> torch.Tensor:
    """Integral over the hemisphere of n of the SG times max(w . n, 0), with the clamped cosine
    approximated as COS_MU exp(COS_LAMBDA (w . n - 1)) - COS_ALPHA. Shapes broadcast."""
    lam_cos = torch.full_like(lam, COS_LAMBDA)
    prod_axis, prod_lam, prod_mu = sg_product(normal, lam_cos, COS_MU, axis, lam, mu)
    cos_prod = (prod_axis * normal).sum(-1, keepdim=True)
    cos_sg = (axis * normal).sum(-1, keepdim=True)
    return prod_mu * hemisphere_integral(prod_lam, cos_prod) - mu * COS_ALPHA * hemisphere_integral(
        lam, cos_sg
    )


def tangent_frame(axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit vectors (..., 3) completing the unit ``axis`` to an orthonormal frame. The helper
    axis is z unless ``axis`` is near z (the original always crossed with one fixed axis, which
    degenerates for lobes along it)."""
    helper = torch.zeros_like(axis)
    near_z = axis[..., 2].abs() > 0.9
    helper[..., 2] = (~near_z).to(axis.dtype)
    helper[..., 0] = near_z.to(axis.dtype)
    u = _normalize(torch.cross(helper, axis, dim=-1))
    return u, torch.cross(axis, u, dim=-1)


def cap_directions(
    axis: torch.Tensor, lam: torch.Tensor, n_samples: int, offset: torch.Tensor | None = None
) -> torch.Tensor:
    """(..., S, 3) directions of equal solid angle covering the cap of an SG around ``axis``
    (..., 3) where it exceeds exp(-4) (about 98% of its mass; the whole sphere for lam < 2): a
    Fibonacci spiral on the cap. ``offset`` (...) rotates the spiral about the axis (radians)."""
    height = (4.0 / lam.clamp_min(TINY)).clamp_max(2.0)  # (..., 1): 1 - cos(cap angle)
    i = torch.arange(n_samples, dtype=axis.dtype, device=axis.device)
    cos_t = 1.0 - (i + 0.5) / n_samples * height
    sin_t = torch.sqrt((1.0 - cos_t * cos_t).clamp_min(0.0))
    phi = GOLDEN_ANGLE * i
    if offset is not None:
        phi = phi + offset[..., None]
    u, v = tangent_frame(axis)
    u, v, w = u.unsqueeze(-2), v.unsqueeze(-2), axis.unsqueeze(-2)
    sin_t, cos_t, phi = sin_t[..., None], cos_t[..., None], phi[..., None]
    return (torch.cos(phi) * u + torch.sin(phi) * v) * sin_t + w * cos_t


@torch.no_grad()
def sg_light_visibility(
    vis_fn: VisFn,
    points: torch.Tensor,
    normals: torch.Tensor,
    viewdirs: torch.Tensor,
    lgtSGs: torch.Tensor,
    roughness: torch.Tensor,
    n_samples: int = 25,
    n_specular_samples: int = 25,
    chunk: int = 65536,
    generator: torch.Generator | None = None,
) -> LightVisibility:
    """Visibility of each light lobe (and of the specular lobe) from each point.

    For a lobe G, V = sum_s G(w_s) max(n . w_s, 0) v(x, w_s) / sum_s G(w_s) max(n . w_s, 0)
    over ``n_samples`` equal-area directions w_s inside G's cap: the ratio of the shadowed to the
    unshadowed cosine-weighted light, so a lobe straddling the horizon is not darkened twice
    (the original counted below-horizon samples as occluded). The original's counts: 25 per
    light lobe and 25 for the specular lobe. A lobe with no sample above the horizon gets 0.
    Computed without gradients: visibility scales the light as a constant.

    Args:
        vis_fn: (K, 3) points, (K, 3) unit directions -> (K,) probability of being visible.
        points, normals, viewdirs: (N, 3) world-frame points, unit normals, unit directions
            towards the camera.
        lgtSGs: (M, 7) light SGs.
        roughness: (N, 1) GGX roughness (sets the specular lobe).
        chunk: directions per ``vis_fn`` call.
        generator: randomises each spiral's rotation (None: deterministic).
    """
    axes, lam, _ = split_sgs(lgtSGs)
    offset = _random_angles(axes.shape[:1], generator, axes.device)
    light_dirs = cap_directions(axes, lam, n_samples, offset)  # (M, S, 3)
    light_weights = torch.exp(lam * ((light_dirs * axes[:, None]).sum(-1) - 1.0))  # (M, S)
    diffuse = _lobe_visibility(
        vis_fn, points, normals, light_dirs.unsqueeze(0), light_weights.unsqueeze(0), chunk
    )

    spec_axis, spec_lam, _ = specular_brdf_sg(
        roughness.new_zeros(1, 1), roughness, normals, viewdirs
    )
    offset = _random_angles(points.shape[:1], generator, points.device)
    spec_dirs = cap_directions(spec_axis, spec_lam, n_specular_samples, offset)  # (N, S, 3)
    spec_weights = torch.exp(spec_lam * ((spec_dirs * spec_axis[:, None]).sum(-1) - 1.0))
    specular = _lobe_visibility(
        vis_fn, points, normals, spec_dirs.unsqueeze(1), spec_weights.unsqueeze(1), chunk
    )
    return LightVisibility(diffuse, specular[:, 0])


def _lobe_visibility(vis_fn, points, normals, dirs, weights, chunk) -> torch.Tensor:
    """dirs (N or 1, L, S, 3), weights (N or 1, L, S) -> (N, L) weighted mean visibility over
    the samples above each point's horizon."""
    n_points = points.shape[0]
    dirs = dirs.expand(n_points, *dirs.shape[1:])
    cos = (dirs * normals[:, None, None]).sum(-1)
    weights = weights * cos.clamp_min(0.0)
    above = cos > TINY
    index = above.nonzero(as_tuple=True)
    vis = torch.zeros_like(weights)
    query_points = points[index[0]]
    query_dirs = dirs[index]
    values = [
        vis_fn(query_points[s : s + chunk], query_dirs[s : s + chunk]).reshape(-1)
        for s in range(0, query_dirs.shape[0], chunk)
    ]
    if values:
        vis[index] = torch.cat(values).to(vis.dtype)
    total = weights.sum(-1)
    return torch.where(total > 0, (weights * vis).sum(-1) / total.clamp_min(1e-30), 0.0)


def _random_angles(shape, generator, device) -> torch.Tensor | None:
    if generator is None:
        return None
    return (torch.rand(shape, generator=generator) * 2.0 * math.pi).to(device)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + TINY)


def _check_shading_inputs(lgtSGs, roughness, albedo, normal, viewdirs, visibility) -> None:
    n = normal.shape[0]
    expected = {"normal": (normal, (n, 3)), "viewdirs": (viewdirs, (n, 3)),
                "roughness": (roughness, (n, 1)), "diffuse_albedo": (albedo, (n, 3))}  # fmt: skip
    if normal.ndim != 2:
        raise InputError(f"normal must be (N, 3), got {tuple(normal.shape)}")
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise InputError(f"{name} must be {shape} like normal, got {tuple(tensor.shape)}")
    if lgtSGs.ndim != 2:
        raise InputError(f"lgtSGs must be (M, 7), got {tuple(lgtSGs.shape)}")
    if visibility is not None:
        m = lgtSGs.shape[0]
        if tuple(visibility.diffuse.shape) != (n, m) or tuple(visibility.specular.shape) != (n,):
            raise InputError(
                f"light_visibility must hold diffuse ({n}, {m}) and specular ({n},), got "
                f"{tuple(visibility.diffuse.shape)} and {tuple(visibility.specular.shape)}"
            )
