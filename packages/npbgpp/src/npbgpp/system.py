"""The NPBG++ and NPBG systems: the modules under the authors' checkpoint names, and how a view
is rendered from a point cloud.

Both render the same way (the original's ``NPBGBase.forward``): per-point descriptors are
projected to the target camera, rasterized at five scales (nearest point per pixel) and turned
into an image by the gated U-Net ``refiner``; with ``align_during_rendering`` the target camera
is first rotated about its axis so that the world's up points up in the raster (and the image
rotated back afterwards), as NPBG++ does for its inputs. They differ in where the descriptors
come from:

* :class:`NPBGPlusPlus`: from the input views, online. A U-Net (``feature_extractor``) turns each
  source image into a feature map, features are sampled where the points project, and the
  ``aggregator`` fits per point a view-dependent function of them (sphere) or averages them.
* :class:`NPBG`: a table of learned descriptors per point and scene (``descriptors``; not in the
  checkpoint, saved per scene as ``<descriptors_save_dir>/<scene>.pth``), optionally as
  coefficients of the sphere aggregator's basis (``coefficients_ft``).

Cameras are geomkit Cameras; NPBG++'s NDC intrinsics come from ``models.projection``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from geomkit.cameras import Cameras
from geomkit.errors import ConfigError, InputError
from geomkit.io.files import atomic_path
from npbgpp.models import factory
from npbgpp.models.projection import (
    compute_visibility,
    inside_ndc_bounds,
    ndc_intrinsics,
    project_points,
)
from npbgpp.models.rgb_converter import RGBConverter, dimred_loss
from npbgpp.models.view_processing import (
    align_for_rendering,
    align_view,
    crop_view,
    sample_point_features,
    unalign_rendered,
)

log = logging.getLogger("npbgpp")


@dataclass
class Rendered:
    """A rendered view: ``image`` (1, 3, H, W); ``raster_rgb`` (1, 3, H, W), the descriptors'
    colours through ``rgb_converter`` (a picture of what the refiner receives; white where no
    point lands); ``dimred_loss`` the visualisation head's loss (training only, else None)."""

    image: torch.Tensor
    raster_rgb: torch.Tensor | None
    dimred_loss: torch.Tensor | None


class PointRenderer(nn.Module):
    """``rgb_converter``, ``rasterizer`` and ``refiner``, and the rendering of a view."""

    def __init__(self, system: DictConfig):
        super().__init__()
        self.descriptor_dim = int(system.descriptor_dim)
        self.align_during_rendering = bool(system.align_during_rendering)
        self.learning_rate = float(system.get("learning_rate", 1e-4))
        self.rgb_converter = RGBConverter(self.descriptor_dim)
        self.rasterizer = factory.build(system.rasterizer, near=float(system.near_plane))
        self.refiner = factory.build(system.refiner)
        if system.freeze_refiner:
            self.refiner.requires_grad_(False)

    def render(
        self,
        points: torch.Tensor,
        descriptors: torch.Tensor,
        valid: torch.Tensor,
        camera: Cameras,
        clamp: bool = False,
        raster_rgb: bool = True,
    ) -> Rendered:
        """Render ``points`` (P, 3) with ``descriptors`` (P, C) (``valid`` (P,) bool) into the
        one camera ``camera`` at its image size."""
        height, width = (int(v) for v in camera.image_size[0])
        dimred, picture = None, None
        if raster_rgb or self.training:
            dimred, picture = self._raster_picture(points, descriptors, valid, camera)
        target = camera
        if self.align_during_rendering:
            target, undo = align_for_rendering(camera)
        raster_size = tuple(int(v) for v in target.image_size[0])
        fcl, prp = ndc_intrinsics(target)
        ndc = project_points(points[None], target.R, target.T, fcl, prp)
        rasters = self.rasterizer(ndc, descriptors[None], raster_size, valid[None])
        image = self.refiner(rasters)
        if self.align_during_rendering:
            image = unalign_rendered(image, undo)
        image = image[:, :3, :height, :width]
        if clamp:
            image = image.clamp(0.0, 1.0)
        return Rendered(image, picture, dimred)

    def _raster_picture(self, points, descriptors, valid, camera):
        """The descriptors' colours splatted at full resolution (no refiner), and in training
        NPBG++'s ``dimred`` loss, which trains that colour head on detached descriptors."""
        rgb = self.rgb_converter(descriptors.detach())  # (P, 3)
        dimred = None
        if self.training:
            dimred = dimred_loss(self.rgb_converter, descriptors[None], valid[None])
        with torch.no_grad():
            size = tuple(int(v) for v in camera.image_size[0])
            fcl, prp = ndc_intrinsics(camera)
            ndc = project_points(points[None], camera.R, camera.T, fcl, prp)
            picture = factory.splat_colours(ndc, rgb.detach(), size, valid, self.rasterizer.near)
        return dimred, picture


