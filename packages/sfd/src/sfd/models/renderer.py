"""``DupNeuSRenderer``: NeuS volume rendering of N copies of one canonical SDF (the authors'
``model/duplicate.py``), with their module names so state dicts match key for key.

A world point is rendered in the frame of one instance: for primary rays, the instance of the
ray's pixel in the segmentation (background rays: one random instance per batch, as the
original); for secondary rays (visibility), the instance whose proxy SDF is lowest there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geomkit.errors import ConfigError
from geomkit.rays import sample_pdf
from sfd.models.geometry import (
    FourierColorNetwork,
    ImplicitNetwork,
    Regression,
    SingleVarianceNetwork,
)
from sfd.models.material import EnvmapMaterialNetwork
from sfd.models.pose import ObjectPose
from sfd.models.visibility import SirenVisNetwork

INSTANCE_RAYS = 64  # rays per batch supervising the instance classifier


class DupNeuSRenderer(nn.Module):
    def __init__(
        self, conf: dict, poses: ObjectPose, scene_center: torch.Tensor, scene_radius: float
    ):
        super().__init__()
        self.n_samples, self.n_importance = conf["n_samples"], conf["n_importance"]
        self.up_sample_steps, self.perturb = conf["up_sample_steps"], conf["perturb"]
        self.weight_threshold = conf["weight_threshold"]
        self.register_buffer("scene_center", scene_center.float().clone(), persistent=False)
        self.scene_radius = float(scene_radius)
        for key in (
            "use_triplane",
            "use_hash",
            "use_hessian",
            "use_colmap_constraint",
            "use_numerical_gradient",
        ):
            if conf[key]:
                raise ConfigError(
                    f"model.{key} is an ablation of the original not implemented here; set it false"
                )
        if not conf["use_siren_vis"]:
            raise ConfigError(
                "model.use_siren_vis false (the original's plain VisNetwork) is not implemented"
            )
        features = conf["feature_vector_size"]
        self.sdf_network = ImplicitNetwork(features, **conf["implicit_network"])
        self.deviation_network = SingleVarianceNetwork(**conf["variance_network"])
        self.rendering_network = FourierColorNetwork(features, **conf["rendering_network"])
        self.envmap_material_network = EnvmapMaterialNetwork(**conf["envmap_material_network"])
        self.visibility_network = SirenVisNetwork(**conf["visibility_network"])
        self.point_classify_network = Regression(**conf["transformation_network_regress"])
        self.obj_poses = poses

    @property
    def n_visible(self) -> int:
        return self.obj_poses.get_inv_pose().shape[0]

    # ---- instances -------------------------------------------------------------------------
    def proxy_sdf(self, points: torch.Tensor) -> torch.Tensor:
        """(P, V) proxy SDF of world points in each instance's canonical frame."""
        inv = self.obj_poses.get_inv_pose()
        local = torch.einsum("vij,pj->vpi", inv[:, :3, :3], points) + inv[:, None, :3, 3]
        return self.point_classify_network(local).T

    def instance_of(self, points: torch.Tensor, seg: torch.Tensor | None) -> torch.Tensor:
        """(P,) 0-based instance per point: from the per-point segmentation, else the proxy."""
        if seg is None:
            with torch.no_grad():
                return self.proxy_sdf(points).argmin(-1)
        index = seg - 1
        background = index < 0
        if background.any():
            index = torch.where(background, torch.randint(self.n_visible, ()), index)
        return index

    def to_local(
        self, points: torch.Tensor, instance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 3) canonical points and the (P, 3, 3) world-to-canonical linear parts."""
        inv = self.obj_poses.get_inv_pose()[instance]
        return (inv[:, :3, :3] @ points[:, :, None])[..., 0] + inv[:, :3, 3], inv[:, :3, :3]

    def canonical_sdf(self, points: torch.Tensor, seg: torch.Tensor | None) -> torch.Tensor:
        local, _ = self.to_local(points, self.instance_of(points, seg))
        return self.sdf_network.sdf(local)

    # ---- sampling --------------------------------------------------------------------------
    def sample_depths(self, rays_o, rays_d, near, far, seg, perturb: float) -> torch.Tensor:
        """Uniform samples plus NeuS's up-sampling at increasing sharpness 64 * 2^i."""
        batch = len(rays_o)
        z = near + (far - near) * torch.linspace(0.0, 1.0, self.n_samples)[None]
        if perturb > 0:
            z = z + (torch.rand(batch, 1) - 0.5) * (2 * self.scene_radius) / self.n_samples
        if self.n_importance <= 0:
            return z
        per_step = self.n_importance // self.up_sample_steps
        with torch.no_grad():
            sdf = self._sdf_along(rays_o, rays_d, z, seg)
            for i in range(self.up_sample_steps):
                new_z = self._up_sample(rays_o, rays_d, z, sdf, per_step, 64 * 2**i)
                z, order = torch.sort(torch.cat([z, new_z], -1), -1)
                if i + 1 < self.up_sample_steps:
                    sdf = torch.cat([sdf, self._sdf_along(rays_o, rays_d, new_z, seg)], -1)
                    sdf = sdf.gather(1, order)
        return z

    def _sdf_along(self, rays_o, rays_d, z, seg) -> torch.Tensor:
        points = (rays_o[:, None] + rays_d[:, None] * z[..., None]).reshape(-1, 3)
        seg_points = None if seg is None else seg.repeat_interleave(z.shape[1])
        return self.canonical_sdf(points, seg_points).reshape(z.shape)

    def _up_sample(self, rays_o, rays_d, z, sdf, n_new: int, inv_s: float) -> torch.Tensor:
        points = rays_o[:, None] + rays_d[:, None] * z[..., None]
        radius = (points - self.scene_center).norm(dim=-1)
        inside = (radius[:, :-1] < self.scene_radius) | (radius[:, 1:] < self.scene_radius)
        prev_sdf, next_sdf = sdf[:, :-1], sdf[:, 1:]
        dist = z[:, 1:] - z[:, :-1]
        mid_sdf = (prev_sdf + next_sdf) * 0.5
        cos = (next_sdf - prev_sdf) / (dist + 1e-5)
        cos = torch.minimum(torch.cat([torch.zeros_like(cos[:, :1]), cos[:, :-1]], -1), cos)
        cos = (cos.clip(-1e3, 0.0) * inside).clip(-1e3, 0.0)
        prev_cdf = torch.sigmoid((mid_sdf - cos * dist * 0.5) * inv_s)
        next_cdf = torch.sigmoid((mid_sdf + cos * dist * 0.5) * inv_s)
        alpha = (prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)
        weights = alpha * _transmittance(alpha)
        quantiles = torch.linspace(0.5 / n_new, 1 - 0.5 / n_new, n_new)
        return sample_pdf(z, weights, n_new, quantiles=quantiles)

    # ---- rendering -------------------------------------------------------------------------
    def forward(
        self,
        rays_o: torch.Tensor,
        rays_d: torch.Tensor,
        near: torch.Tensor,
        far: torch.Tensor,
        seg: torch.Tensor | None,
        stage: str = "Geo",
        perturb: float | None = None,
        cos_anneal_ratio: float = 1.0,
        with_instances: bool = False,
    ) -> dict:
        """Render rays (R, 3); ``near``/``far`` (R, 1); ``seg`` (R,) instance ids or None.

        ``stage`` Geo computes the proxy colour and keeps the graph for the eikonal loss;
        ``with_instances`` adds the classifier's supervision terms (training) or its per-pixel
        prediction (plots).
        """
        perturb = self.perturb if perturb is None else perturb
        z = self.sample_depths(rays_o, rays_d, near, far, seg, perturb)
        sample_dist = (far[0, 0] - near[0, 0]) / self.n_samples
        return self._render_core(
            rays_o, rays_d, z, sample_dist, seg, stage, cos_anneal_ratio, with_instances
        )

    def _render_core(
        self, rays_o, rays_d, z, sample_dist, seg, stage, cos_anneal_ratio, with_instances
    ):
        batch, n = z.shape
        geo = stage == "Geo"
        dists = torch.cat([z[:, 1:] - z[:, :-1], sample_dist.expand(batch, 1)], -1)
        mid_z = z + dists * 0.5
        points_grid = rays_o[:, None] + rays_d[:, None] * mid_z[..., None]
        points = points_grid.reshape(-1, 3)
        dirs = rays_d[:, None].expand(batch, n, 3).reshape(-1, 3)
        seg_points = None if seg is None else seg.repeat_interleave(n)
        instance = self.instance_of(points, seg_points)
        with torch.enable_grad():
            points_in = points.detach().requires_grad_(True)
            local, inv_rot = self.to_local(points_in, instance)
            output = self.sdf_network(local)
            sdf, features = output[:, :1], output[:, 1:]
            gradients = torch.autograd.grad(
                sdf.sum(), points_in, create_graph=geo and self.training
            )[0]
        if not (geo and self.training):
            sdf, features = sdf.detach(), features.detach()
        normals = gradients / (gradients.norm(dim=1, keepdim=True) + 1e-6)
        normals_local = F.normalize((inv_rot @ normals[:, :, None])[..., 0], dim=1, eps=1e-6)
        inv_s = self.deviation_network.inv_s()
        true_cos = (dirs * normals).sum(-1, keepdim=True)
        iter_cos = -(
            F.relu(-true_cos * 0.5 + 0.5) * (1.0 - cos_anneal_ratio)
            + F.relu(-true_cos) * cos_anneal_ratio
        )
        half_step = iter_cos * dists.reshape(-1, 1) * 0.5
        prev_cdf = torch.sigmoid((sdf - half_step) * inv_s)
        next_cdf = torch.sigmoid((sdf + half_step) * inv_s)
        alpha = ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).reshape(batch, n).clip(0.0, 1.0)
        radius = (points - self.scene_center).norm(dim=-1).reshape(batch, n)
        inside = (radius < self.scene_radius).float()
        relaxed = (radius < self.scene_radius * 1.2).float()
        weights = alpha * _transmittance(alpha)
        weights_sum = weights.sum(-1, keepdim=True)
        eikonal = (gradients.reshape(batch, n, 3).norm(dim=-1) - 1.0) ** 2
        eikonal = eikonal.nan_to_num(0.0, 0.0, 0.0)
        out = {
            "weights": weights,
            "weights_sum": weights_sum,
            "network_object_mask": weights_sum[:, 0] > self.weight_threshold,
            "surface_points": (points_grid * weights[..., None]).sum(1),
            "surface_points_local": (local.reshape(batch, n, 3) * weights[..., None]).sum(1),
            "surface_normal": _weighted_unit(
                normals.reshape(batch, n, 3) * inside[..., None], weights
            ),
            "surface_normal_local": _weighted_unit(normals_local.reshape(batch, n, 3), weights),
            "gradient_error": (relaxed * eikonal).sum() / (relaxed.sum() + 1e-5),
            "s_val": 1.0 / inv_s,
        }
        if geo:
            shaded = self.rendering_network(
                local, normals_local, features, points - self.scene_center, normals, dirs
            )
            out["color"] = (shaded["color"].reshape(batch, n, 3) * weights[..., None]).sum(1)
            out["albedo"] = (shaded["albedo"].reshape(batch, n, 3) * weights[..., None]).sum(1)
        if with_instances and self.training and seg is not None:
            out.update(self._instance_supervision(points_grid, weights, seg))
        elif with_instances:
            with torch.no_grad():
                proxy = self.proxy_sdf(points).reshape(batch, n, -1)
            out["surface_proxy_pred_class"] = (proxy * weights[..., None]).sum(1).argmin(-1)
        return out

    def _instance_supervision(self, points_grid, weights, seg) -> dict:
        """Proxy and network SDF of up to 64 foreground rays' samples in every instance frame,
        weight-averaged along each ray (the proxy with detached weights)."""
        candidates = torch.nonzero(seg > 0)[:, 0]
        if len(candidates) == 0:
            return {}
        chosen = candidates[torch.randperm(len(candidates))[:INSTANCE_RAYS]]
        points = points_grid[chosen].reshape(-1, 3)
        proxy = self.proxy_sdf(points)
        inv = self.obj_poses.get_inv_pose()
        local = torch.einsum("vij,pj->vpi", inv[:, :3, :3], points) + inv[:, None, :3, 3]
        network = self.sdf_network.sdf(local.reshape(-1, 3)).reshape(len(inv), -1).T
        w = weights[chosen][..., None]
        count = len(chosen)
        return {
            "select_proxy_sdf": (w.detach() * proxy.reshape(count, -1, len(inv))).sum(1),
            "select_network_sdf": (w * network.reshape(count, -1, len(inv))).sum(1),
            "select_gt_seg": seg[chosen] - 1,
        }


def _transmittance(alpha: torch.Tensor) -> torch.Tensor:
    ones = torch.ones_like(alpha[:, :1])
    return torch.cumprod(torch.cat([ones, 1.0 - alpha + 1e-7], -1), -1)[:, :-1]


def _weighted_unit(vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    summed = (vectors * weights[..., None]).sum(1)
    return summed / (summed.norm(dim=1, keepdim=True) + 1e-6)
