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
on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from geomkit import dist as gdist
from geomkit.errors import ConfigError, run_main
from geomkit.log import text_logger
from npbgpp import checkpoints
from npbgpp.config import Run, check_trainer, enter_run_dir, load_config
from npbgpp.datasets import ViewSceneWrapper, build_scene
from npbgpp.evaluation import ViewMetrics, evaluate, report
from npbgpp.fit import Fit
from npbgpp.objectives import Objectives
from npbgpp.system import NPBG, DescriptorDirs, NPBGPlusPlus

log = logging.getLogger("npbgpp")


def build_system(run: Run):
    """The system the config names (``system.system_class``), with its losses."""
    cfg = run.cfg
    system_cfg = cfg.system
    _check_encoder_weights(cfg)
    objectives = Objectives.from_config(cfg, run.absolute) if not cfg.eval_only else None
    if system_cfg.system_class == "npbgpp":
        return NPBGPlusPlus(system_cfg, objectives)
    if system_cfg.system_class == "npbg":
        return NPBG(system_cfg, objectives, DescriptorDirs.from_config(system_cfg, run.absolute))
    raise ConfigError(
        f"configuration: system.system_class must be npbgpp or npbg, got {system_cfg.system_class}"
    )


def _check_encoder_weights(cfg: DictConfig) -> None:
    """ImageNet weights are downloaded by nobody: say where they must come from."""
    extractor = cfg.system.get("feature_extractor") or {}
    if not extractor.get("pretrained_encoder") or extractor.get("encoder_weights_path"):
        return
    if cfg.weights_path is not None or cfg.trainer.resume_from_checkpoint:
        return  # the checkpoint holds the encoder
    raise ConfigError(
        "system.feature_extractor.pretrained_encoder=true needs timm's ImageNet spnasnet_100 "
        "weights: set system.feature_extractor.encoder_weights_path=<local file>, start from "
        "a checkpoint (weights_path=...), or train from scratch with "
        "system.feature_extractor.pretrained_encoder=false"
    )


def stage_scenes(cfg: DictConfig, stage: str) -> list:
    """The scenes of a stage (``datasets.{train,val,test}_scenes``)."""
    names = cfg.datasets.get(f"{stage}_scenes") or []
    return [build_scene(cfg.datasets, str(name)) for name in names]


def main(argv=None) -> int:
    overrides = sys.argv[1:] if argv is None else list(argv)
    run = load_config(overrides)
    cfg = run.cfg
    check_trainer(cfg)
    folder = enter_run_dir(run)
    info = gdist.init_distributed(_device(cfg))
    handlers = text_logger(folder, "npbgpp").handlers
    log.handlers, log.propagate = list(handlers), False
    log.setLevel(logging.INFO if gdist.is_main_process() else logging.WARNING)
    gdist.seed_everything(int(cfg.seed))
    system = build_system(run).to(info.device)
    if system.losses is not None:
        system.losses.to(info.device)
    if cfg.weights_path is not None:
        unused = ("feature_extractor.",) if isinstance(system, NPBG) else ()
        checkpoints.load_weights(system, run.absolute(cfg.weights_path), unused)
        log.info("loaded weights %s", run.absolute(cfg.weights_path))
    metrics = ViewMetrics.from_config(cfg, run.absolute)
    if cfg.eval_only:
        scenes = stage_scenes(cfg, "test")
        epoch = _weights_epoch(run)
        results = evaluate(system, scenes, "test", epoch, folder, metrics,
                           save_images=bool(cfg.system.save_rendered_eval_images),
                           limit=cfg.trainer.limit_test_batches)  # fmt: skip
        if gdist.is_main_process():
            report(results, "test", epoch, folder)
        gdist.cleanup()
        return 0
    scenes = {"train": stage_scenes(cfg, "train"), "val": stage_scenes(cfg, "val")}
    all_views = bool(cfg.datasets.get("train_all_views"))

    def wrap(scene):
        return ViewSceneWrapper.from_config(scene, cfg.datasets, "train", all_views=all_views)

    fit = Fit(cfg, system, scenes, wrap, folder, metrics)
    if cfg.trainer.resume_from_checkpoint:
        fit.resume(run.absolute(cfg.trainer.resume_from_checkpoint))
    fit.run()
    gdist.cleanup()
    return 0


def _device(cfg: DictConfig) -> str:
    import torch

    gpus = cfg.trainer.gpus
    if gpus in (None, 0) or not torch.cuda.is_available():
        return "cpu"
    return "cuda"


def _weights_epoch(run: Run) -> int:
    """The epoch the evaluated weights finished (the original names test folders by it)."""
    if run.cfg.weights_path is None:
        return 0
    return int(
        checkpoints.read_lightning_checkpoint(run.absolute(run.cfg.weights_path)).get("epoch", 0)
    )


if __name__ == "__main__":
    run_main(main)
