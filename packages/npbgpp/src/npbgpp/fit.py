"""The training loop: the original's Lightning fit, written out.

Each epoch trains on ``max_scenes_per_train_epoch`` scenes (:mod:`npbgpp.schedule`), each
offering ``train_num_samples`` random crops; every step is one optimisation step of every
optimizer on a batch of ``dataloader.train.total_batch_size`` items (split over the ranks;
gradients averaged). After each epoch: ``checkpoints/epoch{E}.ckpt`` and ``last.ckpt`` (the
authors' Lightning layout, plus what an exact resume needs), then validation when due.

Exact resume (``trainer.resume_from_checkpoint=checkpoints/last.ckpt``): the items of an epoch
are shuffled by (seed, epoch), and each item's crop, source views and augmentations are drawn
after seeding torch by (seed, epoch, step, its position in the global batch), so continuing
from the end of epoch E repeats the uninterrupted run, and with ``train_data_mode=common`` N
processes (each taking every N-th item of a global batch) repeat one process.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from geomkit import dist as gdist
from geomkit.errors import CheckpointError, ConfigError
from geomkit.log import Board, progress
from npbgpp import checkpoints
from npbgpp.evaluation import evaluate, report
from npbgpp.schedule import epoch_items, epoch_scenes, rank_scenes

log = logging.getLogger(__name__)
_STRIDE = 1_000_003


def item_seed(seed: int, epoch: int, step: int, position: int) -> int:
    """The seed of the random draws of one training item (its crop, source views, colour
    jitter, dropout): item ``position`` of the global batch of ``step``. Independent of how
    the batch is split over ranks, so N processes draw what one process draws."""
    return ((seed * _STRIDE + epoch) * _STRIDE + step) * 4096 + position


EPOCH_GROUPS = ("descriptors",)  # optimizer groups whose parameters and state last one epoch


def lasting_state(optimizer: torch.optim.Optimizer) -> dict:
    """What of ``optimizer`` a checkpoint keeps: its state dict without the parameters of the
    groups named in EPOCH_GROUPS (NPBG's descriptor tables: their parameters change with the
    epoch's scenes, are saved as files, and their optimizer state is reset every epoch, as the
    original resets it), so that it loads into the optimizer a resumed run builds."""
    state = optimizer.state_dict()
    dropped: set[int] = set()
    groups = []
    for group in state["param_groups"]:
        if group.get("name") in EPOCH_GROUPS:
            dropped.update(group["params"])
            group = {**group, "params": []}
        groups.append(group)
    kept = {k: v for k, v in state["state"].items() if k not in dropped}
    return {"state": kept, "param_groups": groups}


class _Tables(nn.Module):
    """NPBG's descriptor tables as a module, for gradient averaging."""

    def __init__(self, tables: list[nn.Parameter]):
        super().__init__()
        self.tables = nn.ParameterList(tables)


