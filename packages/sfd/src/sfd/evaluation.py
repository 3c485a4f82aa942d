"""SfD evaluation: renders, albedo, normals, roughness, lighting, object poses and geometry.

The authors never released evaluation (``--eval`` raises NotImplementedError), but their
unreleased functions define the metrics: ``utils/evaluate.py: evaluate_all``,
``trainer/train_material.py: evaluate / evaluate_envmap`` and ``model/pose.py: get_diff``.
Each function below says what it keeps from them and which of their bugs it fixes.

Images are (H, W, C) float tensors, linear (HDR) unless a name says otherwise, masks (H, W)
bool. The trainer calls every image metric twice, once with the GT-and-hit mask (GT mask AND
network hit mask) and once with the GT mask, as the original does. All functions run without
gradients and return Python floats or CPU float64 tensors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from geomkit.errors import InputError
from geomkit.io import check_can_write, save_json
from geomkit.io.files import atomic_write
from geomkit.mesh import sample_surface
from geomkit.metrics import psnr, ssim
from geomkit.metrics.pointcloud import pointcloud_metrics
from geomkit.structures import TriMesh
from geomkit.transforms import apply_similarity, umeyama_alignment

GAMMA = 2.2
# A similarity's 3x3 block divided by its scale must be orthonormal to this tolerance.
_RIGID_TOLERANCE = 1e-4
# Camera centres whose second principal spread is below this share of the first are collinear.
_COLLINEAR_RATIO = 1e-6

LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def tone_map(linear: torch.Tensor) -> torch.Tensor:
    """SfD's display transform ``clip(x, 0, 1) ** (1 / 2.2)`` (linear HDR -> [0, 1])."""
    return linear.clamp(0.0, 1.0) ** (1.0 / GAMMA)


@torch.no_grad()
def image_metrics(
    pred_linear: torch.Tensor,
    gt_linear: torch.Tensor,
    mask: torch.Tensor,
    lpips: LpipsFn | None = None,
) -> dict[str, float | None]:
    """PSNR, SSIM and LPIPS of a render after tone mapping, restricted to ``mask``.

    As the original ``evaluate_all``: PSNR is over the masked pixels only; for SSIM and
    LPIPS the pixels outside the mask are set to 1.0 (white) in both images and the whole
    image is compared. SSIM is scikit-image's default (7x7 uniform window, sample
    covariance) with ``data_range`` = max - min over both filled images, as the original.
    Unlike the original (``-10 log10(mse + 1e-8)``, capped at 80 dB) identical images give
    PSNR ``inf``.

    Args:
        pred_linear: (H, W, 3) float, the linear render.
        gt_linear: (H, W, 3), same dtype and device.
        mask: (H, W) bool, the pixels to score (at least one).
        lpips: None to skip LPIPS, or the metric module: the original uses LPIPS-VGG, i.e.
            ``geomkit.metrics.lpips.LPIPS("vgg")`` (it needs torchvision's local
            ``vgg16-397923af.pth`` and raises CheckpointError naming it when missing; nothing
            is downloaded). Called with (1, 3, H, W) images in [-1, 1] on the images' device.

    Returns:
        {"psnr": dB, "ssim": in [-1, 1], "lpips": distance or None}.
    """
    _check_images(pred_linear, gt_linear, mask)
    return _display_metrics(tone_map(pred_linear), tone_map(gt_linear), mask, lpips)


