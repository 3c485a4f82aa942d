"""Evaluate a trained CoCo-INR model, with the authors' command line::

    python -m cocoinr.val_runner --conf dtu.conf --expname dtu --checkpoint latest \\
        --exps_folder logs --scan_id scan24 [--resolution 512] [--dtu_eval DTU_DIR]

Loads ``checkpoints/ModelParameters/<checkpoint>.pth`` (ours or the authors' layout; the
codebook comes from the file) and writes to ``plots/<epoch>/``: the original's four PNGs per
held-out view, ``metrics.json`` (PSNR, SSIM, LPIPS per view and their means, full and masked),
and the world-space mesh ``surface_world_<epoch>.ply`` (VolSDF's protocol through
``scale_mat``, largest piece, chunked), scored by DTU's Chamfer protocol (``--dtu_eval``, a
folder with DTU's ObsMask/ and Points/stl/) and/or against any mesh (``--gt_mesh``, in world
units). The codebook attention runs once for the whole evaluation.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch

from cocoinr.checkpoints import authors_to_ours, checkpoint_path, load_model
from cocoinr.dtu_eval import dtu_chamfer
from cocoinr.evaluation import summarise, view_metrics
from cocoinr.experiment import Experiment, add_authors_flags, device_of
from cocoinr.meshing import extract_mesh
from cocoinr.plots import ground_truth, write_view_images
from cocoinr.render import eval_latents, render_view
from geomkit.checkpoint import load_checkpoint
from geomkit.errors import ArgumentParser, InputError, OutputExistsError, run_main
from geomkit.evaluate import evaluate
from geomkit.io import save_json, write_ply
from geomkit.log import progress


def parse_args(argv=None):
    parser = ArgumentParser(prog="python -m cocoinr.val_runner", description=__doc__.split("\n")[0])
    add_authors_flags(parser, iterations=2_000_000)
    parser.add_argument("--resolution", type=int, default=512, help="mesh grid (longest side)")
    parser.add_argument("--coarse_resolution", type=int, default=100,
                        help="grid of the pass that finds the surface (VolSDF: 100)")  # fmt: skip
    parser.add_argument("--views", choices=("test", "all"), default="test", help="views to render")
    parser.add_argument(
        "--lpips",
        choices=("alex", "vgg", "none"),
        default="alex",
        help="LPIPS backbone (its torchvision weights must be on this machine)",
    )
    parser.add_argument("--no_mesh", action="store_true", help="skip the mesh")
    parser.add_argument("--dtu_eval", type=Path, help="DTU evaluation folder (ObsMask/, Points/)")
    parser.add_argument("--gt_mesh", type=Path, help="ground-truth mesh or points, world units")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation")
    return parser.parse_args(argv)


def build_model(experiment: Experiment, path: Path, device) -> tuple[torch.nn.Module, int]:
    """The model with the weights (and the codebook) of ``path``."""
    state = load_checkpoint(path).get("model_state_dict", {})
    codebook = authors_to_ours(state).get("codebook")
    model = experiment.model(codebook)
    epoch = load_model(model, path)
    return model.to(device).eval(), epoch


def render_views(model, latents, data, views, out_dir: Path, chunk: int, lpips) -> dict:
    per_view, seconds = {}, []
    for view in progress(views, desc="views"):
        start = time.perf_counter()
        images = render_view(model, data, view, chunk, latents, show_progress=True)
        seconds.append(time.perf_counter() - start)
        gt = ground_truth(data, view)
        write_view_images(out_dir, view, images, gt)
        mask = None if data.masks is None else data.masks[view].reshape(data.image_size)
        per_view[view] = view_metrics(images["rgb"], torch.from_numpy(gt), mask, lpips)
    return {"views": per_view, "mean": summarise(per_view),
            "seconds_per_view": sum(seconds) / max(len(seconds), 1)}  # fmt: skip


def mesh_metrics(model, latents, data, args, out_dir: Path, epoch: int, scan_id: str) -> dict:
    device = next(model.parameters()).device
    mesh = extract_mesh(lambda p: model.sdf(p, latents), args.resolution,
                        scale_mat=data.scale_mat, device=device,
                        coarse_resolution=args.coarse_resolution)  # fmt: skip
    path = out_dir / f"surface_world_{epoch}.ply"
    write_ply(path, mesh)
    out = {"mesh": str(path), "vertices": len(mesh.vertices), "faces": len(mesh.faces)}
    if args.dtu_eval is not None:
        out["dtu_chamfer"] = dtu_chamfer(mesh, _scan_number(scan_id), args.dtu_eval)
    if args.gt_mesh is not None:
        out["geomkit_evaluate"] = evaluate(path, args.gt_mesh)
    return out


def _scan_number(scan_id: str) -> int:
    found = re.fullmatch(r"scan(\d+)", scan_id)
    if not found:
        raise InputError(f"--dtu_eval needs a DTU scan id like scan24, got {scan_id!r}")
    return int(found.group(1))


def main(argv=None) -> int:
    args = parse_args(argv)
    experiment = Experiment.from_args(args)
    device = device_of(args.gpu)
    model, epoch = build_model(experiment, checkpoint_path(experiment.exp_dir, "model",
                                                           args.checkpoint), device)  # fmt: skip
    out_dir = experiment.exp_dir / "plots" / str(epoch)
    if (out_dir / "metrics.json").exists() and not args.overwrite:
        raise OutputExistsError(f"{out_dir / 'metrics.json'} exists; pass --overwrite to redo it")
    data = experiment.dataset()
    views = data.test_idx if args.views == "test" else list(range(data.n_images))
    if not views:
        raise InputError(
            "no held-out views to evaluate (the split trains on all of them); use --views all"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    lpips = None
    if args.lpips != "none":
        from geomkit.metrics.lpips import LPIPS

        lpips = LPIPS(args.lpips)
    chunk = int(experiment.conf["train"]["split_n_pixels"])
    metrics = {"epoch": epoch, "scan_id": experiment.scan_id, "train_views": data.train_idx}
    latents = eval_latents(model)  # once for every view and the mesh
    metrics["images"] = render_views(model, latents, data, views, out_dir, chunk, lpips)
    if not args.no_mesh:
        metrics["mesh"] = mesh_metrics(
            model, latents, data, args, out_dir, epoch, experiment.scan_id
        )
    save_json(out_dir / "metrics.json", metrics)
    mean = metrics["images"]["mean"]
    print(f"{len(views)} views: " + ", ".join(f"{k} {v:.4f}" for k, v in mean.items()))
    return 0


if __name__ == "__main__":
    run_main(main)
