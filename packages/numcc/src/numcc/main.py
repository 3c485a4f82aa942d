"""NU-MCC and MCC: ``torchrun -m numcc.main`` with the original's flags (numcc.args).

Modes, as main_numcc.py: training (the default), ``--run_val`` (metrics of the evaluation set)
and ``--run_viz`` (Plotly pages of the first objects); ``--resume FILE`` loads a checkpoint
(the authors' udf-ep99.pth, numcc_hypersim_550c.pth, MCC's co3dv2_all_categories.pth with
``--model mcc``, or ours) strictly, the weights fixing --n_groups and --no_fine. Outputs go to
``experiments/<exp_name>/``: checkpoint-<epoch>.pth every --save_every epochs, checkpoint-last.pth
after every epoch and every --save_every_iters iterations, log.txt, TensorBoard in logs/,
metrics/ (evaluation every --val_every epochs and after the last) and viz/ (every --viz_every
epochs), see numcc.evaluation.

Training repeats the original: per-process batch --batch_size, --accum_iter accumulation,
AdamW with timm's weight-decay groups, warm-up and cosine set per iteration, encoder-only
autocast on CUDA, steps with a non-finite loss or an anchor loss above 10 zeroed, no gradient
clipping (MCC: --clip_grad). Added: a run resumes from its checkpoint-last.pth when started
again (exactly: data order, augmentation and random states), also in the middle of an epoch;
torchrun with gloo on the CPU and nccl on GPUs, two processes with half the batch each
training like one with the whole batch; --model mcc trains and evaluates the baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from geomkit import dist as gdist
from geomkit.checkpoint import rng_state, save_checkpoint, set_rng_state
from geomkit.errors import ConfigError, run_main
from geomkit.log import Board, progress, text_logger
from geomkit.training import EpochBatchSampler
from numcc.args import get_args_parser
from numcc.checkpoints import load_model
from numcc.data import build_datasets
from numcc.evaluation import evaluate, visualise
from numcc.models import build_model
from numcc.optim import absolute_lr, build_optimizer, lr_at, set_lr
from numcc.training import Objective, prepare_batch, zero_loss

DEBUG_ITERATIONS = 6
LAST = "checkpoint-last.pth"


def parse_args(argv=None) -> argparse.Namespace:
    parser = get_args_parser()
    parser.add_argument(
        "--save_every_iters",
        type=int,
        default=1000,
        help="added: also save checkpoint-last.pth every this many iterations (0: off)",
    )
    args = parser.parse_args(argv)
    if args.hr and args.model == "mcc":
        raise ConfigError("--hr is NU-MCC's: MCC has no pixel lookups")
    return args


def experiment_dir(args) -> Path:
    return Path("experiments") / args.exp_name


def device_of(args) -> str:
    return "cuda" if args.device.startswith("cuda") and torch.cuda.is_available() else "cpu"


class Run:
    """A training or evaluation run: model, data, optimiser, bookkeeping."""

    def __init__(self, args, info: gdist.DistInfo):
        self.info, self.out_dir = info, experiment_dir(args)
        self.start_epoch, self.saved = args.start_epoch, None
        # Inputs are checked before anything is written.
        evaluation_only = args.run_val or args.run_viz
        self.train_set, self.val_set = build_datasets(args, training=not evaluation_only)
        resume = args.resume or self.own_checkpoint(args)
        if resume:
            loaded = load_model(resume, args)
            self.model, self.args, self.saved = loaded.model, loaded.args, loaded.checkpoint
        else:
            torch.manual_seed(args.seed)
            self.model, self.args = build_model(args), args
        if self.args.reset_geo and not self.reset_before():
            if not hasattr(self.model, "reset_geometry_head"):
                raise ConfigError("--reset_geo is NU-MCC's (MCC has no fc_out)")
            self.model.reset_geometry_head()
        self.model.to(info.device)
        self.log = text_logger(self.out_dir if info.is_main else None, "numcc").info
        if resume:
            self.log(f"loaded {resume} (epoch {self.saved.get('epoch', 'unknown')})")

    def reset_before(self) -> bool:
        """Whether the checkpoint's own run already re-initialised the geometry output (a
        resumed --reset_geo run must not do it again)."""
        saved_args = (self.saved or {}).get("args")
        return bool(getattr(saved_args, "reset_geo", False))

    def own_checkpoint(self, args) -> str:
        """The run's checkpoint-last.pth when training starts again (it resumes)."""
        path = experiment_dir(args) / LAST
        if path.is_file() and not (args.run_val or args.run_viz):
            return str(path)
        return ""

    def epoch_label(self):
        return self.saved.get("epoch") if self.saved else None

    def run_val(self) -> dict:
        if self.saved is None:
            self.log("no --resume: evaluating an untrained model")
        return evaluate(
            self.model, self.val_set, self.args, self.out_dir, self.epoch_label(), self.info.device
        )

    def run_viz(self) -> list:
        pages = visualise(
            self.model, self.val_set, self.args, self.out_dir, self.epoch_label(), self.info.device
        )
        self.log(f"{len(pages)} pages in {self.out_dir / 'viz'}")
        return pages


