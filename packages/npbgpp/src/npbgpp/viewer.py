"""A fitted scene ready to render from any camera: a train_net run folder, its weights and one
of its scenes (NPBG++ aggregates the scene's input views once; NPBG reads its table).

Relative paths in the run's saved configuration are read as train_net reads them: data
folders relative to the run folder, descriptor folders relative to the current directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf, open_dict

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from npbgpp import checkpoints
from npbgpp.config import Run
from npbgpp.datasets import build_scene
from npbgpp.system import NPBG


@dataclass
class FittedScene:
    system: torch.nn.Module
    scene: object

    @torch.no_grad()
    def render(self, camera: Cameras) -> torch.Tensor:
        """(3, H, W) in [0, 1] for one camera."""
        return self.system.render_view(self.scene, camera, clamp=True).image[0]


def load_run(
    run_dir: Path, checkpoint: Path | None = None, scene: str | None = None
) -> FittedScene:
    """The system of ``run_dir`` with ``checkpoint`` (default ``checkpoints/last.ckpt``),
    prepared for ``scene`` (default the run's first test scene)."""
    from npbgpp.train_net import build_system  # the entry point's builder, one definition

    run_dir = Path(run_dir)
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise InputError(f"{run_dir} is not a train_net run folder (no {saved})")
    cfg = OmegaConf.load(saved)
    with open_dict(cfg):
        cfg.eval_only = True
    system = build_system(Run(cfg, None, Path.cwd())).eval()
    weights = checkpoint or run_dir / "checkpoints" / "last.ckpt"
    unused = ("feature_extractor.",) if isinstance(system, NPBG) else ()
    checkpoints.load_weights(system, weights, unused)
    name = scene or (list(cfg.datasets.get("test_scenes") or []) + [None])[0]
    datasets = OmegaConf.to_container(cfg.datasets, resolve=True)
    datasets["data_root"] = os.path.join(run_dir, datasets["data_root"])
    fitted = build_scene(OmegaConf.create(datasets), name)
    with torch.no_grad():
        system.prepare_eval(fitted, run_dir)
    return FittedScene(system, fitted)
