"""``python -m npbgpp.train_net KEY=VALUE ...``: the authors' entry point, their overrides.

    python -m npbgpp.train_net trainer.gpus=1 hydra.run.dir=experiments/npbgpp_eval_scan118 \\
        datasets=dtu_one_scene datasets.data_root=${hydra:runtime.cwd}/example/DTU_masked \\
        datasets.scene_name=scan118 system=npbgpp_sphere weights_path=./checkpoints/x.ckpt \\
        eval_only=true dataloader=small

Modes as in the original: training (multi-scene pretraining, one-scene NPBG fitting,
``system=coefficients_ft``), or ``eval_only=true``: render and score the test views. The run
works in ``hydra.run.dir``: ``checkpoints/``, ``rendered/``, ``descriptors/``, ``tb_logs/``,
``metrics_*.json``, ``log.txt``. ``torchrun --nproc_per_node N -m npbgpp.train_net ...`` trains
on N processes (gloo on CPU, nccl on GPUs). A mistake in the command or the data is one line
on stderr and exit status 2, found before the run folder is written to (a folder the failed
start created is removed). ``trainer.resume_from_checkpoint=checkpoints/last.ckpt`` is read
from the run folder, as Lightning read it; a new fit into a folder that holds checkpoints is
refused unless it resumes them or ``+overwrite=true`` is given.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from geomkit import dist as gdist
from geomkit.errors import CheckpointError, ConfigError, InputError, OutputExistsError, run_main
from geomkit.weights import find_weight_file, search_dirs
from npbgpp import checkpoints
from npbgpp.config import Run, check_trainer, enter_run_dir, load_config, save_config
from npbgpp.datasets import ViewSceneWrapper, build_scene
from npbgpp.evaluation import ViewMetrics, evaluate, report
from npbgpp.fit import Fit
from npbgpp.models.unet import ENCODER_WEIGHT_FILE
from npbgpp.objectives import Objectives
from npbgpp.system import NPBG, DescriptorDirs, NPBGPlusPlus

log = logging.getLogger("npbgpp")
_FORMAT = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")


def build_system(run: Run):
    """The system the config names (``system.system_class``), with its losses."""
    cfg = run.cfg
    system_cfg = cfg.system
    objectives = Objectives.from_config(cfg, run.absolute) if not cfg.eval_only else None
    if system_cfg.system_class == "npbgpp":
        return NPBGPlusPlus(system_cfg, objectives)
    if system_cfg.system_class == "npbg":
        fresh_fit = not cfg.eval_only and not cfg.trainer.resume_from_checkpoint
        dirs = DescriptorDirs.from_config(system_cfg, run.absolute, fresh_fit)
        return NPBG(system_cfg, objectives, dirs)
    raise ConfigError(
        f"configuration: system.system_class must be npbgpp or npbg, got {system_cfg.system_class}"
    )


def _resolve_encoder_weights(run: Run) -> None:
    """ImageNet weights are downloaded by nobody: ``encoder_weights_path`` (relative to where
    the command started), else timm's file in geomkit's weight folders, else a checkpoint
    (``weights_path``, a resume) that holds the encoder; otherwise one clear error."""
    cfg = run.cfg
    extractor = cfg.system.get("feature_extractor") or {}
    if not extractor.get("pretrained_encoder"):
        return
    given = extractor.get("encoder_weights_path")
    if given:
        extractor.encoder_weights_path = str(run.absolute(given))
        return
    if cfg.weights_path is not None or cfg.trainer.resume_from_checkpoint:
        return  # the checkpoint holds the encoder
    try:
        extractor.encoder_weights_path = str(find_weight_file(None, ENCODER_WEIGHT_FILE, ""))
    except CheckpointError:
        raise ConfigError(
            "system.feature_extractor.pretrained_encoder=true needs timm's ImageNet "
            f"spnasnet_100 weights: put {ENCODER_WEIGHT_FILE} in a weight folder "
            f"({' or '.join(map(str, search_dirs()))}), set "
            "system.feature_extractor.encoder_weights_path=<file>, start from a checkpoint "
            "(weights_path=...), or train from scratch with "
            "system.feature_extractor.pretrained_encoder=false"
        ) from None


def stage_scenes(cfg: DictConfig, stage: str) -> list:
    """The scenes of a stage (``datasets.{train,val,test}_scenes``)."""
    names = cfg.datasets.get(f"{stage}_scenes") or []
    return [build_scene(cfg.datasets, str(name)) for name in names]


def main(argv=None) -> int:
    overrides = sys.argv[1:] if argv is None else list(argv)
    run = load_config(overrides)
    cfg = run.cfg
    check_trainer(cfg)
    info = gdist.init_distributed(_device(cfg))
    buffer = _start_logging()
    with run_folder(run) as folder:
        # everything a mistake can stop happens here, before the run folder is written to
        task = _prepare(run, folder, info.device)
    save_config(run, folder)
    _log_to_folder(buffer, folder)
    if cfg.eval_only:
        system, scenes, metrics, epoch = task
        results = evaluate(system, scenes, "test", epoch, folder, metrics,
                           save_images=bool(cfg.system.save_rendered_eval_images),
                           limit=cfg.trainer.limit_test_batches)  # fmt: skip
        if gdist.is_main_process():
            report(results, "test", epoch, folder)
    else:
        task.run()
    gdist.cleanup()
    return 0


def _prepare(run: Run, folder: Path, device):
    """Read the scenes (their files checked), build the system, load its weights; for
    training the :class:`Fit`, resumed when asked. Raises a UserError for any mistake."""
    cfg = run.cfg
    _resolve_encoder_weights(run)
    stages = ("test",) if cfg.eval_only else ("train", "val")
    scenes = {stage: stage_scenes(cfg, stage) for stage in stages}
    for scene in (s for stage in stages for s in scenes[stage]):
        require_point_cloud(scene)
    weights = run.absolute(cfg.weights_path) if cfg.weights_path is not None else None
    if weights is not None and not weights.is_file():
        raise CheckpointError(f"weights_path {weights} not found")
    resume = None
    if not cfg.eval_only:
        resume = resume_path(run, folder)
        refuse_overwrite(cfg, folder, resume)
    gdist.seed_everything(int(cfg.seed), per_rank=False)  # every rank starts from the same weights
    system = build_system(run).to(device)
    if system.losses is not None:
        system.losses.to(device)
    epoch = 0
    if weights is not None:
        unused = ("feature_extractor.",) if isinstance(system, NPBG) else ()
        epoch = int(checkpoints.load_weights(system, weights, unused).get("epoch", 0))
        log.info("loaded weights %s", weights)
    metrics = ViewMetrics.from_config(cfg, run.absolute)
    if cfg.eval_only:
        return system, scenes["test"], metrics, epoch
    all_views = bool(cfg.datasets.get("train_all_views"))

    def wrap(scene):
        return ViewSceneWrapper.from_config(scene, cfg.datasets, "train", all_views=all_views)

    fit = Fit(cfg, system, scenes, wrap, folder, metrics)
    if resume is not None:
        fit.resume(resume)
    fit.check()
    return fit


def require_point_cloud(scene) -> None:
    """The scene's point cloud file exists (its contents are checked when first read)."""
    if not scene.pc_path.is_file():
        raise InputError(
            f"point cloud {scene.pc_path} not found; make one with "
            f"python -m npbgpp.make_point_cloud {scene.root} --out {scene.pc_path} "
            "(or set datasets.pc_name)"
        )


