"""CO3D v2 layout, as the release lays it out (files relative to the dataset root):

- ``<category>/frame_annotations.jgz``: gzipped JSON list, one entry per frame: sequence_name,
  frame_number, frame_timestamp, image {path, size [H, W]}, depth {path, scale_adjustment,
  mask_path}, mask {path, mass}, viewpoint {R, T, focal_length, principal_point,
  intrinsics_format "ndc_isotropic"} (PyTorch3D's world-to-view R, T and NDC intrinsics where
  the short image side spans [-1, 1]);
- ``<category>/sequence_annotations.jgz``: sequence_name, category, video_length, point_cloud
  {path, quality_score, n_points}, viewpoint_quality_score;
- ``<category>/set_lists/set_lists_<subset>.json``: {"train" | "val" | "test": [[sequence_name,
  frame_number, image_path], ...]};
- ``<category>/<sequence>/images/frameNNNNNN.jpg``, ``masks/frameNNNNNN.png``,
  ``depths/frameNNNNNN.jpg.geometric.png`` (16-bit PNG holding float16 bits; metric depth =
  value x scale_adjustment), ``depth_masks/frameNNNNNN.png``, ``pointcloud.ply`` (coloured
  points in the world frame).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geomkit.io import atomic_write, save_json, write_image, write_ply
from geomkit.structures import PointCloud
from geomkit.synth.layouts.common import on_white
from geomkit.synth.scene import Views


def ndc_isotropic(cameras, i: int, world_scale: float = 1.0) -> dict:
    """Camera i as a CO3D viewpoint entry (pixel intrinsics -> isotropic NDC), its world
    scaled by ``world_scale``."""
    height, width = (float(v) for v in cameras.image_size[i])
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    rescale = half.min()
    focal = cameras.focal_length[i].double() / rescale
    principal = (half - cameras.principal_point[i].double()) / rescale
    return {
        "R": cameras.R[i].double().tolist(),
        "T": (cameras.T[i].double() * world_scale).tolist(),
        "focal_length": focal.tolist(),
        "principal_point": principal.tolist(),
        "intrinsics_format": "ndc_isotropic",
    }


def write_float16_png(path: Path, depth: np.ndarray) -> None:
    """CO3D's depth encoding: float16 values stored bit for bit in a 16-bit PNG."""
    bits = np.ascontiguousarray(depth.astype(np.float16)).view(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        Image.fromarray(bits).save(handle, format="PNG")


def write_jgz(path: Path, entries: list) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(gzip.compress(json.dumps(entries).encode("utf-8"), mtime=0))


def write_co3d_sequence(
    root: Path,
    category: str,
    sequence: str,
    views: Views,
    cloud: PointCloud,
    scale_adjustment: float = 1.0,
    world_scale: float = 1.0,
) -> tuple[list[dict], dict]:
    """One sequence's files, the scene scaled by ``world_scale`` (cameras, depths, points);
    returns its frame annotations and its sequence annotation."""
    folder = f"{category}/{sequence}"
    frames = []
    for i in range(len(views)):
        name = f"frame{i + 1:06d}"
        paths = {
            "image": f"{folder}/images/{name}.jpg",
            "mask": f"{folder}/masks/{name}.png",
            "depth": f"{folder}/depths/{name}.jpg.geometric.png",
            "depth_mask": f"{folder}/depth_masks/{name}.png",
        }
        write_image(root / paths["image"], on_white(views, i))
        write_image(root / paths["mask"], views.mask[i])
        write_image(root / paths["depth_mask"], views.depth[i] > 0)
        write_float16_png(root / paths["depth"], views.depth[i] * world_scale / scale_adjustment)
        frames.append(
            {
                "sequence_name": sequence,
                "frame_number": i + 1,
                "frame_timestamp": i / 30.0,
                "image": {"path": paths["image"], "size": list(views.mask[i].shape)},
                "depth": {
                    "path": paths["depth"],
                    "scale_adjustment": scale_adjustment,
                    "mask_path": paths["depth_mask"],
                },
                "mask": {"path": paths["mask"], "mass": int(views.mask[i].sum())},
                "viewpoint": ndc_isotropic(views.cameras, i, world_scale),
                "meta": {},
            }
        )
    scaled = PointCloud(cloud.points * world_scale, colors=cloud.colors)
    write_ply(root / folder / "pointcloud.ply", scaled)
    sequence_entry = {
        "sequence_name": sequence,
        "category": category,
        "video_length": len(views),
        "point_cloud": {
            "path": f"{folder}/pointcloud.ply",
            "quality_score": 1.0,
            "n_points": len(cloud),
        },
        "viewpoint_quality_score": 1.0,
    }
    return frames, sequence_entry


def write_co3d_category(
    root: Path,
    category: str,
    sequences: dict[str, tuple[Views, PointCloud, float]],
    val_sequences: set[str],
    subset: str = "fewview_dev",
    world_scale: float = 1.0,
) -> None:
    """A category's sequences (name -> (views, point cloud, depth scale_adjustment)), its two
    annotation files and its set list: every frame of ``val_sequences`` in "val", the rest in
    "train"."""
    frames, entries = [], []
    for sequence, (views, cloud, scale) in sequences.items():
        sequence_frames, entry = write_co3d_sequence(
            root, category, sequence, views, cloud, scale, world_scale
        )
        frames += sequence_frames
        entries.append(entry)
    write_jgz(root / category / "frame_annotations.jgz", frames)
    write_jgz(root / category / "sequence_annotations.jgz", entries)
    split = {"train": [], "val": [], "test": []}
    for frame in frames:
        name = "val" if frame["sequence_name"] in val_sequences else "train"
        split[name].append([frame["sequence_name"], frame["frame_number"], frame["image"]["path"]])
    save_json(root / category / "set_lists" / f"set_lists_{subset}.json", split)


def generate_co3d(
    root: str | Path,
    categories: tuple[str, ...] = ("sphere", "torus"),
    sequences: int = 2,
    views: int = 6,
    image_size: tuple[int, int] = (120, 160),
    n_points: int = 4000,
    seed: int = 0,
    val: int = 1,
    world_scale: float = 1.0,
) -> Path:
    """A small CO3D v2 dataset of procedural shapes (geomkit.synth.shapes FAMILIES as
    categories): per category ``sequences`` sequences of ``views`` frames around a shape of its
    family, the last ``val`` sequences in the "val" list, depth scale adjustments that differ
    per sequence, coloured surface samples as each sequence's point cloud; shapes about unit
    size, times ``world_scale``."""
    if not 0 < val <= sequences:
        raise ValueError(f"val must be between 1 and sequences = {sequences}, got {val}")
    from geomkit.mesh import sample_surface
    from geomkit.synth.camera_paths import camera_path
    from geomkit.synth.scene import render_views
    from geomkit.synth.shapes import make_shape

    root = Path(root)
    for c, category in enumerate(categories):
        content = {}
        for s in range(sequences):
            shape_seed = seed * 1000 + c * 100 + s
            shape = make_shape(category, shape_seed)
            cameras = camera_path("sphere", views, image_size, seed=shape_seed)
            points, _ = sample_surface(shape.mesh(64), n_points, seed=shape_seed)
            cloud = PointCloud(points.astype(np.float32), colors=shape.color(points))
            name = f"{100 + s}_{shape_seed}_{c}"
            content[name] = (render_views(shape, cameras, 64), cloud, 0.5 + 0.25 * s)
        write_co3d_category(
            root, category, content, set(list(content)[-val:]), world_scale=world_scale
        )
    return root
