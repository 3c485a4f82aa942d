"""Train an Occupancy Network: ``python -m onet.train configs/img/onet.yaml`` (torchrun for
several processes). The authors' loop: checkpoint every training.checkpoint_every iterations
to model.pt, backups model_<it>.pt, validation every training.validate_every iterations with the
best model (training.model_selection_metric) in model_best.pt. A run resumes from its model.pt.

Added: --max-iterations (the original never stops), exact resume (data order and RNG states),
torchrun with synchronised batch norm (2 processes = 1 process with the same global batch),
TensorBoard in <out_dir>/logs, a text log, and the short flags --cdim --hdim --pdim --data_root
--batch_size --output_path --exp_name --encoder --decoder as an alternative to a config file.
project-noisypixel's commands run as they are: their model names (efficientnet-b0,
decoder-cbn, ...) or their HDF5 folder as --data_root, with no config file, select
configs/img/noisypixel.yaml (their defaults); an HDF5 --data_root sets data.dataset hdf5.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from geomkit import dist as gdist
from geomkit.errors import ArgumentParser, ConfigError, run_main
from geomkit.log import Board, progress, text_logger
from geomkit.training import EpochBatchSampler, eval_batches
from onet.checkpoints import load_imagenet_encoder, restore_training, save_training
from onet.config import add_override_argument, apply_overrides, load_config
from onet.data import build_dataset
from onet.models import build_model
from onet.models.encoders import ImageEncoder
from onet.training import Objective, Trainer
from onet.visualize import save_visualization

DEFAULT_CONFIG = "configs/img/onet.yaml"
NOISYPIXEL_CONFIG = "configs/img/noisypixel.yaml"
SHORT_FLAGS = {  # flag -> config key
    "cdim": "model.c_dim",
    "hdim": "model.decoder_kwargs.hidden_size",
    "pdim": "data.dim",
    "data_root": "data.path",
    "batch_size": "training.batch_size",
    "encoder": "model.encoder",
    "decoder": "model.decoder",
}
# project-noisypixel's model names: without a config file they select its defaults.
NOISYPIXEL_MODELS = {
    "resnet-18",
    "resnet-50",
    "efficientnet-b0",
    "efficientnet-b1",
    "efficientnet-b5",
    "efficientnet-b7",
    "decoder-cbn",
    "decoder-fc",
}


def add_short_flags(parser) -> None:
    """project-noisypixel's flags (their train.py and run_evals.py) as config shortcuts."""
    for flag in SHORT_FLAGS:
        parser.add_argument(f"--{flag}", help=f"sets {SHORT_FLAGS[flag]}")
    parser.add_argument("--output_path", help="with --exp_name: training.out_dir")
    parser.add_argument("--exp_name", help="with --output_path: training.out_dir")


def is_hdf5_folder(path: str | None) -> bool:
    """Whether ``path`` is a folder of project-noisypixel's per-object .h5 files."""
    return path is not None and Path(path).is_dir() and any(Path(path).glob("*.h5"))


def default_config(args) -> str:
    """The config when none is given: project-noisypixel's defaults for their model names or
    their HDF5 folder (their commands name no config), ONet's image model otherwise."""
    models = {args.encoder, args.decoder} & NOISYPIXEL_MODELS
    return NOISYPIXEL_CONFIG if models or is_hdf5_folder(args.data_root) else DEFAULT_CONFIG


def apply_short_flags(cfg: dict, args) -> dict:
    """Set the config keys of the short flags that were given."""
    for flag, key in SHORT_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            apply_overrides(cfg, [f"{key}={value}"])
    if is_hdf5_folder(args.data_root):
        cfg["data"]["dataset"], cfg["data"]["voxels_file"] = "hdf5", None
    if args.output_path or args.exp_name:
        cfg["training"]["out_dir"] = str(
            Path(args.output_path or "out") / (args.exp_name or "onet")
        )
    return cfg


