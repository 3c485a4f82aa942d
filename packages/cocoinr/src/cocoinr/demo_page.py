"""The demo's HTML page: per held-out view the ground truth, the render and the normal map
with its metrics; the world-space mesh beside the true surface (Plotly, opens offline)."""

from __future__ import annotations

import html
from pathlib import Path

from geomkit.io import read_mesh
from geomkit.io.files import atomic_write
from geomkit.viz import scene_figure

STYLE = (
    "body{font-family:sans-serif;margin:24px;max-width:1200px}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    ".views{display:flex;flex-wrap:wrap;gap:16px}.view{text-align:center}"
    ".view img{width:128px;image-rendering:pixelated;margin:1px;border:1px solid #ccc}"
)


def write_page(out: Path, plots: Path, metrics: dict, scene: Path, iterations: int,
               random_codebook: bool) -> Path:  # fmt: skip
    """Write ``out/index.html`` (images referenced relative to ``out``); returns its path."""
    mesh_metrics = metrics["mesh"]["geomkit_evaluate"]
    meshes = {"reconstruction": read_mesh(metrics["mesh"]["mesh"]),
              "true surface": read_mesh(scene / "gt_mesh.ply")}  # fmt: skip
    figure = scene_figure(meshes, "world-space mesh (marching cubes of the SDF), true surface")
    codebook = ("a random codebook (the VQGAN one cannot be downloaded here)" if random_codebook
                else "the VQGAN codebook")  # fmt: skip
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cocoinr demo</title>",
        f"<style>{STYLE}</style></head><body><h1>CoCo-INR on a generated scene</h1>",
        f"<p>{iterations} iterations of the CPU-sized model (confs/small.conf) with {codebook}, "
        f"trained on views {html.escape(str(metrics['train_views']))}; below, every held-out "
        "view: ground truth, render, normals.</p>",
        _means_table(metrics["images"]["mean"], mesh_metrics),
        "<div class='views'>",
        *(_view(out, plots, int(v), values) for v, values in metrics["images"]["views"].items()),
        "</div>",
        figure.to_html(full_html=False, include_plotlyjs=True),
        "</body></html>",
    ]  # fmt: skip
    page = out / "index.html"
    with atomic_write(page, "w") as handle:
        handle.write("\n".join(parts))
    return page


def _means_table(means: dict, mesh: dict) -> str:
    rows = [(k, v) for k, v in means.items()]
    rows += [(f"mesh {k}", mesh[k]) for k in ("chamfer_l1", "accuracy", "completeness",
                                              "normal_consistency")]  # fmt: skip
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:.4f}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _view(out: Path, plots: Path, view: int, values: dict) -> str:
    images = [plots / f"rendering_gt{view}.png", plots / f"rendering_img{view}.png",
              plots / f"normal_{view}.png"]  # fmt: skip
    tags = "".join(f"<img src='{p.relative_to(out)}' alt='{p.stem}'>" for p in images)
    scores = f"PSNR {values['psnr']:.2f}, SSIM {values['ssim']:.3f}"
    caption = f"view {view} (truth, render, normals): {scores}"
    return f"<div class='view'>{tags}<br>{html.escape(caption)}</div>"
