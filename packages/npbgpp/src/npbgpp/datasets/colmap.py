"""COLMAP scenes: ``{scene}/sparse/{cameras,images}.bin`` (the model directly in ``sparse/``, as
NPBG++ reads it; ``sparse/0`` is accepted when ``sparse/`` holds none), ``images/{stem}.png``,
``mvs_pc.ply``.

Views are in the order of the model's image ids (the original read ``images.bin`` in file
order, which COLMAP writes by id). Each image keeps its own camera (the original took the
first camera for all: the same for one shared camera). Pinhole models only: NPBG++ warps images
with pinhole homographies, so a model with distortion is an error (undistort first). Images
are ``images/{name without suffix}.png`` as the original, else ``images/{name}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from geomkit.cameras import Cameras, from_colmap
from geomkit.errors import InputError
from npbgpp.datasets.base import Scene, load_rgb, require_image
from npbgpp.datasets.dtu import scene_options
from npbgpp.datasets.splits import scene_splits


class ColmapScene(Scene):
    def __init__(self, *args, image_paths, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.image_paths = list(image_paths)

    def _read_rgb(self, i: int) -> torch.Tensor:
        return load_rgb(require_image(self.image_paths[i], "image"), self.image_size(i))


def model_folder(root: Path) -> Path:
    for folder in (root / "sparse", root / "sparse" / "0"):
        if (folder / "cameras.bin").is_file() or (folder / "cameras.txt").is_file():
            return folder
    raise InputError(
        f"COLMAP scene {root.name}: no model in {root / 'sparse'} (expected sparse/cameras.bin "
        "and sparse/images.bin)"
    )


def read_model(root: Path) -> tuple[Cameras, list[str]]:
    """Cameras and image names, in image-id order, of the scene's COLMAP model."""
    import pycolmap  # only COLMAP scenes need it

    folder = model_folder(root)
    try:
        reconstruction = pycolmap.Reconstruction(str(folder))
    except Exception as err:  # pycolmap raises plain RuntimeError on corrupt files
        raise InputError(f"cannot read COLMAP model {folder}: {err}") from err
    cameras, names = from_colmap(reconstruction)
    ids = {image.name: image_id for image_id, image in reconstruction.images.items()}
    order = sorted(range(len(names)), key=lambda k: ids[names[k]])
    cameras, names = cameras[order], [names[k] for k in order]
    if cameras.distortion is not None and bool((cameras.distortion != 0).any()):
        raise InputError(
            f"COLMAP model {folder} has lens distortion; NPBG++ needs pinhole images: run "
            "colmap image_undistorter and point datasets.data_root at its output"
        )
    if cameras.distortion is not None:
        cameras = Cameras(
            cameras.R,
            cameras.T,
            cameras.focal_length,
            cameras.principal_point,
            cameras.image_size,
            cameras.skew,
        )
    return cameras, names


def build_colmap_scene(cfg: Mapping, scene_name: str) -> ColmapScene:
    """The COLMAP scene ``data_root/scene_name`` (see the module docstring)."""
    root = Path(str(cfg["data_root"])) / scene_name
    cameras, names = read_model(root)
    labels = [name.split(".")[0] for name in names]
    image_paths = [_image_path(root, name, name.split(".")[0]) for name in names]
    missing = [str(p) for p in image_paths if not p.is_file()]
    if missing:
        raise InputError(
            f"COLMAP scene {scene_name}: {len(missing)} of {len(names)} images of the model "
            f"are missing, first {missing[0]}"
        )
    return ColmapScene(
        scene_name,
        root,
        cameras,
        labels,
        root / str(cfg.get("pc_name") or "mvs_pc.ply"),
        scene_splits(cfg, len(names), scene_name),
        image_paths=image_paths,
        **scene_options(cfg),
    )


def _image_path(root: Path, name: str, label: str) -> Path:
    png, named = root / "images" / f"{label}.png", root / "images" / name
    return png if png.is_file() or not named.is_file() else named
