"""Items of a scene for training, validation and test (the original's BaseScene.__getitem__
and ViewSceneWrapper).

A ViewItem is a dict:

* ``image`` (3, H, W) float32 in [0, 1]; ``mask`` (1, H, W) bool foreground (all True without
  masks); ``empty`` (1, H, W) bool pixels left out of the loss;
* ``camera``: geomkit Cameras of length 1 whose image_size is this item's (H, W);
* ``index``: the view's index in the scene.

Training items are a crop of ``image_size`` of the target, with the original's augmentation:
the crop centre drawn (``random_shift``) among foreground pixels on an 8-pixel grid and the
four extreme centres that keep the crop inside the image, then a zoom by s ~ U[a, b]
(``random_zoom``) about the crop centre. The crop is a homography warp of the full image
(bilinear, zeros outside): the focal length in pixels is kept by the crop and multiplied by s by
the zoom, as is the principal point's offset from the crop centre, so the crop camera sees
exactly the crop. Pixels the warp leaves without data (and the dataset's margin) are
``empty``; with masks, a foreground pixel is never empty (as the original). Each training item
also has ``sources``: ``selection_count`` full, uncropped source ViewItems picked by
:mod:`npbgpp.datasets.view_selection` among the input views other than the target.

Validation and test items are the full target views, without sources: the model aggregates from
all input views (``wrapper.inputs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from geomkit.cameras import Cameras
from geomkit.errors import ConfigError
from npbgpp.datasets.base import Scene, cat_cameras
from npbgpp.datasets.view_selection import select_source_views

MODES = ("train", "val", "test")
TARGET_SPLITS = {"train": "train", "val": "val", "test": "holdout"}
SHIFT_GRID = 8


class ViewSceneWrapper(Dataset):
    """A torch Dataset of ViewItems of one scene (module docstring).

    Args:
        scene: the scene.
        mode: "train" (crops with sources), "val" or "test" (full target views).
        image_size: training crop (H, W) or int; None for the full image.
        random_zoom: (a, b) zoom range for training, or None.
        random_shift: draw the crop centre among foreground pixels (training).
        num_samples: training items per epoch (the original's train_num_samples); targets
            repeat. None: one item per target.
        selection_count: source views per training item (0: none).
        targets: target view indices (default: the split of ``mode``: train, val, holdout).
        inputs: the input (source) views (default ``scene.split("train")``).
        selection_method: "multinomial" (the original's training choice) or "best".
        generator: torch.Generator for every random draw; None uses torch's global RNG
            (seeded per DataLoader worker by PyTorch).
    """

    def __init__(
        self,
        scene: Scene,
        mode: str = "train",
        image_size: int | Sequence[int] | None = None,
        random_zoom: Sequence[float] | None = None,
        random_shift: bool = False,
        num_samples: int | None = None,
        selection_count: int = 0,
        targets: Sequence[int] | None = None,
        inputs: Sequence[int] | None = None,
        selection_method: str = "multinomial",
        generator: torch.Generator | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.scene = scene
        self.mode = mode
        self.targets = list(targets if targets is not None else scene.split(TARGET_SPLITS[mode]))
        self.inputs = list(inputs if inputs is not None else scene.split("train"))
        self.image_size = _crop_size(image_size)
        self.random_zoom = None if random_zoom is None else tuple(float(v) for v in random_zoom)
        self.random_shift = bool(random_shift)
        self.num_samples = None if num_samples is None else int(num_samples)
        self.selection_count = int(selection_count or 0) if mode == "train" else 0
        self.selection_method = selection_method
        self.generator = generator
        if not self.targets:
            raise ConfigError(f"scene {scene.name}: no {mode} target views")
        if self.selection_count > len(self.inputs):
            raise ConfigError(
                f"datasets.selection_count={self.selection_count} but scene {scene.name} has "
                f"{len(self.inputs)} input views"
            )

    @classmethod
    def from_config(
        cls, scene: Scene, cfg: Mapping, mode: str, all_views: bool = False, **kwargs
    ) -> ViewSceneWrapper:
        """From the ``datasets`` config (train_image_size, train_random_zoom,
        train_random_shift, train_num_samples, selection_count). ``all_views``: train on every
        view, as the original's multi-scene pretraining configs."""
        if mode == "train":
            views = scene.split("all") if all_views else None
            kwargs = {
                "image_size": cfg.get("train_image_size"),
                "random_zoom": cfg.get("train_random_zoom"),
                "random_shift": bool(cfg.get("train_random_shift")),
                "num_samples": cfg.get("train_num_samples"),
                "selection_count": cfg.get("selection_count") or 0,
                "targets": views,
                "inputs": views,
                **kwargs,
            }
        return cls(scene, mode, **kwargs)

    def __len__(self) -> int:
        if self.mode == "train" and self.num_samples is not None:
            return self.num_samples
        return len(self.targets)

    def __getitem__(self, item: int) -> dict:
        index = self.targets[item % len(self.targets)]
        if self.mode != "train":
            return self.full_item(index)
        result = self.train_item(index)
        if self.selection_count > 0:
            result["sources"] = [self.full_item(i) for i in self.select_sources(result)]
        return result

    def full_item(self, index: int) -> dict:
        """The full view ``index``: image, mask, empty, camera, index."""
        scene = self.scene
        mask = scene.mask(index)
        empty = scene.empty(index)
        if scene.has_mask:
            empty = empty & ~mask
        return {
            "image": scene.image(index),
            "mask": mask,
            "empty": empty,
            "camera": scene.cameras[index],
            "index": index,
        }

    def train_item(self, index: int) -> dict:
        """A crop of view ``index`` with random shift and zoom (module docstring)."""
        scene = self.scene
        full = scene.cameras[index]
        height, width = scene.image_size(index)
        crop = self.image_size or (height, width)
        if crop[0] > height or crop[1] > width:
            raise ConfigError(
                f"datasets.train_image_size {list(crop)} is larger than scene {scene.name}'s "
                f"images ({height} x {width})"
            )
        center = self._crop_center(index, crop)
        zoom = self._zoom()
        camera = crop_camera(full, center, crop, zoom)
        mask = scene.mask(index)
        if crop == (height, width) and zoom == 1.0 and center is None:
            image, valid = scene.image(index), ~scene.empty(index)
        else:
            stack = torch.cat([scene.image(index), (~scene.empty(index)).float(), mask.float()])
            warped = warp_to_camera(stack, full, camera)
            image, valid, mask = warped[:3], warped[3:4] >= 0.5, warped[4:5] >= 0.5
        empty = ~valid
        if scene.has_mask:
            empty = empty & ~mask
        if not scene.has_mask:
            mask = torch.ones_like(mask)
        return {"image": image, "mask": mask, "empty": empty, "camera": camera, "index": index}

    def select_sources(self, item: dict) -> list[int]:
        """Source view indices for a training item (never the target itself)."""
        candidates = [i for i in self.inputs if i != item["index"]]
        if not candidates:
            return []
        picked = select_source_views(
            self.scene.points,
            item["camera"],
            self.scene.cameras[candidates],
            self.selection_count,
            method=self.selection_method,
            generator=self.generator,
        )
        return [candidates[k] for k in picked]

    def _zoom(self) -> float:
        if not self.random_zoom:
            return 1.0
        low, high = self.random_zoom
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def _crop_center(self, index: int, crop: tuple[int, int]) -> tuple[float, float] | None:
        """(x, y) pixel centre of the crop in the full image, or None for the image centre."""
        height, width = self.scene.image_size(index)
        if not self.random_shift or crop == (height, width):
            return None
        rows, cols = shift_candidates(self.scene.mask(index)[0], crop)
        k = int(torch.randint(len(rows), (), generator=self.generator))
        x = float(cols[k]) + 0.5 if crop[1] < width else width / 2
        y = float(rows[k]) + 0.5 if crop[0] < height else height / 2
        return x, y


def shift_candidates(
    mask: torch.Tensor, crop: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the pixels a crop may be centred on (the original's rule):
    foreground pixels on the 8-pixel grid and the four extreme centres, kept where the crop of
    size ``crop`` stays inside the image (in the cropped dimensions).

    Args:
        mask: (H, W) bool foreground.
        crop: (h, w).

    Returns:
        (rows, cols), each (M,) int64, M >= 1.
    """
    height, width = mask.shape
    rows, cols = torch.nonzero(mask[::SHIFT_GRID, ::SHIFT_GRID], as_tuple=True)
    rows, cols = rows * SHIFT_GRID, cols * SHIFT_GRID
    top, bottom = crop[0] // 2, height - 1 - crop[0] // 2
    left, right = crop[1] // 2, width - 1 - crop[1] // 2
    rows = torch.cat([rows, torch.tensor([top, top, bottom, bottom])])
    cols = torch.cat([cols, torch.tensor([left, right, left, right])])
    keep = torch.ones_like(rows, dtype=torch.bool)
    if crop[0] < height:
        keep &= (rows >= top) & (rows <= bottom)
    if crop[1] < width:
        keep &= (cols >= left) & (cols <= right)
    return rows[keep], cols[keep]


def crop_camera(
    camera: Cameras, center: tuple[float, float] | None, crop: tuple[int, int], zoom: float = 1.0
) -> Cameras:
    """The camera of a crop of size ``crop`` = (h, w) centred on pixel position ``center`` =
    (x, y) of ``camera``'s image (None: the image centre), zoomed by ``zoom`` about the crop
    centre: focal ``zoom * f``, principal point ``(w, h)/2 + zoom * (c - center)``."""
    height, width = camera.image_size[0].tolist()
    if center is None:
        center = (width / 2, height / 2)
    half = camera.principal_point.new_tensor([[crop[1] / 2, crop[0] / 2]])
    offset = camera.principal_point - camera.principal_point.new_tensor([center])
    return Cameras(
        R=camera.R,
        T=camera.T,
        focal_length=camera.focal_length * zoom,
        principal_point=half + zoom * offset,
        image_size=torch.tensor([list(crop)]),
        skew=camera.skew * zoom,
    )


def warp_to_camera(image: torch.Tensor, source: Cameras, target: Cameras) -> torch.Tensor:
    """Resample ``image`` (C, H, W) seen by ``source`` as ``target`` sees it: both cameras share
    R and T and differ in intrinsics only (a homography). Bilinear, zeros outside.

    Returns:
        (C, h, w) at target's image size.
    """
    h, w = target.image_size[0].tolist()
    _, height, width = image.shape
    dtype = image.dtype
    u = torch.arange(w, dtype=dtype) + 0.5
    v = torch.arange(h, dtype=dtype) + 0.5
    ratio = (source.focal_length[0] / target.focal_length[0]).to(dtype)
    cs, ct = source.principal_point[0].to(dtype), target.principal_point[0].to(dtype)
    x = cs[0] + (u - ct[0]) * ratio[0]  # source pixel coordinates of the target pixel centres
    y = cs[1] + (v - ct[1]) * ratio[1]
    gx, gy = torch.broadcast_tensors(2 * x[None, :] / width - 1, 2 * y[:, None] / height - 1)
    grid = torch.stack((gx, gy), -1)
    return F.grid_sample(image[None], grid[None], "bilinear", "zeros", align_corners=False)[0]


def collate_items(items: Sequence[dict]) -> dict:
    """Batch ViewItems of one size: image (B, 3, H, W), mask and empty (B, 1, H, W), camera
    (B cameras), index (B,) int64. Training items' sources become ``sources``, one batch of
    all B * k source items, item-major (item b's j-th source at b * k + j), and
    ``num_sources`` = k."""
    if not items:
        raise ValueError("collate_items needs at least one item")
    batch = {
        "image": torch.stack([it["image"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
        "empty": torch.stack([it["empty"] for it in items]),
        "camera": cat_cameras([it["camera"] for it in items]),
        "index": torch.tensor([int(it["index"]) for it in items], dtype=torch.long),
    }
    if "sources" in items[0]:
        counts = {len(it["sources"]) for it in items}
        if len(counts) != 1:
            raise ValueError(f"items have different numbers of sources: {sorted(counts)}")
        k = counts.pop()
        batch["num_sources"] = k
        if k > 0:
            batch["sources"] = collate_items([s for it in items for s in it["sources"]])
    return batch


def _crop_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, (int, float)):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)
