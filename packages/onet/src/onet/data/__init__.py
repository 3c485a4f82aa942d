"""Data: ONet's ShapeNet layout (data.dataset Shapes3D) or project-noisypixel's HDF5 files
(data.dataset hdf5) read through fields, built from a config as im2mesh does (get_data_fields +
get_inputs_field)."""

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
from onet.data.hdf5 import HDF5Dataset
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
DATASETS = {"Shapes3D": ShapeNetDataset, "hdf5": HDF5Dataset}


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
    fields = data_fields(mode, cfg)
    inputs = inputs_field(mode, cfg)
    if inputs is not None:
        fields["inputs"] = inputs
    if return_idx:
        fields["idx"] = IndexField()
    if return_category:
        fields["category"] = CategoryField()
    split = cfg["data"][f"{mode}_split"]
    return open_dataset(cfg, fields, split, seed, skip_incomplete)


def dataset_class(cfg: dict) -> type[ShapeNetDataset]:
    """The dataset class of data.dataset, after checking the config can use it."""
    data = cfg["data"]
    kind = data["dataset"]
    if kind not in DATASETS:
        raise ConfigError(
            f"data.dataset {kind!r} is not one of {', '.join(DATASETS)} "
            "(images for the demo: python -m onet.demo)"
        )
    if kind == "hdf5" and (data["voxels_file"] is not None or data["input_type"] == "voxels"):
        raise ConfigError(
            "data.dataset hdf5: project-noisypixel's files hold no voxels; set "
            "data.voxels_file to null (--set data.voxels_file=null) and use another "
            "data.input_type than voxels"
        )
    return DATASETS[kind]


def open_dataset(
    cfg: dict, fields: dict[str, Field], split: str, seed: int = 0, skip_incomplete=False
) -> ShapeNetDataset:
    """The objects of ``split`` in data.path, read by ``fields``, as data.dataset lays them out."""
    data = cfg["data"]
    return dataset_class(cfg)(data["path"], fields, split, data["classes"], seed, skip_incomplete)


__all__ = [
    "DATASETS",
    "MODES",
    "HDF5Dataset",
    "ShapeNetDataset",
    "build_dataset",
    "data_fields",
    "dataset_class",
    "inputs_field",
    "open_dataset",
]
