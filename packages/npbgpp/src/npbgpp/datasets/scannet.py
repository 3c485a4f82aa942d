"""ScanNet as NPBG prepared it: ``{scene}/intrinsics.npy`` (a pickled dict with ``height``,
``width``, ``K``), ``extrinsics.npy`` (N x 4 x 4 world-to-camera, OpenCV axes),
``images/{i}.jpg`` (numbered frames, sorted numerically), ``full.ply`` (``datasets.pc_name``).

As the original (ScannetScene): only fx, fy of K are used, the principal point is the image
centre; images are resized to (height, width) when their size differs; the ``image_margin``
(20 px) border is left out of the loss. The scene is metric, and NPBG++ keeps only points more
than 1 m in front of a camera (its hard near plane).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from geomkit.cameras import from_opencv
from geomkit.errors import InputError
from geomkit.io import require_dir, require_file
from npbgpp.datasets.base import Scene, load_rgb, require_image
from npbgpp.datasets.dtu import scene_options
from npbgpp.datasets.splits import scene_splits


class ScanNetScene(Scene):
    """No masks; the image border of ``image_margin`` pixels is empty."""

    def __init__(self, *args, image_paths, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.image_paths = list(image_paths)

    def _read_rgb(self, i: int) -> torch.Tensor:
        return load_rgb(require_image(self.image_paths[i], "image"), self.image_size(i))


def read_intrinsics(path: Path) -> tuple[int, int, float, float]:
    """(height, width, fx, fy) of NPBG's ``intrinsics.npy``."""
    require_file(path, "ScanNet intrinsics")
    try:
        camera = np.load(path, allow_pickle=True).item()
        height, width = int(camera["height"]), int(camera["width"])
        K = np.asarray(camera["K"], dtype=np.float64)
        return height, width, float(K[0, 0]), float(K[1, 1])
    except (ValueError, KeyError, TypeError, IndexError, OSError) as err:
        raise InputError(
            f"{path}: expected a pickled dict with 'height', 'width' and 'K' (3x3 or 4x4), "
            f"as NPBG's ScanNet preparation writes ({type(err).__name__}: {err})"
        ) from err


def read_extrinsics(path: Path) -> np.ndarray:
    """(N, 4, 4) world-to-camera matrices (OpenCV axes)."""
    require_file(path, "ScanNet extrinsics")
    try:
        extrinsics = np.asarray(np.load(path), dtype=np.float64)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: cannot read ({err})") from err
    if extrinsics.ndim != 3 or extrinsics.shape[1:] not in ((4, 4), (3, 4)):
        raise InputError(
            f"{path}: expected N x 4 x 4 world-to-camera matrices, got {extrinsics.shape}"
        )
    if not np.isfinite(extrinsics).all():
        bad = int(np.argmax(~np.isfinite(extrinsics).all(axis=(1, 2))))
        raise InputError(
            f"{path}: matrix {bad} has NaN or infinite values (ScanNet marks frames without a "
            "pose so); drop those frames and their images"
        )
    return extrinsics


def build_scannet_scene(cfg: Mapping, scene_name: str) -> ScanNetScene:
    """The ScanNet scene ``data_root/scene_name`` (see the module docstring)."""
    root = Path(str(cfg["data_root"])) / scene_name
    height, width, fx, fy = read_intrinsics(root / "intrinsics.npy")
    extrinsics = read_extrinsics(root / "extrinsics.npy")
    image_dir = require_dir(root / "images", f"ScanNet scene {scene_name}: images folder")
    labels = sorted(
        (p.name.split(".")[0] for p in image_dir.iterdir() if not p.name.startswith(".")),
        key=_frame_number,
    )
    if len(labels) != len(extrinsics):
        raise InputError(
            f"ScanNet scene {scene_name}: {len(labels)} images in {image_dir} but "
            f"{len(extrinsics)} cameras in extrinsics.npy; they must match one to one "
            "(frames sorted by number)"
        )
    n = len(labels)
    K = np.array([[fx, 0.0, (width - 1) / 2], [0.0, fy, (height - 1) / 2], [0.0, 0.0, 1.0]])
    cameras = from_opencv(
        torch.from_numpy(extrinsics[:, :3, :3].copy()),
        torch.from_numpy(extrinsics[:, :3, 3].copy()),
        torch.from_numpy(np.repeat(K[None], n, axis=0)),
        (height, width),
    )
    return ScanNetScene(
        scene_name,
        root,
        cameras,
        labels,
        root / str(cfg.get("pc_name") or "full.ply"),
        scene_splits(cfg, n, scene_name),
        image_paths=[image_dir / f"{label}.jpg" for label in labels],
        **scene_options(cfg),
    )


def _frame_number(label: str) -> int:
    if not label.isdigit():
        raise InputError(
            f"ScanNet image {label!r}: expected images named by frame number, 0.jpg ..."
        )
    return int(label)
