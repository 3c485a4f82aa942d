"""Rendering and scoring target views: the original's test (and validation) epoch.

Per scene the system prepares its descriptors from the scene's input views (NPBG++ aggregates
all of them at full resolution, one at a time, and saves the coefficients to
``descriptors/<scene>.pth``; NPBG reads its table), then renders every target view with all
points, clamped to [0, 1]. Written, as the original writes them:
``rendered/<dataset>/test_epoch<E>/<view>_{rendered,gt,raster}.png``; and, which the original
only logged: ``metrics_<stage>_epoch<E>.json`` with PSNR, SSIM and LPIPS per view and averaged.
ScanNet's ``image_margin`` border is cropped before the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from geomkit import dist as gdist
from geomkit.errors import ConfigError
from geomkit.io.images import write_image
from geomkit.log import progress
from npbgpp.metrics import ImageMetrics, psnr, ssim_torchmetrics, write_metrics_json

log = logging.getLogger(__name__)


class ViewMetrics:
    """PSNR, SSIM and (unless ``lpips`` is "none") LPIPS-VGG of one rendered view, as floats.
    The LPIPS network is built first, so a missing weight file stops the run before rendering."""

    def __init__(self, lpips: str = "vgg", backbone_path=None, device="cpu"):
        if lpips not in ("vgg", "none"):
            raise ConfigError(f"configuration: lpips must be vgg or none, got {lpips}")
        self.full = ImageMetrics(backbone_path, device=device) if lpips == "vgg" else None

    @classmethod
    def from_config(cls, cfg, absolute, device="cpu") -> ViewMetrics:
        path = cfg.get("lpips_weights_path")
        return cls(cfg.get("lpips", "vgg"), absolute(path) if path else None, device)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        pred, target = pred[None].float().cpu(), target[None].float().cpu()
        if self.full is not None:
            return {k: float(v[0]) for k, v in self.full(pred, target).items()}
        return {
            "PSNR": float(psnr(pred, target)[0]),
            "SSIM": float(ssim_torchmetrics(pred, target)[0]),
        }


def evaluate(
    system,
    scenes: Sequence,
    stage: str,
    epoch: int,
    folder: Path,
    metrics: ViewMetrics,
    save_images: bool = True,
    limit: float | int = 1.0,
) -> dict:
    """Render and score the targets of ``scenes`` (split ``val`` or ``holdout``); this rank
    takes its share of the scenes. Returns {"per_view": {...}, "mean": {...}} over all ranks."""
    split = "val" if stage == "val" else "holdout"
    rank, world = gdist.rank(), gdist.world_size()
    per_view: dict[str, dict[str, float]] = {}
    system.eval()
    for position in range(rank, len(scenes), world):
        scene = scenes[position]
        targets = _limited(scene.split(split), limit)
        with torch.no_grad():
            system.prepare_eval(scene, folder)
            out = folder / "rendered" / f"{scene.name}_{_suffix(stage)}" / f"test_epoch{epoch}"
            for view in progress(targets, desc=f"{stage} {scene.name}", leave=False):
                rendered = system.render_view(scene, scene.cameras[view], clamp=True)
                gt = scene.image(view)
                scores = metrics(_crop(rendered.image[0], scene), _crop(gt, scene))
                per_view[f"{scene.name}/{scene.names[view]}"] = scores
                if save_images:
                    _save(out, scene.names[view], rendered, gt)
        system.release_eval(scene)
    gathered = {}
    for part in gdist.gather_objects(per_view):
        gathered.update(part)
    return {"per_view": gathered, "mean": _mean(gathered)}


def report(results: dict, stage: str, epoch: int, folder: Path) -> Path:
    """Write the metrics JSON and log one line of averages."""
    path = folder / f"metrics_{stage}_epoch{epoch}.json"
    write_metrics_json(path, results["per_view"], results["mean"])
    mean = results["mean"]
    text = ", ".join(f"{k} {v:.4f}" for k, v in mean.items())
    log.info("%s epoch %d, %d views: %s (%s)", stage, epoch, len(results["per_view"]), text, path)
    return path


def _suffix(stage: str) -> str:
    return "val" if stage == "val" else "holdout"


def _limited(views: list[int], limit: float | int) -> list[int]:
    if isinstance(limit, int) or limit > 1:
        return views[: int(limit)]
    return views[: int(round(len(views) * float(limit)))]


def _crop(image: torch.Tensor, scene) -> torch.Tensor:
    m = scene.image_margin
    return image[:, m:-m, m:-m] if m > 0 else image


def _save(out: Path, name: str, rendered, gt: torch.Tensor) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pictures = {"rendered": rendered.image[0], "gt": gt}
    if rendered.raster_rgb is not None:
        pictures["raster"] = rendered.raster_rgb[0]
    for kind, image in pictures.items():
        pixels = image.clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        write_image(out / f"{name}_{kind}.png", pixels)


def _mean(per_view: dict[str, dict[str, float]]) -> dict[str, float]:
    if not per_view:
        return {}
    keys = next(iter(per_view.values())).keys()
    return {k: sum(v[k] for v in per_view.values()) / len(per_view) for k in keys}