@torch.no_grad()
def albedo_metrics(
    pred_linear: torch.Tensor,
    gt_linear: torch.Tensor,
    mask: torch.Tensor,
    lpips: LpipsFn | None = None,
    scale: torch.Tensor | None = None,
) -> dict:
    """Albedo image metrics, raw and after a per-channel scale alignment.

    Albedo from one image is known only up to a per-channel scale (light colour and
    intensity trade against it). As the original, the scale is taken in the tone-mapped
    domain as ``sum(gt) / sum(pred)`` over the mask per channel (a ratio of sums, not a
    least-squares fit), and the aligned prediction is ``clip(scale * tone_map(pred), 0, 1)``.
    The original computes the scale on the GT-and-hit mask and reuses it for the GT mask:
    pass that first result's ``scale`` as ``scale`` to do the same.

    Args:
        pred_linear, gt_linear: (H, W, 3) linear albedo.
        mask: (H, W) bool.
        lpips: as in :func:`image_metrics`.
        scale: (3,) tone-mapped-domain scale to apply; None computes it over ``mask``.

    Returns:
        {"raw": image metrics, "aligned": image metrics, "scale": (3,) list of floats}.

    Raises:
        InputError: the prediction sums to zero in a channel over the mask (no scale exists).
    """
    _check_images(pred_linear, gt_linear, mask)
    pred, gt = tone_map(pred_linear), tone_map(gt_linear)
    if scale is None:
        scale = _channel_scale(pred, gt, mask)
    scale = torch.as_tensor(scale, dtype=pred.dtype, device=pred.device).reshape(3)
    aligned = (pred * scale).clamp(0.0, 1.0)
    return {
        "raw": _display_metrics(pred, gt, mask, lpips),
        "aligned": _display_metrics(aligned, gt, mask, lpips),
        "scale": scale.tolist(),
    }


@torch.no_grad()
def normal_angle(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor,
    legacy_color_space: bool = False,
) -> float:
    """Mean angle in degrees between predicted and true normals over ``mask``.

    Both normal maps must be in the same frame (the original compares camera-space normals:
    the GT normal image decoded with ``2 c - 1`` against the world normals rotated by the
    world-to-camera rotation). They are normalised here; zero vectors count as 90 degrees.

    Bug fixed: the original measures the angle between the *encoded colours*
    ``clip(n / 2 + 1/2, 0, 1)``, not between the normals (opposite normals give 54.7 degrees,
    not 180), and takes ``acos`` without clamping (NaN at rounding). ``legacy_color_space``
    reproduces its numbers (clamped), for comparison with published tables only.

    Args:
        pred: (H, W, 3) float normals.
        gt: (H, W, 3) float normals, same dtype and device.
        mask: (H, W) bool.
        legacy_color_space: compute the original's colour-space angle instead.

    Returns:
        Mean angle in degrees.
    """
    _check_images(pred, gt, mask)
    if legacy_color_space:
        pred, gt = (pred * 0.5 + 0.5).clamp(0, 1), (gt * 0.5 + 0.5).clamp(0, 1)
    cosine = (F.normalize(pred[mask], dim=-1) * F.normalize(gt[mask], dim=-1)).sum(-1)
    return float(torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0))).double().mean())