def parse_args(argv):
    parser = ArgumentParser(prog="python -m onet.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--no-cuda", action="store_true", help="train on the CPU")
    parser.add_argument(
        "--exit-after",
        type=int,
        default=-1,
        help="save and exit with status 3 after this many seconds",
    )
    parser.add_argument("--max-iterations", type=int, help="stop after this many iterations")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    parser.add_argument("--num-workers", type=int, help="data loader processes per rank")
    parser.add_argument(
        "--imagenet",
        help="ImageNet file of the image encoder (default: its download name, e.g. "
        "resnet18-f37072fd.pth or efficientnet-b0-355c32eb.pth, in $GEOMKIT_WEIGHTS, "
        "~/.cache/geomkit/weights or torch hub's cache)",
    )
    parser.add_argument(
        "--no-pretrained",
        action="store_true",
        help="train the image encoder from random initialisation",
    )
    add_override_argument(parser, "training.batch_size=32")
    add_short_flags(parser)
    return parser.parse_args(argv)


def configure(args) -> dict:
    config = args.config or default_config(args)
    if config == NOISYPIXEL_CONFIG and not args.config:
        print(f"config: {NOISYPIXEL_CONFIG} (project-noisypixel's defaults)")
    cfg = apply_short_flags(load_config(config), args)
    apply_overrides(cfg, args.set)
    if args.max_iterations is not None:
        cfg["training"]["max_iterations"] = args.max_iterations
    if args.num_workers is not None:
        cfg["training"]["num_workers"] = args.num_workers
    return cfg


def loaders(cfg: dict, info: gdist.DistInfo, seed: int):
    train_set = build_dataset(cfg, "train", seed=seed)
    val_set = build_dataset(cfg, "val", seed=seed)
    if len(train_set) < cfg["training"]["batch_size"]:
        raise ConfigError(
            f"{len(train_set)} training objects: fewer than one batch "
            f"(training.batch_size {cfg['training']['batch_size']})"
        )
    return train_set, val_set


def make_loader(dataset, batch_sampler, workers: int):
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers)


