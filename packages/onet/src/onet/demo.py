"""Reconstruct meshes from single images with a trained image model:

    python -m onet.demo IMAGES... --checkpoint CKPT --out DIR

Writes DIR/meshes/<name>.obj and .ply (ONet's normalised frame; name: the image's stem, with
its parent folders when stems repeat) and DIR/index.html, one page showing each input beside an
interactive view of its mesh. Settings come from the authors' demo config (30 refinement steps,
simplification to 5000 faces) unless overridden.

Images are resized to 224x224 as the authors' demo did. Transparent images are composited onto
white, the background of the training renders (the original pasted them onto black).
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io import check_can_write, prepare_output_dir, write_obj, write_ply
from geomkit.log import progress
from geomkit.viz import scene_figure
from onet.checkpoints import load_model_weights
from onet.config import add_override_argument, apply_overrides, load_config
from onet.data.transforms import to_tensor
from onet.generation import get_generator
from onet.models import build_model

DEMO_CONFIG = "configs/demo.yaml"


def load_image(path: Path, size: int) -> tuple[torch.Tensor, Image.Image]:
    """(3, size, size) in [0, 1] and the RGB image shown on the page."""
    try:
        with Image.open(path) as handle:
            image = handle.convert("RGBA")
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"cannot read image {path}: {err}") from err
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, image).convert("RGB")
    return to_tensor(rgb.resize((size, size), Image.BILINEAR)), rgb


def output_names(paths: list[Path]) -> list[str]:
    """File stems, or as many trailing path parts as make them unique (ONet's renders are all
    img_choy2016/000.jpg), joined by '_'."""
    longest = max(len(p.parts) for p in paths)
    for depth in range(1, longest + 1):
        names = ["_".join(p.with_suffix("").parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    raise InputError(f"an image is given twice: {sorted(map(str, paths))}")


def image_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_page(path: Path, rows: list[tuple[str, Image.Image, object]]) -> None:
    """One HTML page: per image, the input beside an interactive mesh (plotly.js inlined once)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ONet demo</title>",
        "<style>body{font-family:sans-serif} .row{display:flex;align-items:center;gap:24px}"
        " .row img{width:224px;height:224px;border:1px solid #ccc}</style></head><body>",
        "<h1>Occupancy Networks: single-image reconstruction</h1>",
    ]
    for k, (name, image, mesh) in enumerate(rows):
        figure = scene_figure({name: mesh}, title=name)
        figure.update_layout(width=520, height=420, showlegend=False)
        div = figure.to_html(full_html=False, include_plotlyjs=(k == 0), div_id=f"mesh{k}")
        parts.append(
            f"<div class='row'><img src='{image_data_uri(image)}' alt={json.dumps(name)}>"
            f"{div}</div>"
        )
    parts.append("</body></html>")
    path.write_text("\n".join(parts))


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m onet.demo", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="input images (jpg, png; RGBA allowed)")
    parser.add_argument("--checkpoint", required=True, help="trained image model (.pt)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", default=DEMO_CONFIG, help=f"config (default {DEMO_CONFIG})")
    add_override_argument(parser, "generation.refinement_step=0")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    cfg = apply_overrides(load_config(args.config), args.set)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    images = [Path(p) for p in args.images]
    names = output_names(images)
    inputs = [load_image(p, cfg["data"]["img_size"]) for p in images]  # all checked first
    check_can_write(args.out, args.overwrite)
    model = build_model(cfg).to(device)
    load_model_weights(model, args.checkpoint)
    generator = get_generator(model, cfg, device)
    out = prepare_output_dir(args.out, args.overwrite)
    rows = []
    jobs = list(zip(images, names, inputs, strict=True))
    for path, name, (tensor, shown) in progress(jobs, desc="meshes"):
        start = time.time()
        mesh, _ = generator.generate_mesh({"inputs": tensor[None]})
        write_obj(out / "meshes" / f"{name}.obj", mesh)
        write_ply(out / "meshes" / f"{name}.ply", mesh)
        rows.append((name, shown, mesh))
        if len(mesh.faces) == 0:
            print(f"{path}: no surface at threshold {generator.threshold} (empty mesh)")
        else:
            print(f"{path}: {len(mesh.faces)} faces in {time.time() - start:.1f} s")
    write_page(out / "index.html", rows)
    print(f"wrote {len(rows)} meshes to {out / 'meshes'} and {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    run_main(main)
