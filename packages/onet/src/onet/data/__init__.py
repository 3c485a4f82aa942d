"""Data: ONet's ShapeNet layout read through fields, built from a config as im2mesh does
(get_data_fields + get_inputs_field)."""

from __future__ import annotations

from geomkit.errors import ConfigError
from onet.data.fields import (
    CategoryField,
    Field,
    ImagesField,
    IndexField,
    PointCloudField,
    PointsField,
    VoxelsField,
)
from onet.data.shapenet import ShapeNetDataset
from onet.data.transforms import (
    Compose,
    PointcloudNoise,
    RandomResizedCropImage,
    ResizeImage,
    SubsamplePointcloud,
    SubsamplePoints,
)

MODES = ("train", "val", "test")


def inputs_field(mode: str, cfg: dict) -> Field | None:
    """The conditioning input of data.input_type: img, pointcloud, voxels, idx or None."""
    data = cfg["data"]
    kind = data["input_type"]
    if kind is None:
        return None
    if kind == "img":
        if mode == "train" and data["img_augment"]:
            transform = RandomResizedCropImage(data["img_size"], (0.75, 1.0), (1.0, 1.0))
        else:
            transform = ResizeImage(data["img_size"])
        return ImagesField(
            data["img_folder"],
            transform,
            random_view=mode == "train",
            with_camera=data["img_with_camera"],
        )
    if kind == "pointcloud":
        transform = Compose(
            [SubsamplePointcloud(data["pointcloud_n"]), PointcloudNoise(data["pointcloud_noise"])]
        )
        return PointCloudField(data["pointcloud_file"], transform, data["with_transforms"])
    if kind == "voxels":
        return VoxelsField(data["voxels_file"])
    if kind == "idx":
        return IndexField()
    raise ConfigError(f"data.input_type {kind!r} is not one of img, pointcloud, voxels, idx, null")


def data_fields(mode: str, cfg: dict) -> dict[str, Field]:
    """Training points (subsampled); in val/test also all IoU points and the voxels."""
    data = cfg["data"]
    with_transforms = cfg["model"]["use_camera"]
    fields: dict[str, Field] = {
        "points": PointsField(
            data["points_file"],
            SubsamplePoints(data["points_subsample"]),
            with_transforms,
            data["points_unpackbits"],
        ),
    }
    if mode in ("val", "test"):
        if data["points_iou_file"] is not None:
            fields["points_iou"] = PointsField(
                data["points_iou_file"], None, with_transforms, data["points_unpackbits"]
            )
        if data["voxels_file"] is not None:
            fields["voxels"] = VoxelsField(data["voxels_file"])
    return fields


def build_dataset(
    cfg: dict,
    mode: str,
    return_idx: bool = False,
    return_category: bool = False,
    seed: int = 0,
    skip_incomplete: bool = False,
) -> ShapeNetDataset:
    """The dataset of ``mode`` (train/val/test) for a config."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if cfg["data"]["dataset"] != "Shapes3D":
        raise ConfigError(
            f"data.dataset {cfg['data']['dataset']!r}: only Shapes3D is supported "
            "here (images for the demo: python -m onet.demo)"
        )
    fields = data_fields(mode, cfg)
    inputs = inputs_field(mode, cfg)
    if inputs is not None:
        fields["inputs"] = inputs
    if return_idx:
        fields["idx"] = IndexField()
    if return_category:
        fields["category"] = CategoryField()
    split = cfg["data"][f"{mode}_split"]
    return ShapeNetDataset(
        cfg["data"]["path"], fields, split, cfg["data"]["classes"], seed, skip_incomplete
    )


__all__ = ["MODES", "ShapeNetDataset", "build_dataset", "data_fields", "inputs_field"]