def resume_path(run: Run, folder: Path) -> Path | None:
    """``trainer.resume_from_checkpoint``: a relative path is read from the run folder, as
    Lightning read it there after Hydra's chdir (``checkpoints/last.ckpt``), else from where
    the command started."""
    value = run.cfg.trainer.resume_from_checkpoint
    if not value:
        return None
    path = Path(str(value)).expanduser()
    candidates = [path] if path.is_absolute() else [folder / path, run.absolute(path)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"trainer.resume_from_checkpoint {value} not found (looked for "
        + " and ".join(str(c) for c in candidates)
        + ")"
    )


def refuse_overwrite(cfg: DictConfig, folder: Path, resume: Path | None) -> None:
    """A new training run would replace the checkpoints already in its run folder: refuse,
    unless it resumes from them or ``+overwrite=true`` says so."""
    existing = sorted((folder / "checkpoints").glob("*.ckpt"))
    if resume is not None or not existing or cfg.get("overwrite", False):
        return
    raise OutputExistsError(
        f"{folder / 'checkpoints'} already holds {len(existing)} checkpoints of an earlier run; "
        "resume it with trainer.resume_from_checkpoint=checkpoints/last.ckpt, choose another "
        "hydra.run.dir, or pass +overwrite=true to replace them"
    )


@contextmanager
def run_folder(run: Run):
    """Change into the run folder (created if needed, as Hydra does); if what follows fails
    and the folder was created here, it is removed again (a failed start leaves nothing)."""
    target = run.absolute(run.folder).resolve() if run.folder is not None else Path.cwd()
    created = not target.exists()
    try:
        yield enter_run_dir(run, save=False)
    except BaseException:
        if created and gdist.is_main_process():
            os.chdir(run.original_cwd)
            shutil.rmtree(target, ignore_errors=True)
        raise


def _start_logging() -> logging.handlers.MemoryHandler:
    """Hold the log until the run starts: a failed start prints only its error line."""
    for handler in log.handlers:  # an earlier main() in this process
        handler.close()
    buffer = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
    log.handlers, log.propagate = [buffer], False
    log.setLevel(logging.INFO if gdist.is_main_process() else logging.WARNING)
    return buffer


def _log_to_folder(buffer: logging.handlers.MemoryHandler, folder: Path) -> None:
    """Log to stderr and (rank 0) append to ``folder/log.txt`` from now on, the held lines
    first."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if gdist.is_main_process():
        handlers.append(logging.FileHandler(folder / "log.txt"))
    for handler in handlers:
        handler.setFormatter(_FORMAT)
        for record in buffer.buffer:
            handler.handle(record)
    buffer.close()
    log.handlers = handlers


def _device(cfg: DictConfig) -> str:
    import torch

    gpus = cfg.trainer.gpus
    if gpus in (None, 0) or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


if __name__ == "__main__":
    run_main(main)
