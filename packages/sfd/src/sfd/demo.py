"""SfD end to end on a CPU in a few minutes: a generated pile of identical boxes (one image,
instance segmentation, perfect SfM files) -> Geo, Vis, Mat through ``sfd.exp_runner`` with the
debug config -> ``--eval``, ``--to_mesh``, ``--to_uv`` -> one HTML page.

    python -m sfd.demo --out outputs/sfd [--overwrite]
    python -m sfd.demo --data ../shared/data/sfd/airplane --out outputs/sfd_airplane \
        --validate_resolution_level 4  # a data folder: copied; points_world.npy rebuilt if absent
"""

from __future__ import annotations

import html
import json
import shutil
import sys
import time
from pathlib import Path

from geomkit.demo_index import write_summary
from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io.files import atomic_write, prepare_output_dir
from geomkit.io.meshes import read_mesh
from geomkit.synth.pile import make_pile
from geomkit.viz import save_scene_html
from sfd import exp_runner, points_world
from sfd.data import load_scene

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto}"
    # the renders are 64 px: show every figure 200 px high, pixels kept sharp
    "figure img{height:200px;width:auto;max-width:100%;image-rendering:pixelated}"
    "td,th{padding:2px 8px;text-align:left}"
)


def parse_args(argv):
    parser = ArgumentParser(prog="python -m sfd.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/sfd"))
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64, help="image side in pixels")
    parser.add_argument("--geo_iters", type=int, default=500)
    parser.add_argument("--vis_iters", type=int, default=30)
    parser.add_argument("--mat_iters", type=int, default=60)
    parser.add_argument(
        "--data", type=Path, default=None, help="an SfD data folder instead of a generated pile"
    )
    parser.add_argument("--validate_resolution_level", type=int, default=1, help="renders at 1/N")
    parser.add_argument("--mesh_resolution", type=int, default=64)
    parser.add_argument("--texture_size", type=int, default=1024)
    return parser.parse_args(argv)


