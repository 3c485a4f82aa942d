"""The authors' Hydra configuration, composed from ``npbgpp/configs`` with their override syntax.

``python -m npbgpp.train_net datasets=dtu_one_scene system=npbgpp_sphere hydra.run.dir=... ...``
takes the same ``key=value`` overrides as the original ``train_net.py``, including
``${hydra:runtime.cwd}`` and ``${hydra:run.dir}``. We compose with Hydra's compose API rather than
``@hydra.main`` so that a mistake (an unknown key or group option, a malformed override) is one
line and exit status 2 like every other entry point here, not Hydra's exit 1 and traceback.
Hydra 1.1's behaviour, which the original ran on, is kept: the run changes into
``hydra.run.dir`` (``hydra.job.chdir``), so ``checkpoints/`` and ``rendered/`` land there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from geomkit.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class Run:
    """A composed configuration (without its ``hydra`` node), the folder to work in
    (``hydra.run.dir``; None when ``hydra.job.chdir`` is false) and where the command started."""

    cfg: DictConfig
    folder: Path | None
    original_cwd: Path

    def absolute(self, path: str | os.PathLike) -> Path:
        """Hydra's ``to_absolute_path``: relative paths are relative to where the command
        started (the original does this for weights_path and the descriptor folders)."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.original_cwd / path


def load_config(overrides: Sequence[str]) -> Run:
    """Compose ``config.yaml`` with ``overrides`` and resolve every interpolation, the
    ``hydra:`` ones included."""
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        folder = Path(cfg.hydra.run.dir) if cfg.hydra.job.chdir else None
        with read_write(cfg), open_dict(cfg):
            cfg.pop("hydra")
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"configuration: {_first_line(error)}") from None
    return Run(cfg, folder, Path.cwd())


def enter_run_dir(run: Run, save: bool = True) -> Path:
    """Create and change into the run folder (Hydra 1.1's chdir); returns its absolute path.
    With ``save`` the composed configuration is saved as ``.hydra/config.yaml`` there, as Hydra
    does (:func:`save_config`). Relative data paths (``datasets.data_root``) are then relative
    to it, as in the original."""
    if run.folder is None:
        return Path.cwd()
    folder = run.absolute(run.folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    if save:
        save_config(run, folder)
    return folder


def save_config(run: Run, folder: Path) -> None:
    """The composed configuration as ``folder/.hydra/config.yaml`` (rank 0)."""
    if run.folder is None or int(os.environ.get("RANK", 0)) != 0:
        return
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(run.cfg, folder / ".hydra" / "config.yaml", resolve=True)


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines()[:2]).strip()


# trainer.* keys our loop implements (see configs/trainer/project.yaml), and those that only
# shape Lightning's logging or speed and so take any value here.
TRAINER_KEYS_USED = {
    "gpus", "max_epochs", "max_steps", "reload_dataloaders_every_n_epochs", "limit_train_batches",
    "limit_val_batches", "limit_test_batches", "check_val_every_n_epoch", "log_every_n_steps",
    "precision", "resume_from_checkpoint", "gradient_clip_val", "gradient_clip_algorithm",
    "deterministic", "accelerator", "num_sanity_val_steps",
}  # fmt: skip
TRAINER_KEYS_COSMETIC = {
    "weights_summary", "profiler", "log_gpu_memory", "benchmark", "prepare_data_per_node",
    "move_metrics_to_cpu", "replace_sampler_ddp", "checkpoint_callback", "amp_backend",
    "amp_level", "default_root_dir", "weights_save_path", "multiple_trainloader_mode",
}  # fmt: skip


def check_trainer(cfg: DictConfig) -> None:
    """Refuse trainer settings this loop does not implement (set away from their defaults)."""
    defaults = OmegaConf.load(CONFIG_DIR / "trainer" / "project.yaml")
    trainer = cfg.trainer
    for key in trainer:
        if key not in defaults:
            raise ConfigError(f"configuration: unknown key trainer.{key}")
        if key in TRAINER_KEYS_USED or key in TRAINER_KEYS_COSMETIC:
            continue
        if trainer[key] != defaults[key]:
            raise ConfigError(
                f"configuration: trainer.{key}={trainer[key]} is a Lightning feature npbgpp's "
                f"loop does not implement (keep its default, {defaults[key]})"
            )
    if int(trainer.precision) != 32:
        raise ConfigError("configuration: trainer.precision must be 32 (the original's setting)")
    if trainer.gradient_clip_algorithm not in ("norm", "value"):
        raise ConfigError("configuration: trainer.gradient_clip_algorithm must be norm or value")
