"""Generate a synthetic scene in a dataset layout, or fetch it from the cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from geomkit.io import prepare_output_dir, save_json
from geomkit.synth.camera_paths import camera_path
from geomkit.synth.layouts import (
    LAYOUTS,
    write_colmap,
    write_ground_truth,
    write_nerf,
    write_volsdf,
)
from geomkit.synth.scene import DEPTH_SCALE, render_views
from geomkit.synth.shapes import FAMILIES, MESH_SUFFIXES, Shape, make_shape, mesh_shape

# Bump when the generated files change, so cached scenes are regenerated.
GENERATOR_VERSION = 1


def shape_from_name(name: str, seed: int = 0) -> Shape:
    """A procedural family name (FAMILIES) or the path of a mesh file."""
    if name in FAMILIES:
        return make_shape(name, seed)
    if Path(name).suffix.lower() in MESH_SUFFIXES:
        return mesh_shape(name, seed)
    raise ValueError(f"unknown shape {name!r}; choose one of {sorted(FAMILIES)} or a mesh file")


def generate_scene(
    out: str | os.PathLike,
    shape: str = "sphere",
    views: int = 16,
    layout: str = "nerf",
    image_size: tuple[int, int] = (256, 256),
    cameras: str = "hemisphere",
    test_views: int | None = None,
    seed: int = 0,
    mesh_resolution: int = 128,
    overwrite: bool = False,
    volsdf_margin: float = 1.1,
    camera_distance: float = 2.5,
) -> Path:
    """Render ``shape`` from ``views`` cameras and write layout ``layout`` into ``out``.

    Also writes ``gt_mesh.ply``, ``gt_points.ply`` and ``scene.json`` (the settings, the depth
    scale of the depth PNGs) at the top of ``out``. NeRF gets ``test_views`` held-out views
    (default views // 4, at least 1) on a random path. VolSDF's ``scale_mat`` maps the unit
    sphere onto the object's bounding sphere times ``volsdf_margin``; VolSDF's DTU scenes have
    their cameras inside a radius-3 sphere (margin 2.7 at the default ``camera_distance`` 2.5,
    1.6 at 1.4 for the snowman, which then fills most of the 40-degree view).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    out = prepare_output_dir(out, overwrite)
    the_shape = shape_from_name(shape, seed)
    train_cameras = camera_path(cameras, views, image_size, camera_distance, seed=seed)
    train = render_views(the_shape, train_cameras, mesh_resolution)
    mesh = the_shape.mesh(mesh_resolution)
    if layout == "nerf":
        n_test = test_views if test_views is not None else max(1, views // 4)
        test = render_views(
            the_shape,
            camera_path("random", n_test, image_size, camera_distance, seed=seed + 1),
            mesh_resolution,
        )
        write_nerf(out, train, test)
    elif layout == "volsdf":
        write_volsdf(out, train, mesh, volsdf_margin)
    else:
        write_colmap(out, train)
    write_ground_truth(out, mesh, seed=seed)
    save_json(
        out / "scene.json",
        {
            "generator_version": GENERATOR_VERSION,
            "shape": shape,
            "views": views,
            "layout": layout,
            "image_size": list(image_size),
            "cameras": cameras,
            "seed": seed,
            "mesh_resolution": mesh_resolution,
            "camera_distance": camera_distance,
            "depth_scale": DEPTH_SCALE,
            "world": "object frame, z up, object inside [-0.5, 0.5]^3",
        },
    )
    return out


def cache_dir() -> Path:
    """$GEOMKIT_SYNTH_CACHE, else ~/.cache/geomkit/synth."""
    configured = os.environ.get("GEOMKIT_SYNTH_CACHE", "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/geomkit/synth"


def cached_scene(**settings) -> Path:
    """The folder of generate_scene(**settings), generated once and reused (deterministic)."""
    key = {"version": GENERATOR_VERSION, **settings}
    return cached_build(
        key, "", Path("scene.json"), lambda out: generate_scene(out, overwrite=True, **settings)
    )


def cached_build(key: dict, prefix: str, marker: Path, build: Callable[[Path], object]) -> Path:
    """``cache_dir()/<prefix><hash of key>``, made once by ``build(folder)`` and reused.

    ``build`` writes into a temporary folder renamed into place, so concurrent callers (test
    workers, torchrun ranks) never see a half-written folder; ``marker`` (relative to the
    folder) says that one is complete.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    folder = cache_dir() / f"{prefix}{digest[:16]}"
    if (folder / marker).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{prefix}", dir=folder.parent))
    try:
        build(tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: use its copy
            if not (folder / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
