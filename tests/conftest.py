"""Markers and fixtures shared by every package's tests.

Markers (declared in pytest.ini): ``slow`` long runs, ``gpu`` needs CUDA (skipped without),
``realdata`` reads the real samples in ../shared/data (skipped when absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GEOMKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def pytest_report_header(config):
    """A line in every test log saying which kernels run compiled and which fall back."""
    from geomkit.ext import geomkit_extension, report

    return report(geomkit_extension())


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_data = pytest.mark.skip(reason=f"real sample data not found at {SHARED_DATA}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "realdata" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real samples (../shared/data); use with the ``realdata`` marker."""
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same torch RNG state (numpy code takes explicit Generators)."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on a shared 2-core machine two threads per process run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