@torch.no_grad()
def roughness_mse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean squared error of roughness over ``mask``, measured after ``tone_map`` as the original.

    The original tone-maps roughness like a colour before the MSE, so this is the MSE of
    ``clip(r, 0, 1) ** (1 / 2.2)``, kept for comparable numbers.

    Args:
        pred: (H, W) or (H, W, C) float roughness in [0, 1] (the original repeats it over 3
            channels, which gives the same value).
        gt: same shape, dtype and device.
        mask: (H, W) bool.
    """
    _check_images(pred, gt, mask, channels=None)
    difference = tone_map(pred[mask]) - tone_map(gt[mask])
    return float(difference.double().square().mean())


@torch.no_grad()
def envmap_error(pred_linear: torch.Tensor, gt_linear: torch.Tensor) -> float:
    """MSE between tone-mapped environment maps (equirectangular, linear HDR), as the original.

    The original renders the fitted light SGs at 256 x 512 and resizes the GT HDRI
    (``envmaps/c.exr``) bilinearly to that size (``align_corners=False``, no antialiasing)
    before tone mapping both; here the GT is resized in the same way to the prediction's size
    when the sizes differ.

    Args:
        pred_linear: (H, W, 3) float, the predicted environment map.
        gt_linear: (H', W', 3) float, same dtype and device; its aspect ratio must be the
            prediction's (both equirectangular).
    """
    for name, image in (("pred_linear", pred_linear), ("gt_linear", gt_linear)):
        if image.dim() != 3 or image.shape[-1] != 3:
            raise InputError(f"{name} must be an (H, W, 3) environment map, got {_shape(image)}")
        if not bool(torch.isfinite(image).all()):
            raise InputError(f"{name} contains NaN or infinite values")
    height, width = pred_linear.shape[:2]
    if gt_linear.shape[0] * width != gt_linear.shape[1] * height:
        raise InputError(
            f"environment maps of {_shape(pred_linear)} and {_shape(gt_linear)} differ in aspect "
            "ratio; both must be equirectangular (width = 2 x height)"
        )
    gt = gt_linear
    if gt.shape[:2] != pred_linear.shape[:2]:
        gt = F.interpolate(gt.permute(2, 0, 1)[None], size=(height, width), mode="bilinear")
        gt = gt[0].permute(1, 2, 0)
    return float((tone_map(pred_linear) - tone_map(gt)).double().square().mean())


class PoseErrors(NamedTuple):
    """Per-instance pose errors after aligning prediction to ground truth (float64, CPU).

    rotation_deg: (N,) rotation error in degrees.
    translation: (N,) position error in the GT object frame's units.
    translation_normalized: (N,) ``translation`` divided by the mean distance of the GT
        virtual camera centres from their centroid (the original's scale-free ``dt``).
    alignment: (4, 4) similarity from the predicted to the GT object (canonical) frame;
        apply it to predicted canonical geometry to compare it with the GT mesh.
    """

    rotation_deg: torch.Tensor
    translation: torch.Tensor
    translation_normalized: torch.Tensor
    alignment: torch.Tensor


@torch.no_grad()
def pose_errors(
    pred_obj2world: torch.Tensor,
    gt_obj2world: torch.Tensor,
    pred_cam2world: torch.Tensor,
    gt_cam2world: torch.Tensor,
) -> PoseErrors:
    """Rotation and translation error of each instance's pose, free of the gauge ambiguity.

    Predicted and GT poses live in different world frames (SfM's vs the renderer's) and map
    from different object frames (SfD's canonical frame vs the GT mesh's). As the original
    ``ObjectPose.get_diff``, each instance i is turned into a virtual camera, the one camera
    seen from the object's frame, ``V_i = obj2world_i^-1 cam2world``: the world frame drops
    out, and the object frames differ by one similarity. That similarity is fitted to the
    virtual camera centres (Umeyama) and applied to centres and orientations, then

    - ``rotation_deg[i]`` = angle of ``R_gt_i^T R_align R_pred_i``,
    - ``translation[i]`` = ``|s R_align c_pred_i + t - c_gt_i|``.

    Bugs fixed against the original: it rotated only the translations by the fitted rotation
    and compared unrotated orientations (its own orientation fit ``R_calibrator`` was
    discarded); its reflection fix negated a row of V instead of the last singular vector, so
    a reflected fit gave a wrong rotation; its angle clipped the cosine to 1 - 1e-7 in
    float32, reporting about 0.03 degrees for identical rotations. Computed in float64.

    Args:
        pred_obj2world: (N, 4, 4) predicted object-to-world similarities, N >= 3. Pass the
            full canonical-to-world transform (SfD: ``[R|t] @ scale_mat``) so that
            ``alignment`` maps canonical coordinates.
        gt_obj2world: (N, 4, 4) GT object-to-world transforms, same instance order.
        pred_cam2world: (4, 4) camera-to-world of the image in the predicted world frame.
        gt_cam2world: (4, 4) camera-to-world in the GT world frame, same axis convention.

    Returns:
        PoseErrors.

    Raises:
        InputError: wrong shapes, non-finite values, a transform that is not a rotation times
            a positive uniform scale, fewer than 3 instances, or collinear virtual camera
            centres (the alignment's rotation about that line would be undetermined).
    """
    pred_rot, pred_centre = _virtual_cameras(pred_obj2world, pred_cam2world, "pred")
    gt_rot, gt_centre = _virtual_cameras(gt_obj2world, gt_cam2world, "gt")
    if len(pred_centre) != len(gt_centre):
        raise InputError(
            f"pred_obj2world has {len(pred_centre)} instances but gt_obj2world has "
            f"{len(gt_centre)}; pass the same instances in the same order"
        )
    for name, centres in (("pred", pred_centre), ("gt", gt_centre)):
        _check_spread(centres, name)
    scale, rotation, shift = umeyama_alignment(pred_centre, gt_centre)
    aligned = apply_similarity(pred_centre, scale, rotation, shift)
    translation = (aligned - gt_centre).norm(dim=-1)
    spread = (gt_centre - gt_centre.mean(0)).norm(dim=-1).mean()
    alignment = torch.eye(4, dtype=torch.float64)
    alignment[:3, :3] = scale * rotation
    alignment[:3, 3] = shift
    return PoseErrors(
        rotation_deg=rotation_angle_deg(gt_rot.transpose(-1, -2) @ rotation @ pred_rot),
        translation=translation,
        translation_normalized=translation / spread,
        alignment=alignment,
    )


def rotation_angle_deg(rotations: torch.Tensor) -> torch.Tensor:
    """Rotation angle in degrees of (..., 3, 3) rotation matrices, accurate near 0 and 180.

    ``atan2(|axis * sin|, cos)`` with ``cos = (trace - 1) / 2`` and the axis part from the
    skew-symmetric part, instead of ``acos`` alone, which loses precision at small angles.
    """
    cosine = (rotations.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    skew = rotations - rotations.transpose(-1, -2)
    sine = torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], -1).norm(dim=-1) / 2
    return torch.rad2deg(torch.atan2(sine, cosine))


def chamfer_to_truth(
    pred: TriMesh | np.ndarray | torch.Tensor,
    gt: TriMesh | np.ndarray | torch.Tensor,
    n: int = 100_000,
    seed: int = 0,
    thresholds: tuple[float, ...] = (),
) -> dict:
    """Chamfer distances (and F-scores) between a predicted and a GT shape in one frame.

    The geometry must already share a frame: map a canonical SfD mesh with
    :attr:`PoseErrors.alignment` first. A TriMesh is sampled uniformly over its area (``n``
    points); a point set (e.g. mesh vertices) with more than ``n`` points is subsampled
    without replacement. The metrics are geomkit's (:mod:`geomkit.metrics.pointcloud`):
    accuracy (mean pred-to-GT distance), completeness (mean GT-to-pred distance),
    ``chamfer_l1`` = their average, ``chamfer_l2`` = average of both mean squared distances.

    Args:
        pred, gt: TriMesh, or (P, 3) points as a numpy array or tensor.
        n: points per shape, >= 1.
        seed: seed of the sampling (same seed, same points).
        thresholds: distances for precision / recall / F-score.

    Returns:
        dict with accuracy, completeness, chamfer_l1, chamfer_l2, thresholds (list of dicts).
    """
    if n < 1:
        raise InputError(f"n must be >= 1 points per shape, got {n}")
    rng = np.random.default_rng(seed)
    points = [_sample_points(shape, n, rng, name) for name, shape in (("pred", pred), ("gt", gt))]
    metrics = pointcloud_metrics(points[0], points[1], thresholds=thresholds)
    metrics.pop("normal_consistency")
    return metrics


def write_report(
    metrics: Mapping, out_dir: str | os.PathLike, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``metrics.json`` and a plain-text table ``metrics.txt`` into ``out_dir``.

    Nested dicts, lists, tensors, numpy values and NamedTuples (e.g. :class:`PoseErrors`) are
    converted to JSON; non-finite numbers are written as the strings "inf", "-inf", "nan"
    (strict JSON has no such numbers). The table has one row per leaf, keys joined with "/";
    a list of numbers is summarised by its mean, median and max.

    Args:
        metrics: nested mapping of results.
        out_dir: folder, created if needed.
        overwrite: replace existing report files; otherwise OutputExistsError.

    Returns:
        (path of metrics.json, path of metrics.txt).
    """
    out_dir = Path(out_dir)
    json_path, text_path = out_dir / "metrics.json", out_dir / "metrics.txt"
    for path in (json_path, text_path):
        check_can_write(path, overwrite)
    plain = _to_plain(metrics)
    rows = list(_flatten(plain, ""))
    width = max((len(key) for key, _ in rows), default=0)
    save_json(json_path, plain)
    with atomic_write(text_path, "w") as handle:
        handle.writelines(f"{key:<{width}}  {_format_value(value)}\n" for key, value in rows)
    return json_path, text_path


def _display_metrics(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, lpips: LpipsFn | None
) -> dict[str, float | None]:
    """PSNR / SSIM / LPIPS of tone-mapped (H, W, 3) images, the original's masking."""
    psnr_db = float(psnr(pred.permute(2, 0, 1), gt.permute(2, 0, 1), mask=mask))
    white = torch.ones_like(pred)
    pred_filled = torch.where(mask[..., None], pred, white).permute(2, 0, 1)
    gt_filled = torch.where(mask[..., None], gt, white).permute(2, 0, 1)
    low = float(torch.minimum(pred_filled.min(), gt_filled.min()))
    high = float(torch.maximum(pred_filled.max(), gt_filled.max()))
    # Equal constant images have no range; their SSIM is 1 for any positive range.
    data_range = high - low if high > low else 1.0
    ssim_value = float(ssim(pred_filled, gt_filled, data_range=data_range, gaussian_weights=False))
    lpips_value = None
    if lpips is not None:
        distance = lpips(pred_filled[None] * 2 - 1, gt_filled[None] * 2 - 1)
        lpips_value = float(distance.reshape(-1)[0])
    return {"psnr": psnr_db, "ssim": ssim_value, "lpips": lpips_value}


def _channel_scale(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-channel ``sum(gt) / sum(pred)`` over the mask (the original's albedo alignment)."""
    pred_sum, gt_sum = pred[mask].sum(0), gt[mask].sum(0)
    if not bool((pred_sum > 0).all()):
        channels = (pred_sum <= 0).nonzero().flatten().tolist()
        raise InputError(
            f"predicted albedo is zero over the mask in channel(s) {channels}; the alignment "
            "scale sum(gt) / sum(pred) is undefined (check the mask and the prediction)"
        )
    return gt_sum / pred_sum


def _check_images(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, channels: int | None = 3
) -> None:
    """InputError unless pred and gt are matching finite float maps and mask selects pixels."""
    for name, image in (("pred", pred), ("gt", gt)):
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            raise InputError(f"{name} must be a float tensor, got {type(image).__name__}")
        if not bool(torch.isfinite(image).all()):
            raise InputError(f"{name} contains NaN or infinite values")
    if pred.shape != gt.shape or pred.dtype != gt.dtype:
        raise InputError(
            f"pred {_shape(pred)} {pred.dtype} and gt {_shape(gt)} {gt.dtype} must have one "
            "shape and dtype"
        )
    if channels is not None and (pred.dim() != 3 or pred.shape[-1] != channels):
        raise InputError(f"images must be (H, W, {channels}), got {_shape(pred)}")
    if pred.dim() not in (2, 3):
        raise InputError(f"maps must be (H, W) or (H, W, C), got {_shape(pred)}")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise InputError("mask must be a bool tensor (H, W); use mask > 0.5 or similar")
    if mask.shape != pred.shape[:2]:
        raise InputError(f"mask has shape {_shape(mask)}, expected {tuple(pred.shape[:2])}")
    if not bool(mask.any()):
        raise InputError("mask selects no pixel; the metrics need at least one masked pixel")


def _virtual_cameras(
    obj2world: torch.Tensor, cam2world: torch.Tensor, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotations (N, 3, 3) and centres (N, 3) of ``obj2world_i^-1 cam2world`` in float64."""
    obj2world = _similarities(obj2world, f"{name}_obj2world", batched=True)
    cam2world = _similarities(cam2world, f"{name}_cam2world", batched=False)
    views = torch.linalg.inv(obj2world) @ cam2world
    linear = views[:, :3, :3]
    scale = torch.linalg.det(linear).pow(1.0 / 3.0)
    return linear / scale[:, None, None], views[:, :3, 3]


def _similarities(matrix, name: str, batched: bool) -> torch.Tensor:
    """Checked float64 (N, 4, 4) (or (4, 4)) rotation-times-positive-scale transforms."""
    matrix = torch.as_tensor(matrix).detach().to("cpu", torch.float64)
    expected = "(N, 4, 4)" if batched else "(4, 4)"
    if matrix.shape[-2:] != (4, 4) or matrix.dim() != (3 if batched else 2):
        raise InputError(f"{name} must have shape {expected}, got {_shape(matrix)}")
    if not bool(torch.isfinite(matrix).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    matrices = matrix.reshape(-1, 4, 4)
    linear = matrices[:, :3, :3]
    det = torch.linalg.det(linear)
    scale = det.clamp_min(0).pow(1.0 / 3.0)
    rotation = linear / scale.clamp_min(1e-300)[:, None, None]
    identity = torch.eye(3, dtype=torch.float64)
    residual = (rotation.transpose(1, 2) @ rotation - identity).abs().amax(dim=(1, 2))
    bottom = (matrices[:, 3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)).abs()
    bad = ((det <= 0) | (residual > _RIGID_TOLERANCE) | (bottom.amax(1) > 0)).nonzero().flatten()
    if len(bad):
        where = f"{name}[{int(bad[0])}]" if batched else name
        raise InputError(
            f"{where} is not a rotation times a positive uniform scale with bottom row "
            "[0, 0, 0, 1]; pass object-to-world / camera-to-world poses"
        )
    return matrix


def _check_spread(centres: torch.Tensor, name: str) -> None:
    """InputError unless >= 3 centres span more than a line (the alignment is then unique)."""
    if len(centres) < 3:
        raise InputError(
            f"pose errors need at least 3 instances to align the frames, got {len(centres)}"
        )
    spread = torch.linalg.svdvals(centres - centres.mean(0))
    if not spread[1] > _COLLINEAR_RATIO * spread[0]:
        raise InputError(
            f"the {name} virtual camera centres (camera seen from each instance) are collinear; "
            "the frame alignment is undetermined, so per-instance pose errors are not defined"
        )


def _sample_points(shape, n: int, rng: np.random.Generator, name: str) -> np.ndarray:
    """(min(n, P), 3) float64 points of a TriMesh (area sampling) or a point array."""
    if isinstance(shape, TriMesh):
        return sample_surface(shape, n, seed=rng)[0]
    if isinstance(shape, torch.Tensor):
        shape = shape.detach().cpu().numpy()
    points = np.asarray(shape, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(f"{name} must be a TriMesh or non-empty (P, 3) points, got {points.shape}")
    if not np.isfinite(points).all():
        raise InputError(f"{name} points contain NaN or infinite values")
    if len(points) > n:
        points = points[rng.choice(len(points), n, replace=False)]
    return points


def _to_plain(value):
    """JSON-ready copy: tensors/arrays to numbers or lists, non-finite floats to strings."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, Mapping):
        return {str(key): _to_plain(item) for key, item in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [_to_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _flatten(value, prefix: str):
    """(key path, leaf) pairs of a plain nested dict; lists are leaves."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}/{key}" if prefix else key)
    else:
        yield prefix, value


def _format_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    numbers = _numbers(value)
    if numbers is not None and numbers.size:
        return (
            f"mean {numbers.mean():.6g}  median {np.median(numbers):.6g}  max {numbers.max():.6g}"
            f"  ({numbers.size} values)"
        )
    return str(value)


def _numbers(value) -> np.ndarray | None:
    """A list of finite-or-not numbers as a float array; None for anything else."""
    if not isinstance(value, list):
        return None
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None


def _shape(tensor) -> tuple:
    return tuple(getattr(tensor, "shape", ()))
