"""Train CoCo-INR (or plain VolSDF) on one scene, with the authors' command line::

    python -m cocoinr.exp_runner --conf dtu.conf --expname dtu --exps_folder logs \\
        --scan_id scan24
    torchrun --nproc_per_node 2 -m cocoinr.exp_runner ...  (each rank renders a share of the rays)

Output as the original's: ``<exps_folder>/<train.expname><--expname>_<scan_id>/`` with
``runconf.conf``, ``checkpoints/{Model,Optimizer,Scheduler}Parameters/{<epoch>,latest}.pth``
(plus our ``TrainingState``), ``plots/<epoch>/`` and ``plots/log.txt``; TensorBoard in
``tensorboard/``. An "epoch" is one pass over the training views (one view per iteration,
``train.num_pixels`` random pixels of it); checkpoints at the start of every
``train.checkpoint_freq``-th epoch and at the end; plots likewise every ``train.plot_freq``-th
epoch and at the end (none with ``--cancel_vis``). ``--is_continue`` resumes exactly (same
parameters as an uninterrupted run). An experiment folder that already has checkpoints is
never overwritten without ``--is_continue``.
"""

from __future__ import annotations

import torch

from cocoinr.checkpoints import checkpoint_path, load_kind, load_model, resume_name, save_all
from cocoinr.config import to_hocon
from cocoinr.experiment import Experiment, add_authors_flags, device_of
from cocoinr.plots import plot_view
from cocoinr.training import (
    VolSDFLoss,
    epoch_views,
    lr_schedule,
    pixel_generator,
    rank_share,
    seed_iteration,
    train_step,
)
from geomkit import dist as gdist
from geomkit.errors import (
    ArgumentParser,
    CheckpointError,
    ConfigError,
    OutputExistsError,
    run_main,
)
from geomkit.io.files import atomic_write
from geomkit.log import Board, progress, text_logger


def parse_args(argv=None):
    parser = ArgumentParser(prog="python -m cocoinr.exp_runner", description=__doc__.split("\n")[0])
    add_authors_flags(parser, iterations=200_000)
    return parser.parse_args(argv)