def stage_args(data: Path, exps: Path, stage: str, iterations: int, level: int = 1) -> list[str]:
    """The authors' command with the debug config, sized for a CPU minute: a 5x learning rate,
    and NeuS's sharpness starting at base.yaml's inv_s = e^3 rather than debug.yaml's e^10,
    which barely moves in a few hundred steps; the normal prior when the folder has one."""
    prior = (data / "train" / "000_normal_pretrain.png").is_file()
    return [
        "--conf",
        "configs/debug.yaml",
        "--data_split_dir",
        str(data),
        "--expname",
        data.name,
        "--exps_folder_name",
        str(exps),
        "--trainstage",
        stage,
        "--init_method",
        "SFM",
        "--max_niter",
        str(iterations),
        "--debug",
        "--train.neus_learning_rate=5e-4",
        "--model.variance_network.init_val=0.3",
        "--train.geo_num_pixels=256",
        "--train.mat_num_pixels=128",
        "--train.vis_num_pixels=128",
        f"--train.validate_resolution_level={level}",
        *(["--use_pretrain_normal"] if prior else []),
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    out = prepare_output_dir(args.out, args.overwrite).resolve()
    start = time.perf_counter()
    data, subject = prepare_data(args, out / "data")
    exps, name, level = out / "exps", data.name, args.validate_resolution_level
    for stage, iterations in (
        ("Geo", args.geo_iters),
        ("Vis", args.vis_iters),
        ("Mat", args.mat_iters),
    ):
        exp_runner.main(stage_args(data, exps, stage, iterations, level))
    exports = ["--eval", "--to_mesh", "--to_uv", "--mesh_resolution", str(args.mesh_resolution)]
    exports += ["--texture_size", str(args.texture_size)]
    exp_runner.main(stage_args(data, exps, "Mat", 0, level) + exports)
    seconds = time.perf_counter() - start
    metrics = json.loads(_newest(exps / f"Mat-{name}-eval").joinpath("metrics.json").read_text())
    mesh_dir, uv_dir = _newest(exps / f"Mat-{name}-mesh"), _newest(exps / f"Mat-{name}-uv")
    meshes = {
        "recovered (instance 0, world)": read_mesh(mesh_dir / "mesh_instance_00.ply"),
        "recovered canonical": read_mesh(mesh_dir / "mesh_canonical.ply"),
    }
    if (data / "gt" / "mesh.ply").is_file():
        meshes["truth (object frame)"] = read_mesh(data / "gt" / "mesh.ply")
    save_scene_html(out / "meshes.html", meshes, title="SfD demo: recovered shape")
    page = write_page(out, data, exps, metrics, uv_dir, args, seconds, subject)
    numbers = {
        "mask IoU": metrics["mask_iou"],
        "PSNR (GT and hit)": metrics["rgb_gt_and_hit"]["psnr"],
        "normal error (deg)": metrics.get("normal_angle_deg"),
        "minutes": round(seconds / 60, 2),
    }
    write_summary(
        out,
        "sfd: Structure from Duplicates (NeurIPS'23)",
        f"Geo {args.geo_iters}, Vis {args.vis_iters} and Mat {args.mat_iters} iterations "
        f"(debug config) on {subject}.",
        {k: v for k, v in numbers.items() if v is not None},
        {"renders, material, meshes": page.name, "3D meshes": "meshes.html"},
        order=60,
    )
    print(f"wrote {page} in {seconds:.0f} s", file=sys.stderr)
    return 0


def prepare_data(args, folder: Path) -> tuple[Path, str]:
    """(data folder, what it shows): a generated pile, or a copy of ``--data`` (the original
    is never written) with points_world.npy rebuilt from its poses when it lacks one."""
    if args.data is None:
        pile = make_pile(
            folder / "pile",
            n_instances=args.instances,
            shape="box",
            train_res=args.resolution,
            raw_res=2 * args.resolution,
            overwrite=True,
        )
        return pile.root, f"one generated {args.resolution} px image of {args.instances} boxes"
    if not args.data.is_dir():
        raise InputError(f"--data {args.data}: no such folder")
    name = args.data.resolve().name
    copy = Path(
        shutil.copytree(
            args.data,
            folder / name,
            ignore=shutil.ignore_patterns("raw"),
            copy_function=shutil.copyfile,  # not the source's modes: shared samples are read-only
        )
    )
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    if not (copy / "points_world.npy").is_file():
        points_world.rebuild(copy, 96, "SFM", overwrite=False)
    load_scene(copy)  # checks the folder before training
    return copy, f"the data folder {name}"


def _newest(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.is_dir())[-1]


def write_page(
    out: Path,
    data: Path,
    exps: Path,
    metrics: dict,
    uv_dir: Path,
    args,
    seconds: float,
    subject: str,
) -> Path:
    geo_plots = _newest(exps / f"Geo-{data.name}") / "plots"
    mat_plots = _newest(exps / f"Mat-{data.name}") / "plots"
    figures = [
        (data / "train" / "000_rgb.png", "input image"),
        (data / "train" / "000_instance_seg.png", "instance segmentation (input)"),
        (
            geo_plots / f"rendering_{args.geo_iters}.png",
            "Geo: truth, proxy-colour render, camera-space normals, hit mask, predicted instances",
        ),
        (
            mat_plots / f"material_{args.mat_iters}.png",
            "Mat: truth, SG render, albedo, roughness, normals",
        ),
        (
            mat_plots / f"envmap_{args.mat_iters}.png",
            "Mat: the 128 learnt SG lights (equirectangular)",
        ),
        (uv_dir / "texture_albedo.png", "baked albedo texture of mesh_textured.obj"),
    ]
    images = "".join(
        f"<figure><img src='{path.relative_to(out)}' alt='{html.escape(text)}'>"
        f"<figcaption>{html.escape(text)}</figcaption></figure>"
        for path, text in figures
        if path.is_file()
    )
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in _flat(metrics))
    links = " | ".join(
        f"<a href='{p.relative_to(out)}'>{p.name}</a>"
        for folder in (_newest(exps / f"Mat-{data.name}-mesh"), uv_dir)
        for p in sorted(folder.iterdir())
    )
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sfd demo</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Structure from Duplicates on one image</h1>",
        f"<p>{html.escape(subject)}; Geo, Vis and Mat "
        f"through <code>python -m sfd.exp_runner --conf configs/debug.yaml</code> for "
        f"{args.geo_iters}/{args.vis_iters}/{args.mat_iters} iterations, then --eval, --to_mesh "
        "and "
        f"--to_uv; {seconds:.0f} s on this machine. "
        "<a href='meshes.html'>3D view of the meshes</a>.</p>",
        images,
        f"<h2>--eval metrics</h2><table>{rows}</table>",
        f"<h2>Files</h2><p>{links}</p>",
        "</body></html>",
    ]
    page = out / "index.html"
    with atomic_write(page, "w") as handle:
        handle.write("\n".join(body))
    return page


def _flat(metrics: dict, prefix: str = ""):
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}/")
        elif isinstance(value, float):
            yield f"{prefix}{key}", f"{value:.4f}"
        elif not isinstance(value, list):
            yield f"{prefix}{key}", value


if __name__ == "__main__":
    run_main(main)