class Fit:
    """Trains ``system`` on the training scenes; validates on the validation scenes."""

    def __init__(self, cfg: DictConfig, system, scenes: dict, wrap, folder: Path, metrics):
        self.cfg, self.system, self.scenes, self.wrap = cfg, system, scenes, wrap
        self.folder, self.metrics = folder, metrics
        self.trainer = cfg.trainer
        self.seed = int(cfg.seed)
        self.optimizers = system.optimizers()
        self.board = Board(folder / "tb_logs")
        self.epoch, self.global_step = 0, 0

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint this loop wrote (model, optimizers, epoch, step)."""
        dirs = getattr(self.system, "dirs", None)
        if dirs is not None and dirs.save is None:
            raise CheckpointError(
                f"cannot resume from {path}: NPBG's descriptor tables are kept only in "
                "system.descriptors_save_dir, which this run does not set (set it to the folder "
                "the interrupted run wrote them to)"
            )
        checkpoint = checkpoints.load_weights(self.system, path)
        if "npbgpp_resume" not in checkpoint:
            raise CheckpointError(
                f"{path} has no resume state (not written by npbgpp); start from its weights "
                "with weights_path instead"
            )
        states = checkpoint.get("optimizer_states") or []
        try:
            if len(states) != len(self.optimizers):
                raise ValueError(f"{len(states)} optimizer states for {len(self.optimizers)}")
            for optimizer, state in zip(self.optimizers, states, strict=True):
                optimizer.load_state_dict(state)
        except (ValueError, KeyError) as error:
            raise CheckpointError(
                f"{path}: its optimizer state does not fit this run's optimizers ({error}); "
                "resume with the configuration the run was started with"
            ) from None
        self.epoch = int(checkpoint["epoch"]) + 1
        if dirs is not None:
            dirs.resume_epoch = int(checkpoint["epoch"])
        self.global_step = int(checkpoint["global_step"])
        log.info("resumed from %s: epoch %d, step %d", path, self.epoch, self.global_step)

    def run(self) -> None:
        max_epochs = int(self.trainer.max_epochs)
        max_steps = self.trainer.max_steps
        while self.epoch < max_epochs and (max_steps is None or self.global_step < max_steps):
            self.train_epoch()
            self.save()
            if self._validation_due():
                self.validate()
            self.epoch += 1

    def check(self) -> None:
        """Raise the mistakes the first epoch would meet (no full batch, scenes that cannot be
        split over the ranks) before anything is written."""
        if self.epoch < int(self.trainer.max_epochs):
            self._plan(self.epoch)

    def _plan(self, epoch: int) -> tuple[list[int], list, list]:
        """This rank's training scenes of ``epoch`` (indices), their datasets, its batches."""
        rank, world = gdist.rank(), gdist.world_size()
        train = self.scenes["train"]
        per_epoch = int(self.cfg.system.max_scenes_per_train_epoch)
        chosen = epoch_scenes(len(train), per_epoch, epoch)
        mine = rank_scenes(chosen, self.cfg.dataloader.train_data_mode, rank, world)
        datasets = [self.wrap(train[i]) for i in mine]
        batches = self._batches([len(d) for d in datasets], epoch)
        if not batches:
            total = int(self.cfg.dataloader.train.total_batch_size)
            raise ConfigError(
                f"configuration: epoch {epoch} has no full batch: {sum(map(len, datasets))} "
                f"training items (datasets.train_num_samples per scene) on this process, "
                f"fewer than a batch of {total} split over {world} processes "
                "(dataloader.train.total_batch_size); lower it or raise train_num_samples"
            )
        return mine, datasets, batches

    def train_epoch(self) -> None:
        system, epoch = self.system, self.epoch
        train = self.scenes["train"]
        mine, datasets, batches = self._plan(epoch)
        system.train()
        system.start_epoch([train[i] for i in mine])
        bar = progress(batches, desc=f"epoch {epoch}")
        start = time.perf_counter()
        for step, batch in enumerate(bar):
            items = [
                (train[mine[s]], datasets[s], i, item_seed(self.seed, epoch, step, position))
                for (s, i), position in zip(batch, self._positions(len(batch)), strict=True)
            ]
            losses = self.step(items)
            self.global_step += 1
            if self.global_step % int(self.trainer.log_every_n_steps) == 0 or step == 0:
                self.board.scalars(losses, self.global_step, prefix="train/")
            bar.set_postfix(loss=f"{losses['loss']:.4g}")
            if self.trainer.max_steps is not None and self.global_step >= self.trainer.max_steps:
                break
        system.end_epoch([train[i] for i in mine], self.folder, epoch)
        log.info("epoch %d: %d steps in %.1f s", epoch, len(batches), time.perf_counter() - start)

    def step(self, items: list) -> dict[str, float]:
        """One optimisation step on this rank's items, (scene, dataset, index, seed) each:
        an item is drawn and its loss computed after seeding with its seed. The mean loss;
        gradients averaged over the ranks."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for scene, dataset, index, seed in items:
            torch.manual_seed(seed)
            losses = self.system.training_losses(scene, dataset[index])
            (losses["loss"] / len(items)).backward()
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + value.detach() / len(items)
        gdist.average_gradients(self._shared())
        clip = float(self.trainer.gradient_clip_val)
        if clip > 0:
            parameters = [p for p in self.system.parameters() if p.grad is not None]
            if self.trainer.gradient_clip_algorithm == "norm":
                torch.nn.utils.clip_grad_norm_(parameters, clip)
            else:
                torch.nn.utils.clip_grad_value_(parameters, clip)
        for optimizer in self.optimizers:
            optimizer.step()
        return {k: float(v) for k, v in totals.items()}

    def save(self) -> None:
        if not gdist.is_main_process():
            return
        folder = self.folder / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        optimizers = [lasting_state(optimizer) for optimizer in self.optimizers]
        for name in (f"epoch{self.epoch}.ckpt", "last.ckpt"):
            checkpoints.write_checkpoint(
                folder / name, self.system, self.epoch, self.global_step, optimizers,
                self.cfg, resume={"seed": self.seed},
            )  # fmt: skip

    def validate(self) -> dict:
        results = evaluate(
            self.system, self.scenes["val"], "val", self.epoch, self.folder, self.metrics,
            save_images=False, limit=self.trainer.limit_val_batches,
        )  # fmt: skip
        if gdist.is_main_process():
            report(results, "val", self.epoch, self.folder)
            self.board.scalars(results["mean"], self.global_step, prefix="val/")
        return results

    def _common(self) -> bool:
        """Every rank trains on the same scenes (``train_data_mode=common``, or one process)."""
        return self.cfg.dataloader.train_data_mode == "common" or gdist.world_size() == 1

    def _batches(self, sizes: list[int], epoch: int) -> list[list[tuple[int, int]]]:
        """This rank's part of each step's batch: in common mode the global batches of
        ``total_batch_size`` items, split item by item over the ranks (so N processes train on
        what one does); in each mode its own batches of ``total_batch_size / N`` items."""
        total = int(self.cfg.dataloader.train.total_batch_size)
        limit = self.trainer.limit_train_batches
        rank, world = gdist.rank(), gdist.world_size()
        if self._common():
            if total % world:
                raise ConfigError(
                    f"configuration: a batch of {total} (dataloader.train.total_batch_size) "
                    f"cannot be split evenly over {world} processes (train_data_mode=common)"
                )
            batches = epoch_items(sizes, epoch, self.seed, total, limit)
            return [b[rank::world] for b in batches]
        per_rank = max(1, total // world)
        return epoch_items(sizes, epoch, self.seed * 64 + rank, per_rank, limit)

    def _positions(self, count: int) -> list[int]:
        """The positions in the global batch of this rank's ``count`` items."""
        rank, world = gdist.rank(), gdist.world_size()
        if self._common():
            return [rank + world * j for j in range(count)]
        return [rank * count + j for j in range(count)]

    def _shared(self) -> nn.Module:
        """The parameters whose gradients are averaged over the ranks: the system's shared
        modules, and in common mode also NPBG's descriptor tables (every rank holds the same
        scenes then, and the original's DDP averaged them as any parameter)."""
        shared = self.system.shared_modules()
        tables = list(getattr(self.system, "tables", {}).values())
        if not tables or not self._common() or gdist.world_size() == 1:
            return shared
        return nn.ModuleList([shared, _Tables(tables)])

    def _validation_due(self) -> bool:
        limit = self.trainer.limit_val_batches
        if not self.scenes.get("val") or float(limit) == 0:
            return False
        return (self.epoch + 1) % int(self.trainer.check_val_every_n_epoch) == 0