class NPBGPlusPlus(PointRenderer):
    """NPBG++: descriptors aggregated online from the input views (``system=npbgpp_*``)."""

    def __init__(self, system: DictConfig, losses):
        super().__init__(system)
        self.feature_extractor = factory.build(system.feature_extractor)
        self.aggregator = factory.build(system.aggregator)
        self.visibility_scale = system.visibility_scale
        self.align_view_images = bool(system.align_view_images)
        self.near = float(system.near_plane)
        self.losses = losses
        self.color_jitter = factory.color_jitter(float(system.color_aug_p))
        for name in ("feature_extractor", "aggregator"):
            if system.get(f"freeze_{name}", False):
                getattr(self, name).requires_grad_(False)
        self._eval_state = None

    # -- training ---------------------------------------------------------------------------
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam over every trainable module (``system.learning_rate``, the original's 1e-4)."""
        parameters = [p for p in self.parameters() if p.requires_grad]
        return [torch.optim.Adam(parameters, lr=self.learning_rate)]

    def shared_modules(self) -> nn.Module:
        return self

    def start_epoch(self, scenes) -> None:
        del scenes

    def end_epoch(self, scenes, folder, epoch: int) -> None:
        del scenes, folder, epoch

    def training_losses(self, scene, item: dict) -> dict[str, torch.Tensor]:
        """The loss of one training item: a target crop and its source views."""
        target, sources = item, item.get("sources", [])
        if self.color_jitter is not None:
            target, sources = self.color_jitter(target, sources)
        points = scene.points
        interest = target_visible(points, target["camera"], self.near)
        chosen = points[interest]
        crop = tuple(2 * int(v) for v in target["camera"].image_size[0])
        self.aggregate(chosen, sources, crop_to=crop)
        descriptors, valid = self.aggregator.descriptors(directions(chosen, target["camera"]))
        rendered = self.render(chosen, descriptors, valid, target["camera"], raster_rgb=False)
        return self.losses.npbgpp(self, rendered, target)

    # -- aggregation ------------------------------------------------------------------------
    def aggregate(self, points: torch.Tensor, views: list[dict], crop_to=None) -> None:
        """Reset the aggregator for ``points`` (P, 3) and accumulate the features of ``views``
        (dicts with ``image`` (3, H, W) and ``camera``)."""
        self.aggregator.reset(points.shape[0])
        for view in views:
            self.accumulate(points, view["image"], view["camera"], crop_to)

    def accumulate(self, points, image, camera, crop_to=None) -> None:
        """Add one view: its feature map sampled where the points project and see it."""
        with torch.no_grad():
            visible = source_visible(points, camera, self.visibility_scale, self.near)
            if self.align_view_images:
                image, camera = align_view(image, camera)
            if crop_to is not None:
                image, camera = crop_view(points, image, camera, visible, crop_to, self.near)
            ndc, inside = project_inside(points, camera)
            visible = visible & inside
        features = self.feature_extractor(image[None])
        sampled = sample_point_features(features, ndc, tuple(image.shape[-2:]))[0]
        self.aggregator.update(sampled, directions(points, camera), visible)

    # -- evaluation -------------------------------------------------------------------------
    def prepare_eval(self, scene, folder) -> None:
        """Aggregate every input view of ``scene`` at full resolution, one at a time, and save
        the per-point coefficients to ``descriptors/<scene>.pth`` (as the original)."""
        points = scene.points
        self.aggregator.reset(points.shape[0])
        for view in scene.split("train"):
            self.accumulate(points, scene.image(view), scene.cameras[view])
        folder = Path(folder) / "descriptors"
        folder.mkdir(parents=True, exist_ok=True)
        save_tensor(folder / f"{scene.name}.pth", self.aggregator.coefficients())

    def render_view(self, scene, camera, clamp: bool = True) -> Rendered:
        points = scene.points
        descriptors, valid = self.aggregator.descriptors(directions(points, camera))
        return self.render(points, descriptors, valid, camera, clamp=clamp)

    def release_eval(self, scene) -> None:
        self.aggregator.reset(0)


class NPBG(PointRenderer):
    """NPBG (``system=npbg``) and NPBG++'s coefficient fine-tuning (``system=coefficients_ft``):
    a learned table per scene. With an ``aggregator`` in the config each point holds
    ``descriptor_dim * (m + 1)`` coefficients, [ym | beta] of the sphere aggregator, and its
    descriptor towards a camera is ym + beta^T basis(direction); points whose beta is all zero
    are left out (the original's rule)."""

    def __init__(self, system: DictConfig, losses, descriptor_dirs: DescriptorDirs):
        super().__init__(system)
        self.losses = losses
        self.dirs = descriptor_dirs
        self.aggregator = factory.build(system.aggregator) if system.get("aggregator") else None
        if self.aggregator is not None:
            self.aggregator.requires_grad_(False)  # the original optimizes only the table
        self.table_dim = self.descriptor_dim * (1 + (self.aggregator.m if self.aggregator else 0))
        self.max_points = int(float(system.max_points))
        self.tables: dict[str, nn.Parameter] = {}  # per scene; saved as files, not in checkpoints

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """RMSprop: lr 0.1 for the descriptor tables and the background feature,
        ``system.learning_rate`` (1e-4) for rgb_converter; Adam at that rate for the refiner.
        The tables join the RMSprop when their scenes are loaded (:meth:`start_epoch`)."""
        self._rmsprop = torch.optim.RMSprop(
            [
                {"params": [], "lr": 1e-1, "name": "descriptors"},
                {"params": list(self.rasterizer.parameters()), "lr": 1e-1},
                {"params": list(self.rgb_converter.parameters()), "lr": self.learning_rate},
            ]
        )
        optimizers = [self._rmsprop]
        refiner = [p for p in self.refiner.parameters() if p.requires_grad]
        if refiner:
            optimizers.append(torch.optim.Adam(refiner, lr=self.learning_rate))
        return optimizers

    def shared_modules(self) -> nn.Module:
        """What every rank trains together (each rank's tables belong to its own scenes)."""
        return nn.ModuleList([self.rasterizer, self.rgb_converter, self.refiner])

    def start_epoch(self, scenes) -> None:
        """Load the epoch's scenes' tables and reset their optimizer state (the original resets
        the descriptor optimizer's state every epoch)."""
        self.tables = {scene.name: self._load_table(scene) for scene in scenes}
        self.dirs.resume_epoch = None  # the snapshot served the resumed epoch's start
        group = self._rmsprop.param_groups[0]
        for parameter in group["params"]:
            self._rmsprop.state.pop(parameter, None)
        group["params"] = list(self.tables.values())

    def end_epoch(self, scenes, folder, epoch: int) -> None:
        """Save each scene's table to ``descriptors_save_dir/<scene>.pth`` and the epoch's
        snapshot for an exact resume (:meth:`DescriptorDirs.save_table`)."""
        del folder
        if self.dirs.save is None:
            return
        for scene in scenes:
            self.dirs.save_table(scene.name, self.tables[scene.name].detach(), epoch)

    def training_losses(self, scene, item: dict) -> dict[str, torch.Tensor]:
        rendered = self.render_view(scene, item["camera"], clamp=False, raster_rgb=False)
        return self.losses.npbg(self, rendered, item)

    def prepare_eval(self, scene, folder) -> None:
        del folder
        self.tables[scene.name] = self._load_table(scene)

    def release_eval(self, scene) -> None:
        self.tables.pop(scene.name, None)

    def render_view(self, scene, camera, clamp: bool = True, raster_rgb: bool = True) -> Rendered:
        points = scene.points
        descriptors, valid = self.descriptors(scene.name, points, camera)
        return self.render(points, descriptors, valid, camera, clamp=clamp, raster_rgb=raster_rgb)

    def descriptors(self, name: str, points, camera) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.tables[name]
        valid = torch.ones(len(points), dtype=torch.bool, device=points.device)
        if self.aggregator is None:
            return table, valid
        return self.aggregator.evaluate_coefficients(table, directions(points, camera))

    def _load_table(self, scene) -> nn.Parameter:
        n = len(scene.points)
        if n > self.max_points:
            raise ConfigError(
                f"scene {scene.name} has {n} points, more than system.max_points "
                f"({self.max_points}); raise it"
            )
        table = self.dirs.load(scene.name, n, self.table_dim)
        return nn.Parameter(table.to(scene.points.device))


@dataclass
class DescriptorDirs:
    """NPBG's descriptor folders: tables are read from ``save`` when a scene's file is there
    (a resumed or continued fit), else from ``pretrained``, else start at zero; written to
    ``save``. The original deleted everything in ``save`` at start (unless it equalled
    ``pretrained``); here only with ``empty_descriptors_save_dir=true``, and only for a fresh
    fit: a resumed fit or an evaluation needs the tables it would delete."""

    save: Path | None
    pretrained: Path | None
    resume_epoch: int | None = None  # set by a resume: read the tables as they were then

    @classmethod
    def from_config(cls, system: DictConfig, absolute, fresh_fit: bool) -> DescriptorDirs:
        save = system.get("descriptors_save_dir")
        pretrained = system.get("descriptors_pretrained_dir")
        dirs = cls(absolute(save) if save else None, absolute(pretrained) if pretrained else None)
        if dirs.pretrained is not None and not dirs.pretrained.is_dir():
            raise InputError(f"system.descriptors_pretrained_dir {dirs.pretrained} does not exist")
        if dirs.save is not None:
            dirs.save.mkdir(parents=True, exist_ok=True)
            empty = fresh_fit and system.get("empty_descriptors_save_dir")
            if empty and dirs.save != dirs.pretrained:
                for old in dirs.save.glob("*.pth"):
                    old.unlink()
        return dirs

    def snapshot(self, scene: str, epoch: int) -> Path:
        """``save/resume/<scene>.epoch<N>.pth``: the table as the checkpoint of epoch N saw it."""
        return self.save / "resume" / f"{scene}.epoch{epoch}.pth"

    def save_table(self, scene: str, table: torch.Tensor, epoch: int) -> None:
        """Write ``<scene>.pth`` (the original's file) and epoch ``epoch``'s snapshot; drop the
        snapshot of epoch - 2. The tables are written before the epoch's checkpoint, so a kill
        in between resumes from the checkpoint of epoch - 1 and reads that epoch's snapshot;
        by the time epoch - 2's goes, epoch - 1's checkpoint exists (every rank has passed
        the first step of this epoch, which waits for rank 0 to have saved it)."""
        self.snapshot(scene, epoch).parent.mkdir(exist_ok=True)
        save_tensor(self.snapshot(scene, epoch), table)
        save_tensor(self.save / f"{scene}.pth", table)
        self.snapshot(scene, epoch - 2).unlink(missing_ok=True)

    def load(self, scene: str, n_points: int, dim: int) -> torch.Tensor:
        if self.save is not None and self.resume_epoch is not None:
            snapshot = self.snapshot(scene, self.resume_epoch)
            if snapshot.is_file():
                return read_table(snapshot, n_points, dim)
            log.warning("no %s: resuming %s from its latest table", snapshot, scene)
        for folder in (self.save, self.pretrained):
            if folder is not None and (folder / f"{scene}.pth").is_file():
                return read_table(folder / f"{scene}.pth", n_points, dim)
        return torch.zeros(n_points, dim)


def read_table(path: Path, n_points: int, dim: int) -> torch.Tensor:
    """A saved (P, dim) descriptor or coefficient table, checked against the scene."""
    try:
        table = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise InputError(f"descriptor file {path} is unreadable ({error})") from None
    if not isinstance(table, torch.Tensor) or tuple(table.shape) != (n_points, dim):
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise InputError(
            f"descriptor file {path} holds {shape}, the scene needs ({n_points}, {dim}): "
            "was it written for this point cloud and system?"
        )
    return table.float()


def save_tensor(path: Path, tensor: torch.Tensor) -> None:
    """torch.save through a temporary file (an interrupted save keeps the old file)."""
    with atomic_path(path) as tmp:
        torch.save(tensor.detach().cpu().clone(), tmp)


def directions(points: torch.Tensor, camera: Cameras) -> torch.Tensor:
    """(P, 3) unit vectors from the camera centre to the points."""
    offsets = points - camera.camera_center()[0]
    return offsets / offsets.norm(dim=1, keepdim=True).clamp_min(1e-12)


def project_ndc(points: torch.Tensor, camera: Cameras) -> torch.Tensor:
    """(1, P, 3) NPBG++ NDC x, y and view depth of ``points`` in the one camera."""
    fcl, prp = ndc_intrinsics(camera)
    return project_points(points[None], camera.R, camera.T, fcl, prp)


def target_visible(points: torch.Tensor, camera: Cameras, near: float) -> torch.Tensor:
    """(P,) the points the target view sees (nearest per pixel at full resolution): the
    original trains on these only."""
    size = tuple(int(v) for v in camera.image_size[0])
    return compute_visibility(project_ndc(points, camera), size, scale=1.0, near=near)[0]


def source_visible(points, camera, scale, near) -> torch.Tensor:
    """(P,) the points a source view sees, tested at ``visibility_scale`` times its size."""
    size = tuple(int(v) for v in camera.image_size[0])
    ndc = project_ndc(points, camera)
    if scale is None:
        return (inside_ndc_bounds(ndc, size) & (ndc[..., 2] > near))[0]
    return compute_visibility(ndc, size, scale=float(scale), near=near)[0]


def project_inside(points, camera) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, P, 3) NDC and (P,) inside the image bounds."""
    size = tuple(int(v) for v in camera.image_size[0])
    ndc = project_ndc(points, camera)
    return ndc, inside_ndc_bounds(ndc, size)[0]
