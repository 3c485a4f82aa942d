"""The whole CoCo-INR model (the authors' ``VolSDFNetworkPlusplus``): VolSDF's SDF volume
rendering of the foreground inside the radius-``scene_bounding_sphere`` sphere, NeRF++'s
inverted-sphere background outside it, every network reading the codebook through attention.

Keys as the authors' checkpoints: ``implicit_network``, ``rendering_network``, ``density.beta``,
``bg_implicit_network``, ``bg_rendering_network``, except that the frozen codebook is stored
once (``codebook``) instead of once per network (cocoinr.checkpoints maps the authors' files).
With ``use_attention = false`` the same code is plain VolSDF (with the NeRF++ background).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from cocoinr.models.implicit import ImplicitAttentionNetwork
from cocoinr.models.rendering import RenderingAttentionNetwork
from cocoinr.models.sampler import ErrorBoundSampler
from geomkit.sdf import LaplaceDensity

NETWORKS = ("implicit_network", "rendering_network", "bg_implicit_network", "bg_rendering_network")


class CocoVolSDF(nn.Module):
    """Built from a config's ``model`` block (a plain nested dict).

    Args:
        conf: the ``model`` section (see confs/dtu.conf).
        codebook: (n_codes, dim) frozen codebook; required when ``conf["use_attention"]``.
    """

    def __init__(self, conf: Mapping, codebook: torch.Tensor | None = None):
        super().__init__()
        self.use_attention = bool(conf.get("use_attention", True))
        self.original_eikonal_bug = bool(conf.get("original_eikonal_bug", False))
        self.scene_bounding_sphere = float(conf["scene_bounding_sphere"])
        if self.use_attention:
            if codebook is None:
                raise ValueError("the attention needs a codebook (or model.use_attention = false)")
            self.register_buffer("codebook", codebook.detach().float().clone())
        dim = codebook.shape[1] if self.use_attention else None
        size, bg = int(conf["feature_vector_size"]), conf["bg_network"]
        bg_size = int(bg["feature_vector_size"])
        implicit = conf["implicit_network"]
        self.implicit_network = ImplicitAttentionNetwork(dim, size, 0.0, **implicit)
        self.rendering_network = RenderingAttentionNetwork(dim, size, **conf["rendering_network"])
        self.density = LaplaceDensity(conf["density"]["params_init"]["beta"],
                                      conf["density"]["beta_min"])  # fmt: skip
        self.ray_sampler = ErrorBoundSampler(self.scene_bounding_sphere, inverse_sphere_bg=True,
                                             **conf["ray_sampler"])  # fmt: skip
        bg_implicit, bg_rendering = bg["implicit_network"], bg["rendering_network"]
        self.bg_implicit_network = ImplicitAttentionNetwork(dim, bg_size, 0.0, **bg_implicit)
        self.bg_rendering_network = RenderingAttentionNetwork(dim, bg_size, **bg_rendering)

    def latents(self) -> dict[str, torch.Tensor | None]:
        """Each network's codebook-attention output. They depend on no input: one call per
        optimisation step (or per evaluation) serves every ray and network call."""
        if not self.use_attention:
            return dict.fromkeys(NETWORKS)
        return {name: getattr(self, name).latents(self.codebook) for name in NETWORKS}

    def sdf(self, points: torch.Tensor, latents: Mapping | None = None) -> torch.Tensor:
        """(..., 3) points of the normalised frame -> (...,) foreground signed distances."""
        latents = self.latents() if latents is None else latents
        return self.implicit_network.sdf(points, latents["implicit_network"])[..., 0]

    def forward(self, origins: torch.Tensor, directions: torch.Tensor,
                latents: Mapping | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """(R, 3) ray origins and unit directions -> ``rgb_values`` (R, 3); in training also
        ``grad_theta`` (R, 2, 3), the SDF gradient at the eikonal points; otherwise
        ``normal_map`` (R, 3) (weighted unit normals) and ``opacity`` (R,) of the foreground."""
        latents = self.latents() if latents is None else latents
        fg_latents = latents["implicit_network"]
        sampled = self.ray_sampler.get_z_vals(
            directions, origins, lambda p: self.implicit_network.sdf(p, fg_latents), self.density,
            training=self.training,
        )  # fmt: skip
        z_vals, z_max = sampled.z_vals[:, :-1], sampled.z_vals[:, -1]
        points = origins[:, None] + z_vals[..., None] * directions[:, None]
        view_dirs = directions[:, None].expand_as(points)
        sdf, features, gradients = self.implicit_network.get_outputs(
            points, fg_latents, create_graph=torch.is_grad_enabled()
        )
        rgb = self.rendering_network(points, gradients, view_dirs, features,
                                     latents["rendering_network"])  # fmt: skip
        weights, bg_transmittance = self._foreground_weights(z_vals, z_max, sdf[..., 0])
        rgb_values = (weights[..., None] * rgb).sum(-2)
        rgb_values = rgb_values + bg_transmittance[:, None] * self._background(
            origins, directions, sampled.z_vals_bg, latents
        )
        output = {"rgb_values": rgb_values}
        if self.training:
            z_eik = sampled.z_samples_eik
            output["grad_theta"] = self._eikonal_gradients(origins, directions, z_eik, fg_latents)
        else:
            normals = gradients.detach() / gradients.detach().norm(dim=-1, keepdim=True)
            output["normal_map"] = (weights[..., None] * normals).sum(-2)
            output["opacity"] = weights.sum(-1)
        return output

    def _foreground_weights(self, z_vals, z_max, sdf):
        """VolSDF's quadrature: weights (R, N) and the transmittance left past z_max (R,)."""
        density = self.density(sdf)
        dists = torch.cat([z_vals[:, 1:] - z_vals[:, :-1], (z_max - z_vals[:, -1])[:, None]], -1)
        free_energy = dists * density
        shifted = torch.cat([torch.zeros_like(free_energy[:, :1]), free_energy], dim=-1)
        transmittance = torch.exp(-torch.cumsum(shifted, dim=-1))
        weights = (1 - torch.exp(-free_energy)) * transmittance[:, :-1]
        return weights, transmittance[:, -1]

    def _background(self, origins, directions, z_vals_bg, latents) -> torch.Tensor:
        """NeRF++'s inverted-sphere background colour (R, 3) along inverse depths (R, M)."""
        z_vals_bg = torch.flip(z_vals_bg, dims=[-1])  # far (1/r) to infinity (0)
        dirs = directions[:, None].expand(*z_vals_bg.shape, 3)
        locs = origins[:, None].expand(*z_vals_bg.shape, 3)
        points = inverted_sphere_points(locs, dirs, z_vals_bg, self.scene_bounding_sphere)
        output = self.bg_implicit_network(points, latents["bg_implicit_network"])
        sigma, features = output[..., 0].abs(), output[..., 1:]  # NeRF++'s density |sigma|
        rgb = self.bg_rendering_network(None, None, dirs, features,
                                        latents["bg_rendering_network"])  # fmt: skip
        dists = z_vals_bg[:, :-1] - z_vals_bg[:, 1:]
        dists = torch.cat([dists, torch.full_like(dists[:, :1], 1e10)], -1)
        free_energy = dists * sigma
        shifted = torch.cat([torch.zeros_like(free_energy[:, :1]), free_energy[:, :-1]], -1)
        weights = (1 - torch.exp(-free_energy)) * torch.exp(-torch.cumsum(shifted, dim=-1))
        return (weights[..., None] * rgb).sum(-2)

    def _eikonal_gradients(self, origins, directions, z_eik, latents) -> torch.Tensor:
        """The SDF gradient at one uniform point in the bounding cube and one point near the
        surface per ray. The original computes the latter from the ray direction instead of
        the camera centre (``original_eikonal_bug`` reproduces it)."""
        r = self.scene_bounding_sphere
        uniform = torch.empty_like(origins).uniform_(-r, r)
        start = directions if self.original_eikonal_bug else origins
        near = start + z_eik.reshape(-1, 1) * directions
        points = torch.stack([uniform, near], dim=1)
        return self.implicit_network.gradient(points, latents)


