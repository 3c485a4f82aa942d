"""COLMAP layout: ``images/{i:04d}.png``, the model in binary (``sparse/0``) and text
(``sparse_txt/0``), PINHOLE cameras; extras in ``depths/``, ``normals/``, ``masks/``."""

from __future__ import annotations

from pathlib import Path

from geomkit.cameras import write_colmap_binary, write_colmap_text
from geomkit.io import write_image
from geomkit.synth.layouts.common import on_white, write_extras
from geomkit.synth.scene import Views


def write_colmap(out: Path, views: Views) -> None:
    names = [f"{i:04d}.png" for i in range(len(views))]
    for i, name in enumerate(names):
        write_image(out / "images" / name, on_white(views, i))
        write_extras(views, i, out / "depths" / name, out / "normals" / name, out / "masks" / name)
    write_colmap_binary(out / "sparse" / "0", views.cameras, names, overwrite=True)
    write_colmap_text(out / "sparse_txt" / "0", views.cameras, names, overwrite=True)
