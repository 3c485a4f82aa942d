"""The Mat stage: the spatially varying BRDF of the canonical object and the SG environment light
(``envmap_material_network``), and the Mat losses (the original's NeuSMatLoss).

A canonical point is encoded (NeRF positional encoding of ``multires`` bands) into a latent code
(sigmoid of the encoder output) that a decoder turns into albedo, roughness and, when the
metallic range allows it, metallic. Sharing the canonical frame shares the material across the
duplicates. Key names follow the original (``brdf_encoder_layer.0.weight``.., ``lgtSGs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from geomkit.errors import ConfigError
from geomkit.sdf import embedding_width, nerf_embedding
from sfd.models.sg import fibonacci_lobes, sg_energy

CONFIG = "model.envmap_material_network"
LIGHT_ENERGY = 0.8 * 2.0 * math.pi  # total initial energy per channel of the light SGs
LATENT_NOISE = 0.01  # std of the latent perturbation of the smoothness loss


class EnvmapMaterialNetwork(nn.Module):
    """Canonical point -> BRDF, plus ``num_lgt_sgs`` learnable world-frame light SGs.

    Args (config ``model.envmap_material_network``):
        multires: positional-encoding bands of the input point (0: raw xyz).
        brdf_encoder_dims, brdf_decoder_dims: hidden widths (LeakyReLU 0.2).
        num_lgt_sgs: light SGs, rows [axis, lambda, mu rgb].
        upper_hemi: fold the lobes' y component to >= 0 (light from y >= 0 only).
        specular_albedo: F0 of dielectrics (0.02).
        latent_dim: width of the sigmoid latent code.
        metallic_range: [lo, hi]; hi == 0 means no metallic head (metallic 0).
        albedo_range: albedo clip range in sRGB, applied as [lo, hi] ** 2.2 (linear).
        roughness_range: clip of the roughness, which the decoder maps to [0.09, 0.99].
    """

    def __init__(
        self,
        multires: int = 0,
        brdf_encoder_dims: Sequence[int] = (512, 512, 512, 512),
        brdf_decoder_dims: Sequence[int] = (128, 128),
        num_lgt_sgs: int = 32,
        upper_hemi: bool = False,
        specular_albedo: float = 0.02,
        latent_dim: int = 32,
        metallic_range: Sequence[float] = (0.0, 0.0),
        albedo_range: Sequence[float] = (0.117, 0.941),
        roughness_range: Sequence[float] = (0.0, 1.0),
    ):
        super().__init__()
        _check_config(
            multires, num_lgt_sgs, latent_dim, metallic_range, albedo_range, roughness_range
        )
        self.multires = int(multires)
        self.upper_hemi = bool(upper_hemi)
        self.default_specular_albedo = float(specular_albedo)
        self.metallic_range = tuple(float(v) for v in metallic_range)
        self.albedo_range = tuple(float(v) ** 2.2 for v in albedo_range)
        self.roughness_range = tuple(float(v) for v in roughness_range)
        self.brdf_encoder_layer = _mlp(
            embedding_width(3, self.multires), brdf_encoder_dims, latent_dim
        )
        self.brdf_decoder_layer = _mlp(latent_dim, brdf_decoder_dims, 4)
        decoder_width = int(brdf_decoder_dims[-1]) if len(brdf_decoder_dims) else int(latent_dim)
        self.brdf_matallic_layer = (
            nn.Linear(decoder_width, 1) if self.metallic_range[1] != 0 else None
        )  # sic: the original's key name
        # Saved by the original (never trained or read); kept so its state dicts load strictly.
        self.specular_reflectance = nn.Parameter(torch.zeros(1, 1), requires_grad=False)
        self.lgtSGs = nn.Parameter(initial_light_sgs(int(num_lgt_sgs), self.upper_hemi))

    def get_light(self) -> torch.Tensor:
        """(M, 7) light SGs as rendered (lobes folded to y >= 0 with ``upper_hemi``)."""
        return fold_upper_hemi(self.lgtSGs) if self.upper_hemi else self.lgtSGs

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) canonical points -> (N, latent_dim) latent logits (before the sigmoid)."""
        return self.brdf_encoder_layer(nerf_embedding(points, self.multires))

    def forward(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3) canonical points -> the original's output dict:

        ``sg_lgtSGs`` (M, 7); ``sg_diffuse_albedo`` (N, 3) linear, clipped; ``sg_roughness``
        (N, 1); ``sg_metallic`` (N, 1); ``sg_specular_reflectance`` (N, 3) F0;
        ``random_xi_diffuse_albedo`` (N, 3, unclipped as the original) and
        ``random_xi_roughness`` (N, 1) decoded from the latent plus N(0, 0.01^2) noise, for
        the smoothness loss; ``brdf_latent`` (N, latent_dim) logits, for the sparsity loss.
        """
        logits = self.encode(points)
        latent = torch.sigmoid(logits)
        feature = self.brdf_decoder_layer[:-1](latent)
        brdf = torch.sigmoid(self.brdf_decoder_layer[-1](feature))
        albedo = brdf[:, :3].clamp(*self.albedo_range)
        roughness = self._roughness(brdf)
        if self.brdf_matallic_layer is None:
            metallic = torch.zeros_like(roughness)
        else:
            metallic = torch.sigmoid(self.brdf_matallic_layer(feature)).clamp(*self.metallic_range)
        specular = ((1.0 - metallic) * self.default_specular_albedo + metallic * albedo).clamp(0, 1)
        noisy = torch.sigmoid(
            self.brdf_decoder_layer(latent + torch.randn_like(latent) * LATENT_NOISE)
        )
        return {
            "sg_lgtSGs": self.get_light(),
            "sg_specular_reflectance": specular,
            "sg_roughness": roughness,
            "sg_metallic": metallic,
            "sg_diffuse_albedo": albedo,
            "random_xi_roughness": self._roughness(noisy),
            "random_xi_diffuse_albedo": noisy[:, :3],
            "brdf_latent": logits,
        }

    def _roughness(self, brdf: torch.Tensor) -> torch.Tensor:
        return (brdf[:, 3:4] * 0.9 + 0.09).clamp(*self.roughness_range)


def _mlp(d_in: int, hidden: Sequence[int], d_out: int) -> nn.Sequential:
    """Linear layers with LeakyReLU(0.2) between them (keys 0, 2, 4, ..)."""
    layers: list[nn.Module] = []
    width = d_in
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.LeakyReLU(0.2)]
        width = int(h)
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def initial_light_sgs(num: int, upper_hemi: bool = False) -> torch.Tensor:
    """(num, 7) initial light SGs as the original: sharpness 10 + 20 |N(0,1)|, grey amplitudes
    |N(0,1)| scaled so the total energy is 0.8 * 2 pi per channel, axes on two copies of a
    Fibonacci sphere (num // 2 and num - num // 2 points). Uses the global torch RNG."""
    sgs = torch.randn(num, 7)
    sgs[:, 5:] = sgs[:, 4:5]
    sgs[:, 3:4] = 10.0 + (sgs[:, 3:4] * 20.0).abs()
    sgs[:, 4:] = sgs[:, 4:].abs() * LIGHT_ENERGY / sg_energy(sgs).sum(0, keepdim=True)
    half = num // 2
    if half:
        sgs[:half, :3] = fibonacci_lobes(half)
    sgs[half:, :3] = fibonacci_lobes(num - half)
    return fold_upper_hemi(sgs) if upper_hemi else sgs


def fold_upper_hemi(sgs: torch.Tensor) -> torch.Tensor:
    """Light SGs with the axes' y component made non-negative."""
    return torch.cat([sgs[:, :1], sgs[:, 1:2].abs(), sgs[:, 2:]], dim=-1)


def _check_config(multires, num_lgt_sgs, latent_dim, metallic_range, albedo_range, roughness_range):
    if int(multires) < 0:
        raise ConfigError(f"{CONFIG}.multires must be >= 0, got {multires}")
    if int(num_lgt_sgs) < 1 or int(latent_dim) < 1:
        raise ConfigError(
            f"{CONFIG}.num_lgt_sgs and latent_dim must be >= 1, got {num_lgt_sgs}, {latent_dim}"
        )
    ranges = {"metallic_range": metallic_range, "albedo_range": albedo_range,
              "roughness_range": roughness_range}  # fmt: skip
    for key, pair in ranges.items():
        if len(pair) != 2 or not 0.0 <= float(pair[0]) <= float(pair[1]) <= 1.0:
            raise ConfigError(
                f"{CONFIG}.{key} must be [lo, hi] with 0 <= lo <= hi <= 1, got {pair}"
            )


def kl_sparsity_loss(latent_logits: torch.Tensor, rho: float = 0.05) -> torch.Tensor:
    """Sparse-autoencoder KL: the mean activation rho_hat of each latent unit (sigmoid of the
    logits, averaged over the N points) against the target rho, KL(rho || rho_hat) averaged over
    units."""
    rho_hat = torch.sigmoid(latent_logits).mean(0)
    kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
    return kl.mean()


def latent_smooth_loss(material: dict[str, torch.Tensor]) -> torch.Tensor:
    """L1 between the BRDF decoded from the latent and from the latent plus small noise
    (albedo and roughness): a smooth decoder, so nearby codes mean similar materials."""
    albedo = F.l1_loss(material["sg_diffuse_albedo"], material["random_xi_diffuse_albedo"])
    rough = F.l1_loss(material["sg_roughness"], material["random_xi_roughness"])
    return albedo + rough


def metallic_loss(metallic: torch.Tensor) -> torch.Tensor:
    """mean m (1 - m): pushes metallic towards 0 or 1."""
    return (metallic * (1.0 - metallic)).mean()


class NeuSMatLoss(nn.Module):
    """The Mat loss, config block ``mat_loss``: sg_rgb_weight * image loss (L1 or L2 on linear
    RGB) + kl_weight * KL sparsity (rho 0.05) + latent_smooth_weight * latent smoothness +
    metal_reg_weight * m(1 - m)."""

    def __init__(
        self,
        sg_rgb_weight: float,
        kl_weight: float,
        latent_smooth_weight: float,
        metal_reg_weight: float = 0.01,
        loss_type: str = "L1",
    ):
        super().__init__()
        if loss_type not in ("L1", "L2"):
            raise ConfigError(f"mat_loss.loss_type must be L1 or L2, got {loss_type!r}")
        self.sg_rgb_weight = sg_rgb_weight
        self.kl_weight = kl_weight
        self.latent_smooth_weight = latent_smooth_weight
        self.metal_reg_weight = metal_reg_weight
        self.img_loss = F.l1_loss if loss_type == "L1" else F.mse_loss

    def forward(
        self,
        material: dict[str, torch.Tensor],
        rgb_pred: torch.Tensor,
        rgb_gt: torch.Tensor,
        rgb_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses over N surface hits.

        Args:
            material: EnvmapMaterialNetwork output at the N hit points.
            rgb_pred, rgb_gt: (N, 3) rendered and true linear RGB.
            rgb_mask: (N,) bool, the hits inside the true mask (the original compares colour
                on rendered-hit AND true-mask pixels; the regularisers use all hits).
        """
        if rgb_mask is not None:
            rgb_pred, rgb_gt = rgb_pred[rgb_mask], rgb_gt[rgb_mask]
        zero = material["brdf_latent"].sum() * 0.0
        rgb = self.img_loss(rgb_pred, rgb_gt) if rgb_pred.shape[0] else zero
        kl, smooth, metal = zero, zero, zero
        if material["brdf_latent"].shape[0]:
            kl = kl_sparsity_loss(material["brdf_latent"])
            smooth = latent_smooth_loss(material)
            metal = metallic_loss(material["sg_metallic"]) * self.metal_reg_weight
        total = (
            self.sg_rgb_weight * rgb
            + self.kl_weight * kl
            + self.latent_smooth_weight * smooth
            + metal
        )
        return {"sg_rgb_loss": rgb, "kl_loss": kl, "latent_smooth_loss": smooth,
                "metal_loss": metal, "sg_total_loss": total}  # fmt: skip
