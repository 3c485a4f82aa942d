"""Fixtures of the sfd tests: a copy of the authors' airplane sample with points_world.npy rebuilt
(realdata), and a small synthetic pile with exact poses."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sfd.points_world import rebuild


@pytest.fixture(scope="session")
def airplane(shared_data, tmp_path_factory) -> Path:
    """A writable copy of ../shared/data/sfd/airplane with a coarse points_world.npy."""
    source = shared_data / "sfd" / "airplane"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    copy = tmp_path_factory.mktemp("airplane") / "airplane"
    shutil.copytree(source, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    rebuild(copy, resolution=48)
    return copy


# Smallest networks that still exercise every part (debug.yaml's layout, narrower).
TINY = [
    "--train.geo_num_pixels=64",
    "--train.vis_num_pixels=32",
    "--train.mat_num_pixels=32",
    "--train.validate_resolution_level=8",
    "--model.implicit_network.dims=[32, 32, 32, 32, 32, 32, 32, 32]",
    "--model.rendering_network.dims=[32, 32]",
    "--model.visibility_network.dims=[32, 32]",
    "--model.envmap_material_network.brdf_encoder_dims=[32, 32]",
    "--model.envmap_material_network.num_lgt_sgs=8",
]


@pytest.fixture(scope="session")
def small_pile() -> Path:
    """Three chairs at 48 px with perfect SfM files (geomkit.synth.pile, cached)."""
    from geomkit.synth.pile import cached_pile

    return cached_pile(n_instances=3, train_res=48, raw_res=96, seed=0, mesh_resolution=48)


def exp_args(data: Path, exps: Path, stage: str, *extra: str) -> list[str]:
    """exp_runner arguments: the debug config, TINY networks, a stage on ``data``."""
    return [
        "--conf", "configs/debug.yaml", "--data_split_dir", str(data), "--expname", "pile",
        "--exps_folder_name", str(exps), "--trainstage", stage, "--debug", *TINY, *extra,
    ]  # fmt: skip
