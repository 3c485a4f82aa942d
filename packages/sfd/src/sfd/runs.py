"""Experiment folders and checkpoints in the authors' layout:
``exps/{Geo|Vis|Mat}-<expname>/<YYYY_MM_DD_HH_MM_SS>/`` holding ``plots/``, ``setting.yaml``,
TensorBoard events, ``checkpoints/ModelParameters/{iter,latest}.pth`` ({"iter",
"model_state_dict"}) and ``checkpoints/<Stage>OptimizerParameters/{iter,latest}.pth``
({"iter", "optimizer_state_dict"}, plus the RNG states an exact resume needs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from geomkit.checkpoint import load_checkpoint, rng_state, save_checkpoint
from geomkit.errors import CheckpointError, InputError

OPTIMIZER_DIRS = {"Geo": "NEUSOptimizerParameters", "Vis": "NEUSVisOptimizerParameters",
                  "Mat": "NEUSMatOptimizerParameters"}  # fmt: skip
PREVIOUS_STAGE = {"Vis": "Geo", "Mat": "Vis"}
MODEL_DIR = "ModelParameters"


@dataclass
class RunDir:
    root: Path
    stage: str

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def model_dir(self) -> Path:
        return self.root / "checkpoints" / MODEL_DIR

    @property
    def optimizer_dir(self) -> Path:
        return self.root / "checkpoints" / OPTIMIZER_DIRS[self.stage]

    def create(self) -> RunDir:
        for folder in (self.plots, self.model_dir, self.optimizer_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def save(self, iteration: int, model_state: dict, optimizer_state: dict) -> None:
        for name in (str(iteration), "latest"):
            save_checkpoint(
                self.model_dir / f"{name}.pth", {"iter": iteration, "model_state_dict": model_state}
            )
            save_checkpoint(
                self.optimizer_dir / f"{name}.pth",
                {
                    "iter": iteration,
                    "optimizer_state_dict": optimizer_state,
                    "rng_state": rng_state(),
                },
            )


def stage_folder(exps: Path, stage: str, expname: str) -> Path:
    return exps / f"{stage}-{expname}"


def new_run(exps: Path, stage: str, expname: str) -> RunDir:
    """A fresh timestamped run folder with its plots/ and checkpoints/ folders."""
    return RunDir(new_folder(exps, stage, expname), stage).create()


def new_folder(exps: Path, stage: str, expname: str) -> Path:
    """A fresh ``exps/{stage}-{expname}/<timestamp>/`` (a second one within the same second gets
    a suffix)."""
    base = stage_folder(exps, stage, expname) / f"{datetime.now():%Y_%m_%d_%H_%M_%S}"
    root, k = base, 1
    while root.exists():
        root, k = base.with_name(f"{base.name}_{k}"), k + 1
    root.mkdir(parents=True)
    return root


def find_run(exps: Path, stage: str, expname: str, timestamp: str = "latest") -> RunDir | None:
    """The run ``timestamp`` (or the newest one holding a checkpoint) of a stage, or None."""
    folder = stage_folder(exps, stage, expname)
    if timestamp != "latest":
        run = RunDir(folder / timestamp, stage)
        if not run.model_dir.is_dir():
            raise InputError(f"no run {run.root} with checkpoints to continue from")
        return run
    runs = sorted(
        p for p in folder.glob("*") if (p / "checkpoints" / MODEL_DIR / "latest.pth").is_file()
    )
    return RunDir(runs[-1], stage) if runs else None


def load_run_checkpoint(run: RunDir, checkpoint: str = "latest") -> tuple[dict, dict]:
    """(model file, optimizer file) of ``checkpoint`` (an iteration number or latest)."""
    model = load_checkpoint(run.model_dir / f"{checkpoint}.pth")
    optimizer_path = run.optimizer_dir / f"{checkpoint}.pth"
    if not optimizer_path.is_file():
        raise CheckpointError(f"{optimizer_path} not found: the run cannot resume its optimizer")
    return model, load_checkpoint(optimizer_path)


def previous_stage_weights(exps: Path, stage: str, expname: str) -> tuple[Path, dict]:
    """The newest ``latest.pth`` of the stage before ``stage`` (Vis reads Geo, Mat reads Vis)."""
    previous = PREVIOUS_STAGE[stage]
    run = find_run(exps, previous, expname)
    if run is None:
        raise InputError(
            f"--trainstage {stage} starts from a {previous} run, but "
            f"{stage_folder(exps, previous, expname)} holds none with "
            f"checkpoints/ModelParameters/latest.pth: run --trainstage {previous} first"
        )
    path = run.model_dir / "latest.pth"
    return path, load_checkpoint(path)["model_state_dict"]
