"""The three training stages (the authors' ``trainer/train_{geometry,visibility,material}.py``):
Geo fits the canonical SDF, proxy colour and instance classifier; Vis distils NeuS-marched
occlusion of secondary rays into the visibility network; Mat fits the material network and
spherical-Gaussian lights. Each stage starts from the newest checkpoint of the one before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geomkit.checkpoint import load_state_dict_strict, set_rng_state
from geomkit.errors import ConfigError
from geomkit.log import Board, progress, text_logger
from geomkit.metrics.image import psnr
from geomkit.viz import save_image_grid
from sfd.config import dump_config
from sfd.data import Scene, load_scene
from sfd.losses import geometry_loss, instance_loss
from sfd.models.pose import ObjectPose
from sfd.models.renderer import DupNeuSRenderer
from sfd.models.visibility import hemisphere_directions, visibility_loss
from sfd.runs import RunDir, find_run, load_run_checkpoint, new_run, previous_stage_weights

EVAL_CHUNK = 4096


@dataclass
class Options:
    conf: dict
    data_split_dir: Path
    expname: str
    exps_folder_name: Path = Path("exps")
    init_method: str = "SFM"
    use_pretrain_normal: bool = False
    is_continue: bool = False
    timestamp: str = "latest"
    checkpoint: str = "latest"
    max_niter: int = 300001
    visible_num: int = -1
    train_pose: bool = False
    debug: bool = False


class StageRunner:
    stage = ""
    iterations_key = ""
    pixels_key = ""
    plot_key = ""

    def __init__(self, options: Options):
        self.options, self.conf = options, options.conf
        self.scene = load_scene(
            options.data_split_dir, options.visible_num, options.use_pretrain_normal
        )
        visible = self.scene.n_instances if options.visible_num < 0 else options.visible_num
        if visible > self.scene.n_instances:
            raise ConfigError(
                f"--visible_num {visible} exceeds the {self.scene.n_instances} instances"
            )
        poses = ObjectPose(
            Path(options.data_split_dir), options.init_method, visible, self.train_pose()
        )
        self.model = DupNeuSRenderer(
            self.conf["model"], poses, self.scene.scene_center, self.scene.scene_radius
        )
        resume = (
            find_run(options.exps_folder_name, self.stage, options.expname, options.timestamp)
            if options.is_continue
            else None
        )
        if resume is None:
            self.start_from_previous_stage()
        self.set_trainable()
        self.optimizer = self.build_optimizer()
        self.cur_iter = 0
        self.run = new_run(options.exps_folder_name, self.stage, options.expname)
        self.log = text_logger(self.run.root, f"sfd.{self.stage}")
        if resume is not None:
            self.resume_from(resume)
        dump_config(self.conf, self.run.root / "setting.yaml")
        self.board = Board(self.run.root)
        self.end_iter = min(int(self.conf["train"][self.iterations_key]), options.max_niter)

    # ---- set-up -----------------------------------------------------------------------------
    def train_pose(self) -> bool:
        return self.options.train_pose

    def start_from_previous_stage(self) -> None:
        """Vis and Mat load the newest previous-stage ``latest.pth`` (strictly)."""

    def set_trainable(self) -> None:
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(self.is_trained(name))

    def is_trained(self, name: str) -> bool:
        raise NotImplementedError

    def build_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def resume_from(self, run: RunDir) -> None:
        model_file, optimizer_file = load_run_checkpoint(run, self.options.checkpoint)
        load_state_dict_strict(
            self.model, model_file["model_state_dict"], source=str(run.model_dir)
        )
        self.optimizer.load_state_dict(optimizer_file["optimizer_state_dict"])
        set_rng_state(optimizer_file["rng_state"])
        self.cur_iter = int(model_file["iter"])
        self.log.info(f"continuing {run.root} from iteration {self.cur_iter} into {self.run.root}")

    # ---- loop -------------------------------------------------------------------------------
    def train(self) -> None:
        plot_freq = int(self.conf["train"][self.plot_key])
        ckpt_freq = int(self.conf["train"]["ckpt_freq"])
        self.model.train()
        bar = progress(
            total=self.end_iter, initial=self.cur_iter, desc=f"{self.stage}-{self.options.expname}"
        )
        while self.cur_iter < self.end_iter:
            if self.cur_iter % ckpt_freq == 0:
                self.save()
            if plot_freq > 0 and self.cur_iter % plot_freq == 0 and not self.options.debug:
                self.plot()
            losses = self.step()
            if self.cur_iter % 10 == 0:
                self.board.scalars(
                    {k: float(v) for k, v in losses.items()}, self.cur_iter, f"{self.stage}/"
                )
                bar.set_postfix(loss=f"{float(losses['loss']):.4f}")
            self.cur_iter += 1
            bar.update(1)
        bar.close()
        self.save()
        self.plot()
        self.board.close()
        self.log.info(f"{self.stage} finished at iteration {self.cur_iter}: {self.run.root}")

    def save(self) -> None:
        self.run.save(self.cur_iter, self.model.state_dict(), self.optimizer.state_dict())

    def step(self) -> dict:
        raise NotImplementedError

    def plot(self) -> None:
        """Full-image renders into plots/ (subclasses)."""

    # ---- helpers ----------------------------------------------------------------------------
    def near_far(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        near = torch.full((count, 1), self.scene.near * 0.95)
        return near, torch.full((count, 1), self.scene.far * 1.05)

    def sample_pixels(self) -> torch.Tensor:
        return self.scene.random_pixels(int(self.conf["train"][self.pixels_key]))

    def cos_anneal_ratio(self) -> float:
        anneal_end = float(self.conf["train"]["anneal_end"])
        return 1.0 if anneal_end == 0 else min(1.0, self.cur_iter / anneal_end)


class GeometryRunner(StageRunner):
    stage, iterations_key, pixels_key, plot_key = (
        "Geo",
        "neus_iter",
        "geo_num_pixels",
        "geo_plot_freq",
    )
    modules = ("sdf_network", "rendering_network", "deviation_network", "point_classify_network")

    def train_pose(self) -> bool:
        return bool(self.conf["model"]["train_pose"])  # Geo reads the config key, as the original

    def is_trained(self, name: str) -> bool:
        if name.startswith("obj_poses."):
            return self.train_pose()
        return name.split(".")[0] in self.modules

    def build_optimizer(self) -> torch.optim.Optimizer:
        lr = float(self.conf["train"]["neus_learning_rate"])
        groups = [
            {"params": list(getattr(self.model, m).parameters()), "lr": lr} for m in self.modules
        ]
        if self.train_pose():
            poses = self.model.obj_poses
            groups += [
                {"params": [poses.object_q], "lr": 1e-4},
                {"params": [poses.object_t], "lr": 1e-4},
            ]
        return torch.optim.AdamW(groups)

    def set_progress(self) -> None:
        fraction = 1.0
        if self.conf["train"]["progressive_training"]:
            fraction = float(np.clip((self.cur_iter - 20000) / 30000, 0, 1))
        self.model.sdf_network.progress = fraction
        self.model.rendering_network.progress = fraction

    def step(self) -> dict:
        self.set_progress()
        pixels = self.sample_pixels()
        rays = self.scene.rays(pixels)
        near, far = self.near_far(len(pixels))
        seg = self.scene.seg.reshape(-1)[pixels]
        out = self.model(rays.origins, rays.directions, near, far, seg, "Geo",
                         cos_anneal_ratio=self.cos_anneal_ratio(), with_instances=True)  # fmt: skip
        prior = (
            None
            if self.scene.normal_pretrain is None
            else self.scene.normal_pretrain.reshape(-1, 3)[pixels]
        )
        rgb = self.scene.rgb.reshape(-1, 3)[pixels]
        geo = geometry_loss(out, rgb, seg > 0, self.conf["loss"], prior, self.scene.c2w[:3, :3].T)
        inst = instance_loss(out, self.conf["transformation_loss"])
        loss = geo["neus_total_loss"] + inst["transformation_total_loss"]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), **{k: v.detach() for k, v in {**geo, **inst}.items()},
                "s_val": out["s_val"].detach()}  # fmt: skip

    def plot(self) -> None:
        images = render_views(
            self.model, self.scene, self.conf["train"]["validate_resolution_level"]
        )
        write_geometry_plots(
            self.run.plots, self.cur_iter, images, self.scene, self.board, self.log
        )


def render_views(model: DupNeuSRenderer, scene: Scene, level: int = 1) -> dict[str, torch.Tensor]:
    """Colour, normals (camera frame), hit mask and proxy instance of every ``level``-th pixel."""
    level = max(1, int(level))
    rows = torch.arange(0, scene.height, level)
    cols = torch.arange(0, scene.width, level)
    pixels = (rows[:, None] * scene.width + cols[None]).reshape(-1)
    was_training = model.training
    model.eval()
    parts: dict[str, list] = {
        "color": [],
        "normal": [],
        "hit": [],
        "instance": [],
        "weights_sum": [],
    }
    w2c = scene.c2w[:3, :3].T
    for chunk in pixels.split(EVAL_CHUNK):
        rays = scene.rays(chunk)
        near = torch.full((len(chunk), 1), scene.near * 0.95)
        far = torch.full((len(chunk), 1), scene.far * 1.05)
        out = model(rays.origins, rays.directions, near, far, scene.seg.reshape(-1)[chunk], "Geo",
                    perturb=0.0, with_instances=True)  # fmt: skip
        parts["color"].append(out["color"].detach())
        parts["normal"].append(out["surface_normal"].detach() @ w2c.T)
        parts["hit"].append(out["network_object_mask"])
        parts["instance"].append(out["surface_proxy_pred_class"])
        parts["weights_sum"].append(out["weights_sum"][:, 0].detach())
    model.train(was_training)
    shape = (len(rows), len(cols))
    images = {k: torch.cat(v).reshape(*shape, -1).squeeze(-1) for k, v in parts.items()}
    images["pixels"] = pixels.reshape(shape)
    return images


def write_geometry_plots(
    folder: Path, iteration: int, images: dict, scene: Scene, board, log
) -> dict:
    """A PNG grid (GT, render, normals, hit mask, instances) and PSNR on mask / hit pixels."""
    pixels = images["pixels"]
    gt = scene.rgb.reshape(-1, 3)[pixels.reshape(-1)].reshape(*pixels.shape, 3)
    mask = scene.seg.reshape(-1)[pixels.reshape(-1)].reshape(pixels.shape) > 0
    color = images["color"].clip(0, 1)
    metrics = {
        "psnr_mask": _psnr(color, gt, mask),
        "psnr_hit_and_mask": _psnr(color, gt, mask & images["hit"]),
        "mask_iou": float((mask & images["hit"]).sum() / max(1, int((mask | images["hit"]).sum()))),
    }
    normal = ((images["normal"] + 1) / 2).clip(0, 1) * images["hit"][..., None]
    instances = _instance_colors(images["instance"] + 1, images["hit"], scene.n_instances)
    tiles = [
        gt ** (1 / 2.2),
        color ** (1 / 2.2),
        normal.numpy(),
        images["hit"].float().numpy(),
        instances,
    ]
    save_image_grid(folder / f"rendering_{iteration}.png", [np.asarray(t) for t in tiles], ncols=5)
    board.scalars(metrics, iteration, "eval/")
    log.info(f"iteration {iteration}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return metrics


def _psnr(pred, target, mask) -> float:
    if not mask.any():
        return float("nan")
    return float(
        psnr(pred.permute(2, 0, 1) ** (1 / 2.2), target.permute(2, 0, 1) ** (1 / 2.2), mask=mask)
    )


def _instance_colors(labels: torch.Tensor, valid: torch.Tensor, n: int) -> np.ndarray:
    hues = np.linspace(0, 1, n + 1)[:-1]
    palette = np.stack(
        [0.5 + 0.5 * np.cos(2 * math.pi * (hues + s)) for s in (0, 1 / 3, 2 / 3)], -1
    )
    palette = np.concatenate([np.zeros((1, 3)), palette])
    return palette[(labels * valid).clamp(0, n).numpy()]


def secondary_visibility(model: DupNeuSRenderer, points, directions, scene: Scene) -> torch.Tensor:
    """(P,) True where NeuS marching of a secondary ray over [0.02 D, D] (D the scene diameter)
    accumulates weight > 0.95: the direction is occluded (the original's labels)."""
    diameter = scene.scene_radius * 2
    near = torch.full((len(points), 1), diameter * 0.02)
    far = torch.full((len(points), 1), diameter)
    with torch.no_grad():
        out = model(points, directions, near, far, None, "Vis", perturb=0.0)
    return out["weights_sum"][:, 0] > 0.95


class VisibilityRunner(StageRunner):
    stage, iterations_key, pixels_key, plot_key = (
        "Vis",
        "illum_iter",
        "vis_num_pixels",
        "vis_plot_freq",
    )
    directions_per_point = 4

    def start_from_previous_stage(self) -> None:
        path, state = previous_stage_weights(
            self.options.exps_folder_name, self.stage, self.options.expname
        )
        load_state_dict_strict(self.model, state, source=str(path))

    def is_trained(self, name: str) -> bool:
        return name.startswith("visibility_network.")

    def build_optimizer(self) -> torch.optim.Optimizer:
        lr = float(self.conf["train"]["illum_learning_rate"])
        return torch.optim.Adam(self.model.visibility_network.parameters(), lr=lr)

    def step(self) -> dict:
        pixels = self.sample_pixels()
        rays = self.scene.rays(pixels)
        near, far = self.near_far(len(pixels))
        with torch.no_grad():
            out = self.model(
                rays.origins, rays.directions, near, far, self.scene.seg.reshape(-1)[pixels], "Vis"
            )
        hit = out["network_object_mask"]
        points, normals = out["surface_points"][hit], out["surface_normal"][hit]
        if len(points) == 0:
            return {"loss": torch.zeros(()), "accuracy": torch.zeros(())}
        dirs = hemisphere_directions(normals, self.directions_per_point).reshape(-1, 3)
        points = points.repeat_interleave(self.directions_per_point, 0)
        occluded = secondary_visibility(self.model, points, dirs, self.scene)
        logits = self.model.visibility_network(points, dirs)
        target = (~occluded).long()  # class 1: visible
        loss = visibility_loss(logits, occluded)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.argmax(-1) == target).float().mean()
        return {"loss": loss.detach(), "visibility_loss": loss.detach(), "accuracy": accuracy}
