"""What exp_runner and val_runner share: the authors' flags, the conf with its overrides, the
experiment folder, the scene and the model."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from cocoinr.checkpoints import load_codebook
from cocoinr.config import load_conf
from cocoinr.data import SceneDataset
from cocoinr.models.volsdf import CocoVolSDF
from geomkit.config import add_override_argument
from geomkit.errors import InputError


def add_authors_flags(parser: argparse.ArgumentParser, iterations: int) -> None:
    """The original's flags and defaults (``--timestamp`` and ``--batch_size`` are accepted and,
    as there, unused: one image per iteration, no timestamp folder)."""
    parser.add_argument("--batch_size", type=int, default=1, help="unused (one view per step)")
    parser.add_argument("--iter", type=int, default=iterations, help="training iterations")
    parser.add_argument(
        "--conf", default="./confs/dtu.conf", help="a conf file, or a name in cocoinr/confs"
    )
    parser.add_argument("--expname", default="", help="appended to the conf's train.expname")
    parser.add_argument("--exps_folder", default="volsdf_fp", help="where experiments go")
    parser.add_argument(
        "--gpu", default="auto", help="auto (CUDA if available), cpu, or a GPU index"
    )
    parser.add_argument("--is_continue", action="store_true", help="resume from --checkpoint")
    parser.add_argument("--timestamp", default="latest", help="unused (no timestamp folders)")
    parser.add_argument("--checkpoint", default="latest", help="checkpoint epoch, or latest")
    parser.add_argument(
        "--scan_id", default="-1", help="scene folder name (e.g. scan24); -1: the conf's"
    )
    parser.add_argument("--cancel_vis", action="store_true", help="no plots during training")
    add_override_argument(parser, "dataset.num_views=3")  # fmt: skip


def device_of(gpu: str, local_rank: int = 0) -> torch.device:
    if gpu == "cpu" or (gpu == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    index = local_rank if gpu == "auto" else int(gpu)
    return torch.device(f"cuda:{index}")


@dataclass
class Experiment:
    conf: dict
    scan_id: str
    exp_dir: Path

    @classmethod
    def from_args(cls, args) -> Experiment:
        conf = load_conf(args.conf, args.set)
        scan_id = conf["dataset"]["scan_id"] if str(args.scan_id) == "-1" else str(args.scan_id)
        conf["dataset"]["scan_id"] = scan_id
        name = f"{conf['train']['expname']}{args.expname}_{scan_id}"
        return cls(conf, scan_id, Path(args.exps_folder) / name)

    def dataset(self) -> SceneDataset:
        data = self.conf["dataset"]
        split = data["split_file"] or Path(data["data_dir"]) / "train_val_split.toml"
        explicit = data["train_views"] is not None
        return SceneDataset(
            data["data_dir"], self.scan_id, img_res=data["img_res"],
            split_file=None if explicit else split,
            num_views=None if explicit else data["num_views"],
            train_views=data["train_views"],
        )  # fmt: skip

    def check_cameras(self, data: SceneDataset) -> None:
        """NeRF++'s background needs every camera inside the scene's bounding sphere (a ray
        from outside may miss it: NaN colours)."""
        radius = float(self.conf["model"]["scene_bounding_sphere"])
        distances = data.cameras.camera_center().norm(dim=-1)
        outside = (distances >= radius).nonzero().flatten().tolist()
        if outside:
            raise InputError(
                f"{len(outside)} camera(s) of {self.scan_id} (first: view {outside[0]}, at "
                f"{distances[outside[0]]:.2f}) lie outside model.scene_bounding_sphere = {radius} "
                "in the normalised frame: enlarge scale_mat in cameras.npz or the sphere"
            )

    def model(self, codebook: torch.Tensor | None = None) -> CocoVolSDF:
        """The model; its codebook read from model.vq_cfg.ckpt_path unless given (a trained
        model's file holds it)."""
        model_conf = self.conf["model"]
        if model_conf["use_attention"] and codebook is None:
            codebook = load_codebook(model_conf["vq_cfg"]["ckpt_path"])
        return CocoVolSDF(model_conf, codebook)
