"""Kernel sources: CUDA files compile with nvcc even where there is no GPU, CUDA bindings
compile as C++ against torch's headers, and file stems are unique across every csrc/."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch.utils.cpp_extension as cpp_extension

from geomkit.ext import cuda_home
from tests.conftest import REPO_ROOT

CSRC_DIRS = [REPO_ROOT / "shared" / "csrc", *sorted((REPO_ROOT / "packages").glob("*/csrc"))]
CU_FILES = sorted(p for d in CSRC_DIRS for p in d.rglob("*.cu"))
CUDA_BINDINGS = sorted(p for d in CSRC_DIRS for p in d.rglob("*_cuda.cpp"))


def _csrc_of(path: Path) -> Path:
    return next(d for d in CSRC_DIRS if d in path.parents)


def _cuda_include() -> Path | None:
    home = cuda_home()
    return None if home is None else home / "include"


def test_every_kernel_has_a_cuda_source():
    assert CU_FILES, "no .cu files found"
    for binding in CUDA_BINDINGS:
        stem = binding.stem.removesuffix("_cuda")
        assert (binding.parent / f"{stem}.cu").exists(), f"{binding} has no {stem}.cu beside it"


def test_file_stems_unique_across_csrc():
    stems = Counter(p.name for d in CSRC_DIRS for p in d.rglob("*") if p.is_file())
    duplicated = [name for name, count in stems.items() if count > 1]
    assert not duplicated, f"file names used twice under csrc/: {duplicated}"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on this machine")
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_cu_compiles_with_nvcc(cu, tmp_path):
    result = subprocess.run(
        [
            "nvcc",
            "-c",
            str(cu),
            "-o",
            str(tmp_path / "out.o"),
            "-O3",
            "-std=c++20",
            "-I",
            str(_csrc_of(cu)),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.skipif(_cuda_include() is None, reason="CUDA toolkit headers not on this machine")
def test_cuda_bindings_compile(tmp_path):
    """A syntax check of every CUDA binding against torch's headers; the files are checked
    side by side (each parse of torch's headers takes ~10 s of one core)."""
    includes = cpp_extension.include_paths()
    # CPU wheels ship c10/cuda headers without the one CMake generates; a stand-in suffices
    # for a syntax check.
    macros = Path(includes[0]) / "c10/cuda/impl/cuda_cmake_macros.h"
    if not macros.exists():
        stub = tmp_path / "c10/cuda/impl/cuda_cmake_macros.h"
        stub.parent.mkdir(parents=True)
        stub.write_text("#pragma once\n")
        includes = [*includes, str(tmp_path)]
    command = ["c++", "-fsyntax-only", "-std=c++20", "-DWITH_CUDA"]
    command += [f"-isystem{p}" for p in [*includes, str(_cuda_include())]]
    assert CUDA_BINDINGS, "no *_cuda.cpp found"
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(
            lambda binding: subprocess.run(
                [*command, "-I", str(_csrc_of(binding)), str(binding)],
                capture_output=True,
                text=True,
            ),
            CUDA_BINDINGS,
        )
        checked = zip(CUDA_BINDINGS, results, strict=True)
        failures = {b.name: r.stderr[-2000:] for b, r in checked if r.returncode}
    assert not failures, failures
