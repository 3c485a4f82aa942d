"""A tiny ONet dataset built by the real pipeline (procedural meshes -> onet.build_dataset)."""

from __future__ import annotations

import pytest

import onet.build_dataset as dataset_builder
from onet.synthetic import write_class_meshes

TINY_MODEL = [
    "data.img_size=32",
    "training.batch_size=4",
    "data.points_subsample=64",
    "model.c_dim=16",
    "model.decoder_kwargs.hidden_size=16",
    "training.num_workers=0",
    "training.print_every=0",
    "training.visualize_every=0",
    "training.validate_every=0",
]


@pytest.fixture(scope="session")
def tiny_shapenet(tmp_path_factory):
    """3 classes x 4 objects, 2000 points each, split 2/1/1 per class (seeded)."""
    root = tmp_path_factory.mktemp("onet")
    meshes = write_class_meshes(root / "meshes", ["sphere", "box", "torus"], 4, resolution=24)
    status = dataset_builder.main(
        [
            str(meshes),
            str(root / "ShapeNet"),
            "--no-fusion",
            "--points",
            "2000",
            "--pointcloud-size",
            "1000",
            "--val",
            "0.25",
            "--test",
            "0.25",
        ]
    )
    assert status == 0
    return root / "ShapeNet"


def tiny_args(dataset, out_dir, *extra: str) -> list[str]:
    """Command-line arguments of a tiny CPU training run."""
    sets = [*TINY_MODEL, f"data.path={dataset}", f"training.out_dir={out_dir}", *extra]
    return [
        "configs/img/onet.yaml",
        "--no-cuda",
        "--no-pretrained",
        *[arg for s in sets for arg in ("--set", s)],
    ]