class Run:
    """One training run: model, optimizer, data, bookkeeping; ``fit`` is the authors' loop."""

    def __init__(self, cfg: dict, args, info: gdist.DistInfo):
        self.cfg, self.args, self.info = cfg, args, info
        t = cfg["training"]
        self.out_dir = Path(t["out_dir"])
        self.train_set, self.val_set = loaders(cfg, info, args.seed)
        torch.manual_seed(args.seed)
        network = build_model(cfg, dataset_size=len(self.train_set)).to(info.device)
        self.optimizer = torch.optim.Adam(network.parameters(), lr=t["learning_rate"])
        self.sign = 1.0 if t["model_selection_mode"] == "maximize" else -1.0
        self.epoch_it, self.it, self.metric_val_best = 0, 0, -self.sign * float("inf")
        resume = self.out_dir / "model.pt"
        if resume.exists():
            self.epoch_it, self.it, self.metric_val_best = restore_training(
                resume, network, self.optimizer
            )
            self.log(f"resumed from {resume} at iteration {self.it}")
        elif isinstance(network.encoder, ImageEncoder) and not args.no_pretrained:
            self.log(f"ImageNet weights: {load_imagenet_encoder(network, args.imagenet)}")
        if gdist.is_distributed():
            network = gdist.convert_sync_batchnorm(network)
        self.objective = gdist.wrap_ddp(Objective(network), info)
        self.trainer = Trainer(
            self.objective, self.optimizer, info.device, cfg["test"]["threshold"], t["eval_sample"]
        )
        self.board = Board(self.out_dir / "logs")

    def log(self, message: str) -> None:
        text_logger(self.out_dir).info(message)

    def save(self, name: str) -> None:
        if self.info.is_main:
            save_training(
                self.out_dir / name,
                self.trainer.network,
                self.optimizer,
                self.epoch_it,
                self.it,
                self.metric_val_best,
            )

    def validate(self) -> None:
        batches = eval_batches(len(self.val_set), 10, self.info.rank, self.info.world_size)
        loader = make_loader(self.val_set, batches, self.cfg["training"]["num_workers"])
        metrics = self.trainer.evaluate(loader)
        self.board.scalars(metrics, self.it, prefix="val/")
        metric = self.cfg["training"]["model_selection_metric"]
        value = metrics[metric]
        self.log(
            f"validation at {self.it}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        )
        if self.sign * (value - self.metric_val_best) > 0:
            self.metric_val_best = value
            self.log(f"new best model ({metric} {value:.4f})")
            self.save("model_best.pt")

    def fit(self) -> int:
        """Run epochs until max_iterations (forever when null); returns the exit status."""
        t = self.cfg["training"]
        per_epoch = len(self.train_set) // t["batch_size"]
        start = time.time()
        bar = progress(total=t["max_iterations"], initial=self.it, desc="train")
        while t["max_iterations"] is None or self.it < t["max_iterations"]:
            if self.epoch_it == 0 or self.it >= self.epoch_it * per_epoch:
                self.epoch_it += 1  # as the authors count: epochs started
            status = self.epoch(self.it - (self.epoch_it - 1) * per_epoch, start, bar)
            if status is not None:
                return status
        return 0

    def epoch(self, start_batch: int, start_time: float, bar) -> int | None:
        """Train on the rest of the current epoch; an exit status when the run must stop."""
        t = self.cfg["training"]
        self.train_set.set_epoch(self.epoch_it)
        sampler = EpochBatchSampler(
            len(self.train_set),
            t["batch_size"],
            self.args.seed,
            self.epoch_it,
            start_batch,
            self.info.rank,
            self.info.world_size,
        )
        for batch in make_loader(self.train_set, sampler, t["num_workers"]):
            self.it += 1
            loss = self.trainer.train_step(batch)
            bar.update(1)
            bar.set_postfix(epoch=self.epoch_it, loss=f"{loss:.3f}")
            self.board.scalars({"loss": loss}, self.it, prefix="train/")
            self.periodic(batch, loss)
            status = self.stop_status(start_time)
            if status is not None:
                return status
        return None

    def due(self, key: str) -> bool:
        every = self.cfg["training"][key]
        return every > 0 and self.it % every == 0

    def periodic(self, batch: dict, loss: float) -> None:
        """The authors' every-N-iterations actions: print, visualise, save, back up, validate."""
        if self.due("print_every"):
            self.log(f"[epoch {self.epoch_it:2d}] it={self.it:6d}, loss={loss:.4f}")
        if self.due("visualize_every") and self.info.is_main:
            save_visualization(
                self.trainer.network,
                batch,
                self.out_dir / "vis",
                self.it,
                self.cfg["test"]["threshold"],
                self.info.device,
            )
        if self.due("checkpoint_every"):
            self.save("model.pt")
        if self.due("backup_every"):
            self.save(f"model_{self.it:d}.pt")
        if self.due("validate_every"):
            self.validate()

    def stop_status(self, start_time: float) -> int | None:
        """3 after --exit-after seconds (the authors' requeue status), 0 at max_iterations."""
        if 0 < self.args.exit_after <= time.time() - start_time:
            self.log("time limit reached: saving and exiting with status 3")
            self.save("model.pt")
            return 3
        limit = self.cfg["training"]["max_iterations"]
        if limit is not None and self.it >= limit:
            self.save("model.pt")
            return 0
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = configure(args)
    info = gdist.init_distributed("cpu" if args.no_cuda else None)
    gdist.seed_everything(args.seed)
    out_dir = Path(cfg["training"]["out_dir"])
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    try:
        status = Run(cfg, args, info).fit()
    finally:
        gdist.cleanup()
    return status


if __name__ == "__main__":
    run_main(main)