def inverted_sphere_points(origins, directions, inverse_depth, radius: float) -> torch.Tensor:
    """NeRF++'s background parametrisation: the point at distance 1/d along each ray outside
    the radius-``radius`` sphere, as (unit direction from the centre, d), shape (..., 4)."""
    o_dot_d = (directions * origins).sum(-1)
    under_sqrt = o_dot_d**2 - ((origins**2).sum(-1) - radius**2)
    d_sphere = torch.sqrt(under_sqrt) - o_dot_d
    p_sphere = origins + d_sphere[..., None] * directions
    p_mid_norm = (origins - o_dot_d[..., None] * directions).norm(dim=-1)
    axis = torch.nn.functional.normalize(torch.cross(origins, p_sphere, dim=-1), dim=-1)
    angle = (torch.asin(p_mid_norm / radius) - torch.asin(p_mid_norm * inverse_depth))[..., None]
    rotated = (  # Rodrigues' rotation of p_sphere about the axis
        p_sphere * torch.cos(angle)
        + torch.cross(axis, p_sphere, dim=-1) * torch.sin(angle)
        + axis * (axis * p_sphere).sum(-1, keepdim=True) * (1.0 - torch.cos(angle))
    )
    rotated = rotated / rotated.norm(dim=-1, keepdim=True)
    return torch.cat([rotated, inverse_depth[..., None]], dim=-1)
