"""The Geo-stage losses (the authors' ``NeuSLoss`` and ``PointTransformationLoss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geomkit.errors import ConfigError


def image_loss(loss_type: str):
    if loss_type == "L1":
        return F.l1_loss
    if loss_type == "L2":
        return F.mse_loss
    raise ConfigError(f"loss_type must be L1 or L2, got {loss_type!r}")


def geometry_loss(out: dict, rgb, mask, conf: dict, normal_prior=None, w2c_rotation=None) -> dict:
    """Colour on hit pixels + 0.5 colour->0 on background + eikonal + BCE(weights_sum, mask)
    [+ the monocular normal prior on pixels both masks agree on].

    Args:
        out: the renderer's Geo output; rgb (R, 3) linear; mask (R,) bool ground truth.
        conf: the ``loss`` config block.
        normal_prior: (R, 3) in [0, 1] (camera frame), or None.
        w2c_rotation: (3, 3) world-to-camera rotation, needed with ``normal_prior``.
    """
    compare = image_loss(conf["loss_type"])
    hit = out["network_object_mask"]
    color = out["color"]
    color_loss = _masked(compare, color, rgb, hit) + 0.5 * _masked(
        compare, color, torch.zeros_like(rgb), ~mask
    )
    eikonal = out["gradient_error"] * conf["eikonal_weight"]
    weights_sum = out["weights_sum"][:, 0].clip(1e-3, 1.0 - 1e-4)
    mask_loss = F.binary_cross_entropy(weights_sum, mask.float()) * conf["mask_weight"]
    normal_loss = torch.zeros(())
    if normal_prior is not None:
        both = mask & hit
        camera = (w2c_rotation @ out["surface_normal"][:, :, None])[..., 0]
        camera = ((camera + 1) / 2).clip(0, 1)
        normal_loss = _normal_prior_loss(camera[both], normal_prior[both]) * conf["normal_weight"]
    total = color_loss + eikonal + mask_loss + normal_loss
    return {"neus_total_loss": total, "color_loss": color_loss, "eikonal_loss": eikonal,
            "mask_loss": mask_loss, "normal_loss": normal_loss}  # fmt: skip


def _masked(compare, pred, target, mask) -> torch.Tensor:
    if not mask.any():
        return torch.zeros((), dtype=pred.dtype)
    return compare(pred[mask], target[mask])


def _normal_prior_loss(pred, prior) -> torch.Tensor:
    """0.05 (3 smooth-L1 + (1 - cos)) between unit vectors of the (n + 1) / 2 encodings, as the
    original compares them."""
    if len(pred) == 0:
        return torch.zeros(())
    pred, prior = F.normalize(pred, dim=-1), F.normalize(prior, dim=-1)
    return (F.smooth_l1_loss(pred, prior) * 3 + (1.0 - (pred * prior).sum(-1)).mean()) * 0.05


def instance_loss(out: dict, conf: dict) -> dict:
    """Distil the network SDF into the proxy (MSE) and require the true instance to have the
    lowest SDF, for both (hinge)."""
    if "select_gt_seg" not in out:
        zero = torch.zeros(())
        return {
            "transformation_total_loss": zero,
            "distillation_loss": zero,
            "segmentation_loss": zero,
        }
    proxy, network, target = (
        out["select_proxy_sdf"],
        out["select_network_sdf"],
        out["select_gt_seg"],
    )
    distillation = F.mse_loss(proxy, network.detach()) * conf["sdf_supervision_weight"]
    segmentation = (_lowest_hinge(network, target) + _lowest_hinge(proxy, target)) * conf[
        "instance_seg_weight"
    ]
    return {"transformation_total_loss": distillation + segmentation,
            "distillation_loss": distillation, "segmentation_loss": segmentation}  # fmt: skip


def _lowest_hinge(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    chosen = values[torch.arange(len(values)), target]
    return torch.relu(chosen[:, None] - values).mean()
