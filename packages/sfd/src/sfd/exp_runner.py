"""Train, evaluate and export SfD, with the authors' flags:

    python -m sfd.exp_runner --conf configs/default.yaml --data_split_dir data/airplane \\
        --expname airplane --trainstage Geo --use_pretrain_normal --init_method SFM
    ... --trainstage Vis, then --trainstage Mat; add --is_continue to resume a stage;
    --eval, --to_mesh, --to_uv on the newest run of --trainstage.

Any ``--section.key=value`` argument overrides a key of configs/base.yaml.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from geomkit.errors import ArgumentParser, ConfigError, run_main
from sfd.config import load_config
from sfd.models.pose import INIT_METHODS
from sfd.training import GeometryRunner, Options, VisibilityRunner

SEED = 42


def stage_runner(stage: str):
    if stage == "Mat":
        from sfd.material_stage import MaterialRunner

        return MaterialRunner
    return {"Geo": GeometryRunner, "Vis": VisibilityRunner}[stage]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m sfd.exp_runner", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--conf",
        default="",
        help="config overlay on base.yaml (default.yaml, debug.yaml or a file)",
    )
    parser.add_argument("--exps_folder_name", default="exps")
    parser.add_argument(
        "--expname", required=True, help="experiment name: runs go to exps/{Stage}-{expname}/"
    )
    parser.add_argument("--trainstage", required=True, choices=["Geo", "Vis", "Mat"])
    parser.add_argument(
        "--data_split_dir", required=True, type=Path, help="the object's data folder"
    )
    parser.add_argument(
        "--init_method",
        default="SFM",
        choices=INIT_METHODS,
        help="SFM poses from preprocessing (the authors' runs), GT for synthetic data",
    )
    parser.add_argument(
        "--use_pretrain_normal", action="store_true", help="use train/000_normal_pretrain.png"
    )
    parser.add_argument(
        "--is_continue", action="store_true", help="resume the stage's newest (or --timestamp) run"
    )
    parser.add_argument("--timestamp", default="latest")
    parser.add_argument("--checkpoint", default="latest", help="iteration number or latest")
    parser.add_argument(
        "--max_niter", type=int, default=300001, help="stop a stage after this many iterations"
    )
    parser.add_argument(
        "--visible_num", type=int, default=-1, help="instances used (-1: all registered)"
    )
    parser.add_argument(
        "--train_pose",
        action="store_true",
        help="refine poses (Vis/Mat; Geo reads model.train_pose)",
    )
    parser.add_argument("--debug", action="store_true", help="skip the periodic plots")
    parser.add_argument(
        "--eval", action="store_true", help="metrics of the newest run of --trainstage"
    )
    parser.add_argument(
        "--eval_relight", action="store_true", help="relighting metrics (needs --envmap_name)"
    )
    parser.add_argument("--envmap_name", default="")
    parser.add_argument(
        "--to_mesh", action="store_true", help="canonical and per-instance world meshes (PLY)"
    )
    parser.add_argument(
        "--to_uv", action="store_true", help="textured mesh: OBJ + MTL + albedo/roughness PNGs"
    )
    parser.add_argument(
        "--mesh_resolution", type=int, default=256, help="marching-cubes grid of the exports"
    )
    parser.add_argument("--texture_size", type=int, default=1024, help="texture side of --to_uv")
    for flag, kind, default, text in (
        ("--frame_skip", int, 1, "kept for the authors' commands (SfD has one frame)"),
        ("--eval_frame_skip", int, 1, "kept for the authors' commands"),
        ("--batch_size", int, 1, "kept for the authors' commands (one image)"),
        ("--select_index", int, -1, "kept for the authors' commands (one image)"),
    ):
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument(
        "--single_image", action="store_true", help="kept for the authors' commands"
    )
    parser.add_argument(
        "--forbid_vis", action="store_true", help="Mat without light visibility (PhySG)"
    )
    return parser


def seed_everything(seed: int = SEED) -> None:
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)  # noqa: NPY002 - the original seeds the global generator
    torch.manual_seed(seed)


def main(argv=None) -> int:
    args, overrides = build_parser().parse_known_args(argv)
    conf = load_config(args.conf or None, overrides)
    seed_everything()
    options = Options(
        conf=conf, data_split_dir=args.data_split_dir, expname=args.expname,
        exps_folder_name=Path(args.exps_folder_name), init_method=args.init_method,
        use_pretrain_normal=args.use_pretrain_normal, is_continue=args.is_continue,
        timestamp=args.timestamp, checkpoint=args.checkpoint, max_niter=args.max_niter,
        visible_num=args.visible_num, train_pose=args.train_pose, debug=args.debug,
    )  # fmt: skip
    if args.eval or args.eval_relight or args.to_mesh or args.to_uv:
        from sfd.outputs import run_outputs

        args.conf = conf
        return run_outputs(args, options)
    if args.forbid_vis and args.trainstage != "Mat":
        raise ConfigError("--forbid_vis only applies to --trainstage Mat")
    runner = stage_runner(args.trainstage)(options)
    if args.forbid_vis:
        runner.forbid_vis = True
    runner.train()
    return 0


if __name__ == "__main__":
    run_main(main)
