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