class Trainer:
    """The original's training loop on a Run, with exact resume."""

    def __init__(self, run: Run):
        self.run, self.args, self.info = run, run.args, run.info
        self.lr = absolute_lr(self.args, self.info.world_size)
        self.optimizer = build_optimizer(run.model, self.args, self.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.info.device.type == "cuda")
        self.objective = gdist.wrap_ddp(Objective(run.model, self.args), self.info)
        self.board = Board(run.out_dir / "logs")
        self.epoch, self.batch = run.start_epoch, 0
        if run.saved is not None and "optimizer" in run.saved:
            self.restore(run.saved)
        run.log(f"lr {self.lr:.3g}, effective batch {self.effective_batch()}")

    def effective_batch(self) -> int:
        return self.args.batch_size * self.args.accum_iter * self.info.world_size

    def restore(self, saved) -> None:
        """Optimizer, scaler and position of a training checkpoint (the model is loaded)."""
        self.optimizer.load_state_dict(saved["optimizer"])
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        if "batch" in saved:  # ours, saved inside an epoch
            self.epoch, self.batch = int(saved["epoch"]), int(saved["batch"])
        else:  # the end of an epoch (the authors' files)
            self.epoch = int(saved["epoch"]) + 1
        states = saved.get("rng_ranks")
        if states and len(states) == self.info.world_size:
            set_rng_state(states[self.info.rank])
        self.run.log(f"resuming at epoch {self.epoch}, iteration {self.batch}")

    def iterations(self) -> int:
        per_epoch = len(self.run.train_set) // (self.args.batch_size * self.info.world_size)
        if per_epoch == 0:
            raise ConfigError(
                f"{len(self.run.train_set)} training samples: fewer than one batch of "
                f"{self.args.batch_size} x {self.info.world_size} processes"
            )
        return min(per_epoch, DEBUG_ITERATIONS) if self.args.debug else per_epoch

    def fit(self) -> None:
        for epoch in range(self.epoch, self.args.epochs):
            self.epoch = epoch
            self.train_epoch()
            self.batch = 0
            self.save(LAST)
            last = epoch + 1 == self.args.epochs
            if epoch % self.args.save_every == 0 or last:
                self.save(f"checkpoint-{epoch}.pth")
            self.run.saved = {"epoch": epoch}
            if (epoch + 1) % self.args.val_every == 0 or last:
                scores = self.run.run_val()["mean"]
                self.board.scalars(scores, epoch, prefix="val/")
            if (epoch + 1) % self.args.viz_every == 0:
                self.run.run_viz()

    def train_epoch(self) -> None:
        args, n_iter = self.args, self.iterations()
        self.run.train_set.set_epoch(self.epoch)
        sampler = EpochBatchSampler(
            len(self.run.train_set),
            args.batch_size * self.info.world_size,
            args.seed,
            self.epoch,
            self.batch,
            self.info.rank,
            self.info.world_size,
        )
        loader = torch.utils.data.DataLoader(
            self.run.train_set,
            batch_sampler=sampler,
            num_workers=args.num_workers,
            pin_memory=args.pin_mem and self.info.device.type == "cuda",
            generator=torch.Generator(),  # not the global one: resumed runs draw the same
        )
        self.optimizer.zero_grad()
        bar = progress(total=n_iter, initial=self.batch, desc=f"epoch {self.epoch}")
        for batch in loader:
            if self.batch >= n_iter:
                break
            loss = self.step(batch, n_iter)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        bar.close()

    def step(self, batch: dict, n_iter: int) -> float:
        args, step = self.args, self.batch
        if step % args.accum_iter == 0:
            set_lr(self.optimizer, lr_at(step / n_iter + self.epoch, args, self.lr))
        inputs = prepare_batch(batch, args, self.epoch, self.info.device)
        self.objective.train()
        losses = self.objective(inputs)
        loss = losses.total
        if losses.skip():
            self.run.log(f"epoch {self.epoch} iteration {step}: loss {float(loss)}, zeroed")
            loss = zero_loss(self.objective)
        self.scaler.scale(loss / args.accum_iter).backward()
        self.batch += 1
        if self.batch % args.accum_iter == 0:
            self.optimizer_step()
        self.log_step(losses, step, n_iter)
        return float(losses.total.detach())

    def optimizer_step(self) -> None:
        if self.args.model == "mcc" and self.args.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.args.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        every = self.args.save_every_iters
        if every and (self.batch // self.args.accum_iter) % every == 0:
            self.save(LAST, inside_epoch=True)

    def log_step(self, losses, step: int, n_iter: int) -> None:
        global_step = self.epoch * n_iter + step
        terms = {
            "loss": losses.total,
            "geo": losses.geo,
            "rgb": losses.rgb,
            "centers": losses.centers,
        }
        values = {name: float(value.detach()) for name, value in terms.items()}
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        self.board.scalars(values, global_step, prefix="train/")
        if step % self.args.print_every == 0:
            text = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            self.run.log(f"epoch {self.epoch} [{step}/{n_iter}] {text}")

    def save(self, name: str, inside_epoch: bool = False) -> None:
        """The authors' layout (model, optimizer, epoch, scaler, args) plus every rank's
        random state and, inside an epoch, the next iteration."""
        states = gdist.gather_objects(rng_state())
        if not self.info.is_main:
            return
        state = {
            "model": self.run.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "scaler": self.scaler.state_dict(),
            "args": self.args,
            "rng_ranks": states,
        }
        if inside_epoch:
            state["batch"] = self.batch
        save_checkpoint(self.run.out_dir / name, state)


def main(argv=None) -> int:
    args = parse_args(argv)
    info = gdist.init_distributed(device_of(args))
    gdist.seed_everything(args.seed)
    try:
        run = Run(args, info)
        if args.run_viz:
            run.run_viz()
        if args.run_val:
            run.run_val()
        if not (args.run_val or args.run_viz):
            Trainer(run).fit()
    finally:
        gdist.cleanup()
    return 0


if __name__ == "__main__":
    run_main(main)