class Run:
    def __init__(self, args, experiment: Experiment, info: gdist.DistInfo):
        self.args, self.exp, self.info = args, experiment, info
        conf = experiment.conf
        self.train_conf, self.seed = conf["train"], int(conf["train"]["seed"])
        self.data = experiment.dataset()
        experiment.check_cameras(self.data)
        torch.manual_seed(self.seed)  # the initial weights, the same on every rank
        self.model = experiment.model().to(info.device)
        self.loss = VolSDFLoss(**conf["loss"])
        self.n_train = len(self.data.train_idx)
        self.nepochs = max(int(args.iter / self.n_train), 1)
        lr = float(self.train_conf["learning_rate"])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.scheduler = lr_schedule(
            self.optimizer, self.nepochs * self.n_train,
            float(self.train_conf["sched_decay_rate"]), int(self.train_conf["warmup_iters"]),
        )  # fmt: skip
        self.board = Board(experiment.exp_dir / "tensorboard")
        self.log = text_logger(experiment.exp_dir / "plots" if info.is_main else None, "cocoinr")
        self.start_epoch = self.resume() if args.is_continue else 0

    def resume(self) -> int:
        exp_dir = self.exp.exp_dir
        name = resume_name(exp_dir, self.args.checkpoint)
        epoch = load_model(self.model, checkpoint_path(exp_dir, "model", name))
        for kind, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler)):
            saved_epoch, state = load_kind(exp_dir, kind, name)
            if saved_epoch != epoch:
                raise CheckpointError(
                    f"{exp_dir}: the {name} checkpoints are from different epochs ({epoch} and "
                    f"{saved_epoch}); resume from a numbered one with --checkpoint <epoch>"
                )
            obj.load_state_dict(state)
        self._check_seed(exp_dir, name)
        self.log.info("resumed from epoch %d (%s)", epoch, name)
        return epoch

    def _check_seed(self, exp_dir, name: str) -> None:
        """The per-iteration randomness derives from the seed: resuming with another one
        would not continue the same run."""
        if not checkpoint_path(exp_dir, "training", name).exists():
            return  # the authors' checkpoints have no training state
        saved = load_kind(exp_dir, "training", name)[1]["seed"]
        if saved != self.seed:
            raise ConfigError(f"{exp_dir} was trained with train.seed = {saved}, not {self.seed}")

    def save(self, epoch: int) -> None:
        if self.info.is_main:
            save_all(self.exp.exp_dir, epoch, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "training": {"iteration": epoch * self.n_train, "seed": self.seed},
            })  # fmt: skip
        gdist.barrier()

    def fit(self) -> None:
        freq = int(self.train_conf["checkpoint_freq"])
        total = self.nepochs * self.n_train
        bar = progress(total=total, initial=self.start_epoch * self.n_train, desc="train",
                       disable=not self.info.is_main)  # fmt: skip
        for epoch in range(self.start_epoch, self.nepochs):
            if epoch % freq == 0 and not (self.args.is_continue and epoch == self.start_epoch):
                self.save(epoch)
            if self._plot_due(epoch):
                self.plot(epoch)
            for step, view in enumerate(epoch_views(self.data.train_idx, self.seed, epoch)):
                stats = self.iteration(epoch * self.n_train + step, view)
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}")
        self.save(self.nepochs)
        bar.close()
        if self._plot_due(self.nepochs, final=True):
            self.plot(self.nepochs)
        self.log.info("finished %d epochs (%d iterations)", self.nepochs, total)

    def iteration(self, it: int, view: int) -> dict:
        n = int(self.train_conf["num_pixels"])
        pixels = self.data.sample_pixels(view, n, pixel_generator(self.seed, it))
        pixels = rank_share(pixels, self.info.rank, self.info.world_size)
        seed_iteration(self.seed, it, self.info.rank)
        origins, directions = (t.to(self.info.device) for t in self.data.rays(view, pixels))
        rgb = self.data.rgb(view, pixels).to(self.info.device)
        stats = train_step(self.model, self.loss, self.optimizer, origins, directions, rgb)
        self.scheduler.step()
        stats.update(beta=self.model.density.get_beta().item(), lr=self.scheduler.get_last_lr()[0])
        self.board.scalars(stats, it, prefix="train/")
        return stats

    def _plot_due(self, epoch: int, final: bool = False) -> bool:
        """At the start of every plot_freq-th epoch (as the original) and after the last."""
        every = int(self.train_conf["plot_freq"])
        if self.args.cancel_vis or every <= 0:
            return False
        return final or (epoch % every == 0 and epoch > 0)

    def plot(self, epoch: int) -> None:
        if self.info.is_main:
            views = self.data.test_idx or self.data.train_idx
            view = views[epoch % len(views)]
            images = plot_view(self.model, self.data, view, self.exp.conf,
                               self.exp.exp_dir / "plots" / str(epoch))  # fmt: skip
            self.board.image("plot/rendering", images["rgb"], epoch * self.n_train)
        gdist.barrier()


def prepare_folder(args, experiment: Experiment, info) -> None:
    """The experiment folder and its runconf.conf; refuse to train over a finished run."""
    exp_dir = experiment.exp_dir
    if not args.is_continue and checkpoint_path(exp_dir, "model").exists():
        raise OutputExistsError(
            f"{exp_dir} already holds checkpoints: pass --is_continue to resume, or another "
            "--expname / --exps_folder"
        )
    if info.is_main:
        (exp_dir / "plots").mkdir(parents=True, exist_ok=True)
        with atomic_write(exp_dir / "runconf.conf", "w") as out:
            out.write(to_hocon(experiment.conf))
    gdist.barrier()


def main(argv=None) -> int:
    args = parse_args(argv)
    experiment = Experiment.from_args(args)
    local_rank = gdist.init_distributed("cpu" if device_of(args.gpu).type == "cpu" else "cuda")
    info = gdist.DistInfo(local_rank.rank, local_rank.world_size, local_rank.local_rank,
                          device_of(args.gpu, local_rank.local_rank))  # fmt: skip
    try:
        prepare_folder(args, experiment, info)
        Run(args, experiment, info).fit()
    finally:
        gdist.cleanup()
    return 0


if __name__ == "__main__":
    run_main(main)
