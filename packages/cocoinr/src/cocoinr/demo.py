"""A short CoCo-INR fit on a generated VolSDF-layout scene, end to end through the authors'
commands, on one page: held-out renders beside the ground truth, normal maps, the world-space
mesh against the true surface, and the metrics.

    python -m cocoinr.demo --out outputs/cocoinr [--iter 100] [--overwrite]

The VQGAN codebook cannot be downloaded here: the demo writes a random one (same layout) and
says so on the page; with the real one, pass ``--codebook PATH``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from cocoinr import exp_runner, val_runner
from cocoinr.demo_page import write_page
from geomkit.demo_index import write_summary
from geomkit.errors import ArgumentParser, run_main
from geomkit.io.files import prepare_output_dir
from geomkit.synth.generate import generate_scene

SCENE = "snowman"
TRAIN_VIEWS = [0, 2, 4, 6, 8, 10, 12, 14]  # 8 of 16; the other 8 are held out


def parse_args(argv=None):
    parser = ArgumentParser(prog="python -m cocoinr.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/cocoinr"))
    parser.add_argument("--iter", type=int, default=100, help="training iterations")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels")
    parser.add_argument("--resolution", type=int, default=96, help="mesh grid")
    parser.add_argument("--codebook", type=Path, help="a VQGAN checkpoint (default: random)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo")
    return parser.parse_args(argv)


def random_codebook(path: Path) -> Path:
    """A random 1024 x 256 codebook in the VQGAN file layout (state_dict ->
    quantize.embedding.weight)."""
    codebook = torch.randn(1024, 256, generator=torch.Generator().manual_seed(0))
    torch.save({"state_dict": {"quantize.embedding.weight": codebook}}, path)
    return path


def runner_flags(out: Path, args, codebook: Path) -> list[str]:
    sets = [f"dataset.data_dir={out / 'data'}", f"dataset.img_res=[{args.size},{args.size}]",
            f"dataset.train_views={TRAIN_VIEWS}".replace(" ", ""),
            f"model.vq_cfg.ckpt_path={codebook}"]  # fmt: skip
    flags = ["--conf", "small.conf", "--expname", "demo", "--exps_folder", str(out / "exps"),
             "--scan_id", SCENE, "--gpu", "cpu"]  # fmt: skip
    for item in sets:
        flags += ["--set", item]
    return flags


def main(argv=None) -> int:
    args = parse_args(argv)
    out = prepare_output_dir(args.out, args.overwrite)
    scene = out / "data" / SCENE
    if args.overwrite:  # the demo's own earlier run: a new fit, not a resume
        shutil.rmtree(out / "exps", ignore_errors=True)
    size = (args.size, args.size)
    generate_scene(scene, "snowman", 16, "volsdf", size, volsdf_margin=1.6, camera_distance=1.4,
                   overwrite=args.overwrite)  # fmt: skip
    codebook = args.codebook or random_codebook(out / "data" / "random_codebook.ckpt")
    flags = runner_flags(out, args, codebook)
    exp_runner.main([*flags, "--iter", str(args.iter), "--cancel_vis"])
    val_runner.main([*flags, "--lpips", "none", "--resolution", str(args.resolution),
                     "--coarse_resolution", "32",
                     "--gt_mesh", str(scene / "gt_mesh.ply")])  # fmt: skip
    exp_dir = out / "exps" / f"smalldemo_{SCENE}"
    plots = max((p for p in (exp_dir / "plots").iterdir() if p.name.isdigit()),
                key=lambda p: int(p.name))  # fmt: skip
    metrics = json.loads((plots / "metrics.json").read_text())
    random = args.codebook is None
    page = write_page(out, plots, metrics, scene, args.iter, random)
    mean, mesh = metrics["images"]["mean"], metrics["mesh"]["geomkit_evaluate"]
    write_summary(
        out, "cocoinr: CoCo-INR (NeurIPS'22)",
        f"A CPU-sized CoCo-INR ({'random' if random else 'VQGAN'} codebook) fitted for "
        f"{args.iter} iterations to 8 views of a generated scene, scored on the 8 held-out views "
        "and against the true surface.",
        {"held-out PSNR": mean["psnr"], "held-out SSIM": mean["ssim"],
         "Chamfer-L1": mesh["chamfer_l1"], "normal consistency": mesh["normal_consistency"]},
        {"renders, normals, mesh and metrics": page.name},
        order=30,
    )  # fmt: skip
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    run_main(main)
