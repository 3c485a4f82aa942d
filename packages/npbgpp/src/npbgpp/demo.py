"""NPBG++ and NPBG fitted to a generated scene through the authors' entry point, on one page:
held-out views (truth, NPBG++, NPBG, NPBG++'s raster), their metrics, and an orbit.

    python -m npbgpp.demo --out outputs/npbgpp [--steps 150] [--overwrite]

The scene is a textured snowman in DTU's layout with a point cloud sampled from its surface.
CPU settings as in tests/npbgpp/test_learning.py: full 64 px images, learning rate 1e-3, the
L1+SSIM loss (the VGG-19 Caffe weights cannot be downloaded here), a randomly initialised
encoder normalised with batch statistics (feature_extractor.eval_mode=false), no LPIPS.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from geomkit.demo_index import write_summary
from geomkit.errors import ArgumentParser, run_main
from geomkit.io.files import atomic_write, prepare_output_dir
from npbgpp import train_net
from npbgpp.orbit import orbit_cameras, summary_line, write_orbit
from npbgpp.synthetic import write_scene
from npbgpp.viewer import load_run

HELD_OUT = [3, 11, 19, 27, 35]
SYSTEMS = {"npbgpp_sphere": "NPBG++", "npbg": "NPBG"}
STYLE = (
    "body{font-family:sans-serif;margin:24px;max-width:1200px}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    ".views{display:flex;flex-wrap:wrap;gap:16px}.view{text-align:center}"
    ".view img{width:128px;image-rendering:pixelated;margin:1px;border:1px solid #ccc}"
    ".orbit{width:256px;image-rendering:pixelated}"
)


def parse_args(argv=None):
    parser = ArgumentParser(prog="python -m npbgpp.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/npbgpp"))
    parser.add_argument("--steps", type=int, default=300, help="training steps of each system")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--frames", type=int, default=24, help="orbit frames")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo")
    return parser.parse_args(argv)


def overrides(out: Path, scene: Path, system: str, steps: int) -> list[str]:
    common = [
        "datasets=dtu_one_scene", f"datasets.data_root={scene.parent}",
        f"datasets.scene_name={scene.name}", "datasets.val_indices=[7]",
        f"datasets.holdout_indices=[{','.join(map(str, HELD_OUT))}]", f"system={system}",
        "lpips=none", "dataloader=small",
    ]  # fmt: skip
    train = [
        f"hydra.run.dir={out / system}", f"datasets.train_num_samples={steps}",
        "datasets.train_image_size=null", "system.learning_rate=1e-3",
        "system.perceptual_loss=l1_ssim", "trainer.max_epochs=1", "trainer.limit_val_batches=0",
    ]  # fmt: skip
    if system == "npbg":
        train += ["datasets.selection_count=0", "system.max_points=1e5",
                  f"system.descriptors_save_dir={out / system / 'descriptors'}"]  # fmt: skip
    else:
        train += ["system.feature_extractor.pretrained_encoder=false",
                  "system.feature_extractor.eval_mode=false"]  # fmt: skip
    return common + train


def main(argv=None) -> int:
    args = parse_args(argv)
    out = prepare_output_dir(args.out, args.overwrite).resolve()
    for system in SYSTEMS:
        shutil.rmtree(out / system, ignore_errors=True)
    scene = write_scene(out / "data" / "scan1", "dtu", views=40,
                        image_size=(args.size, args.size), overwrite=True)  # fmt: skip
    metrics = {}
    for system in SYSTEMS:
        train = overrides(out, scene, system, args.steps)
        train_net.main(train)
        test = [o for o in train if not o.startswith(("hydra.run.dir", "trainer."))]
        test += [f"hydra.run.dir={out / system / 'test'}", "eval_only=true",
                 f"weights_path={out / system / 'checkpoints' / 'last.ckpt'}"]  # fmt: skip
        train_net.main(test)
        metrics[system] = json.loads(
            (out / system / "test" / "metrics_test_epoch0.json").read_text()
        )
    fitted = load_run(out / "npbgpp_sphere")
    cameras = orbit_cameras(fitted.scene.cameras, fitted.scene.points, args.frames)
    _, gif, seconds = write_orbit(fitted.render, cameras, out / "orbit")
    timing = summary_line(seconds, (args.size, args.size))
    print(timing)
    page = write_page(out, metrics, gif, timing, args.steps)
    means = {SYSTEMS[s]: m["average"] for s, m in metrics.items()}
    write_summary(
        out, "npbgpp: NPBG++ (CVPR'22) and NPBG",
        f"NPBG++ and NPBG fitted for {args.steps} steps each on a generated 40-view scene "
        f"({args.size} px, CPU settings), scored on {len(HELD_OUT)} held-out views.",
        {f"{name} held-out PSNR": values["PSNR"] for name, values in means.items()}
        | {f"{name} held-out SSIM": values["SSIM"] for name, values in means.items()},
        {"held-out views, metrics and orbit": page.name},
        order=40,
    )  # fmt: skip
    print(f"wrote {page}")
    return 0


def write_page(out: Path, metrics: dict, gif: Path, timing: str, steps: int) -> Path:
    rows = "".join(
        f"<tr><th>{SYSTEMS[s]}</th><td>{m['average']['PSNR']:.2f}</td>"
        f"<td>{m['average']['SSIM']:.3f}</td></tr>"
        for s, m in metrics.items()
    )
    views = "".join(_view(out, view, metrics) for view in HELD_OUT)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>npbgpp demo</title>",
        f"<style>{STYLE}</style></head><body><h1>NPBG++ and NPBG on a generated scene</h1>",
        f"<p>Each system trained for {steps} steps (python -m npbgpp.train_net, CPU settings) "
        "on the scene's input views and a point cloud sampled from its surface; below, the "
        "held-out views: truth, NPBG++, NPBG, and NPBG++'s raster (its descriptors through "
        "rgb_converter, before the refiner).</p>",
        f"<table><tr><th>system</th><th>PSNR</th><th>SSIM</th></tr>{rows}</table>",
        f"<div class='views'>{views}</div>",
        f"<h2>Orbit (NPBG++)</h2><p>{html.escape(timing)}</p>",
        f"<img src='{gif.relative_to(out)}' alt='orbit' class='orbit'>",
        "</body></html>",
    ]  # fmt: skip
    page = out / "index.html"
    with atomic_write(page, "w") as handle:
        handle.write("\n".join(parts))
    return page


def _view(out: Path, view: int, metrics: dict) -> str:
    folder = "rendered/scan1_holdout/test_epoch0"
    images = [
        out / "npbgpp_sphere" / "test" / folder / f"{view}_gt.png",
        out / "npbgpp_sphere" / "test" / folder / f"{view}_rendered.png",
        out / "npbg" / "test" / folder / f"{view}_rendered.png",
        out / "npbgpp_sphere" / "test" / folder / f"{view}_raster.png",
    ]
    tags = "".join(f"<img src='{p.relative_to(out)}' alt='{p.stem}'>" for p in images)
    scores = ", ".join(
        f"{SYSTEMS[s]} {m['per_view'][f'scan1/{view}']['PSNR']:.2f} dB" for s, m in metrics.items()
    )
    return f"<div class='view'>{tags}<br>view {view}: {html.escape(scores)}</div>"


if __name__ == "__main__":
    run_main(main)
