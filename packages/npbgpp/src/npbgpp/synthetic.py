"""Generated scenes in the layouts NPBG++'s readers take, for tests, demos and the README
commands: geomkit.synth renders a textured shape from known cameras, and the files are written
as the authors' datasets lay them out, with ``mvs_pc.ply`` sampled from the true surface.

Layouts (see npbgpp.datasets for what each reader expects):

* ``dtu``: IDR/VolSDF (geomkit.synth's volsdf layout): ``image/{i:06d}.png``,
  ``mask/{i:03d}.png``, ``cameras.npz``;
* ``scannet``: ``intrinsics.npy`` (pickled dict height, width, K with the principal point at the
  image centre, as the reader assumes), ``extrinsics.npy`` (N x 4 x 4 world-to-camera, OpenCV),
  ``images/{i}.jpg``, ``full.ply``;
* ``h3ds``: ``image/img_{i:04d}.jpg``, ``mask/mask_{i:04d}.jpg``, ``cameras.npz`` with
  ``world_mat_{i}``, ``views.txt`` (every view);
* ``blender``: ``transforms_{train,val,test}.json`` (``camera_angle_x`` and frames, as the real
  files) with RGBA PNGs ``{split}/r_{i}.png``; ``views`` training views and ``test_views``
  (default views // 4) distinct views each for val and test;
* ``colmap``: ``sparse/{cameras,images,points3D}.bin`` (PINHOLE), ``images/{i:04d}.png``.

Every layout also gets ``mvs_pc.ply`` (``n_points`` surface samples), ``gt_mesh.ply``,
``gt_points.ply`` and ``scene.json`` (the settings). The world is geomkit.synth's (object in
[-0.5, 0.5]^3, z up); cameras at ``camera_distance`` (2.0) from the origin keep every point
beyond NPBG++'s near plane at depth 1.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from geomkit.cameras import to_idr, to_opencv, to_opengl_c2w, write_colmap_binary
from geomkit.io import prepare_output_dir, save_json, save_npz, write_image, write_ply
from geomkit.mesh import sample_surface
from geomkit.structures import PointCloud
from geomkit.synth import camera_path, render_views, shape_from_name
from geomkit.synth.generate import cache_dir
from geomkit.synth.layouts import write_ground_truth, write_volsdf
from geomkit.synth.layouts.common import on_white
from geomkit.synth.scene import Views
from npbgpp.datasets.base import cat_cameras

LAYOUTS = ("dtu", "scannet", "h3ds", "blender", "colmap")
VIEW_ARRAYS = ("rgb", "depth", "mask", "normals")
CACHE_VERSION = 1  # bump when the written files change


def write_scene(
    out: str | os.PathLike,
    layout: str,
    shape: str = "snowman",
    views: int = 32,
    image_size: tuple[int, int] = (64, 64),
    seed: int = 0,
    cameras: str = "hemisphere",
    camera_distance: float = 2.0,
    fov_x_deg: float = 25.0,
    test_views: int | None = None,
    n_points: int = 20_000,
    mesh_resolution: int = 96,
    overwrite: bool = False,
) -> Path:
    """Render ``shape`` from ``views`` cameras and write it into ``out`` in ``layout``.

    Args:
        out: the scene folder (created; an existing non-empty one needs ``overwrite``).
        layout: one of LAYOUTS.
        shape: a geomkit.synth shape family (``snowman``, ``chair`` ...) or a mesh file.
        views: views (blender: training views).
        image_size: (H, W).
        seed: shape, texture and random camera seed.
        cameras: geomkit.synth camera path (orbit, hemisphere, random, sphere).
        camera_distance: camera distance from the origin (> 1.87 keeps every point of the
            [-0.5, 0.5]^3 world beyond NPBG++'s near plane at depth 1).
        fov_x_deg: horizontal field of view (25 degrees: the object fills the view at 2.0).
        test_views: blender only: views in each of val and test (default views // 4, >= 1).
        n_points: points in ``mvs_pc.ply``.
        mesh_resolution: marching-cubes resolution of the shape.
        overwrite: replace an existing scene.

    Returns:
        The scene folder.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    out = prepare_output_dir(out, overwrite)
    the_shape = shape_from_name(shape, seed)
    mesh = the_shape.mesh(mesh_resolution)
    size = tuple(image_size)
    path = camera_path(cameras, views, size, camera_distance, fov_x_deg, seed=seed)
    rendered = render_views(the_shape, path, mesh_resolution)
    n_test = test_views if test_views is not None else max(1, views // 4)
    if layout == "blender":
        held_out = [
            render_views(
                the_shape,
                camera_path("random", n_test, size, camera_distance, fov_x_deg, seed=seed + k),
                mesh_resolution,
            )
            for k in (1, 2)
        ]
        write_blender(out, {"train": rendered, "val": held_out[0], "test": held_out[1]})
    else:
        WRITERS[layout](out, rendered, mesh)
    points, _ = sample_surface(mesh, n_points, seed=seed + 7)
    cloud = PointCloud(points.astype(np.float32))
    write_ply(out / "mvs_pc.ply", cloud)
    if layout == "scannet":
        write_ply(out / "full.ply", cloud)  # the reader's default pc_name there
    write_ground_truth(out, mesh, seed=seed)
    save_json(
        out / "scene.json",
        {
            "layout": layout,
            "shape": shape,
            "views": views,
            "image_size": list(image_size),
            "seed": seed,
            "cameras": cameras,
            "camera_distance": camera_distance,
            "fov_x_deg": fov_x_deg,
            "n_points": n_points,
            "test_views": n_test if layout == "blender" else None,
            "mesh_resolution": mesh_resolution,
        },
    )
    return out


def scene_views(folder: str | os.PathLike) -> Views:
    """The exact renders and cameras of a scene written by :func:`write_scene`, re-rendered
    from its ``scene.json``, in the order the reader numbers the views (blender: train, val,
    test). For tests and metrics against ground truth."""
    settings = json.loads((Path(folder) / "scene.json").read_text())
    the_shape = shape_from_name(settings["shape"], settings["seed"])
    size = tuple(settings["image_size"])
    distance, fov, seed = settings["camera_distance"], settings["fov_x_deg"], settings["seed"]
    paths = [camera_path(settings["cameras"], settings["views"], size, distance, fov, seed=seed)]
    if settings["layout"] == "blender":
        n_test = settings["test_views"]
        paths += [camera_path("random", n_test, size, distance, fov, seed=seed + k) for k in (1, 2)]
    parts = [render_views(the_shape, path, settings["mesh_resolution"]) for path in paths]
    arrays = [np.concatenate([getattr(p, f) for p in parts]) for f in VIEW_ARRAYS]
    return Views(cat_cameras([p.cameras for p in parts]), *arrays)


def write_dtu(out: Path, views: Views, mesh) -> None:
    """IDR's DTU layout (geomkit.synth's volsdf writer)."""
    write_volsdf(out, views, mesh)


def write_scannet(out: Path, views: Views, mesh) -> None:
    """NPBG's ScanNet layout; full.ply is the surface sample (a depth-fused cloud in the real
    data), written with mvs_pc.ply by write_scene."""
    cams = views.cameras.to(dtype=torch.float64)
    height, width = (int(v) for v in cams.image_size[0])
    R_w2c, t_w2c, _ = to_opencv(cams)
    fx, fy = cams.focal_length[0].tolist()
    K = np.array([[fx, 0, (width - 1) / 2], [0, fy, (height - 1) / 2], [0, 0, 1]])
    (out / "images").mkdir(parents=True, exist_ok=True)
    np.save(out / "intrinsics.npy", {"height": height, "width": width, "K": K}, allow_pickle=True)
    extrinsics = np.tile(np.eye(4), (len(views), 1, 1))
    extrinsics[:, :3, :3] = R_w2c.numpy()
    extrinsics[:, :3, 3] = t_w2c.numpy()
    np.save(out / "extrinsics.npy", extrinsics)
    for i in range(len(views)):
        write_image(out / "images" / f"{i}.jpg", on_white(views, i))


def write_h3ds(out: Path, views: Views, mesh) -> None:
    """H3DS's layout with its ``cameras.npz`` (``world_mat_{i}``) and a ``views.txt``."""
    world_mats = to_idr(views.cameras.to(dtype=torch.float64)).numpy()
    for i in range(len(views)):
        write_image(out / "image" / f"img_{i:04d}.jpg", on_white(views, i))
        write_image(out / "mask" / f"mask_{i:04d}.jpg", views.mask[i])
    save_npz(out / "cameras.npz", **{f"world_mat_{i}": world_mats[i] for i in range(len(views))})
    (out / "views.txt").write_text(" ".join(str(i) for i in range(len(views))) + "\n")


def write_colmap(out: Path, views: Views, mesh) -> None:
    """COLMAP's layout as NPBG++ reads it: the model directly in ``sparse/``."""
    names = [f"{i:04d}.png" for i in range(len(views))]
    for i, name in enumerate(names):
        write_image(out / "images" / name, on_white(views, i))
    write_colmap_binary(out / "sparse", views.cameras, names, overwrite=True)


def write_blender(out: Path, splits: dict[str, Views]) -> None:
    """``transforms_{split}.json`` (``camera_angle_x``, frames with ``file_path`` and OpenGL
    camera-to-world ``transform_matrix``) and RGBA PNGs (alpha = mask)."""
    for split, views in splits.items():
        c2w = to_opengl_c2w(views.cameras.to(dtype=torch.float64)).tolist()
        frames = []
        for i in range(len(views)):
            file_path = f"./{split}/r_{i}"
            rgba = np.concatenate([views.rgb[i], views.mask[i][..., None]], axis=-1)
            write_image(out / f"{file_path}.png", rgba)
            frames.append({"file_path": file_path, "transform_matrix": c2w[i]})
        width = float(views.cameras.image_size[0, 1])
        focal = float(views.cameras.focal_length[0, 0])
        angle = 2 * math.atan(0.5 * width / focal)
        save_json(out / f"transforms_{split}.json", {"camera_angle_x": angle, "frames": frames})


def cached_scene(layout: str, **settings) -> Path:
    """The folder of ``write_scene(folder, layout, **settings)``, written once into geomkit's
    synthetic-scene cache ($GEOMKIT_SYNTH_CACHE or ~/.cache/geomkit/synth) and reused. The
    folder is written under a temporary name and renamed, so concurrent callers never see a
    half-written scene. Read it with ``data_root = folder.parent``, ``scene_name = folder.name``.
    """
    key = json.dumps({"npbgpp": CACHE_VERSION, "layout": layout, **settings}, sort_keys=True)
    folder = cache_dir() / f"npbgpp-{layout}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (folder / "scene.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        write_scene(tmp, layout, overwrite=True, **settings)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            if not (folder / "scene.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


WRITERS = {"dtu": write_dtu, "scannet": write_scannet, "h3ds": write_h3ds, "colmap": write_colmap}
