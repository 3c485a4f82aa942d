"""Which kernels the extension builds: the CUDA side under a CUDA build of torch with a toolkit,
GPU or not, at sm_90 when no GPU is visible; the CPU side always."""

from __future__ import annotations

import pytest
import torch
from torch.utils import cpp_extension

from geomkit import ext

TOOLKIT = torch.version.cuda is not None and ext.cuda_home() is not None


@pytest.mark.skipif(not TOOLKIT, reason="a CPU build of torch, or no CUDA toolkit here")
def test_cuda_kernels_and_bindings_are_built_and_registered():
    extension = ext.geomkit_extension()
    for op in extension.ops:
        assert extension.has_kernel(op, "cpu"), f"{op}: {extension.reason}"
        assert extension.has_kernel(op, "cuda"), f"{op} has no CUDA kernel registered"
    assert "CUDA side built with" in "\n".join(ext.report(extension))


def test_toolkit_folder_needs_nvcc_and_headers(tmp_path, monkeypatch):
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))  # e.g. /usr/local for a wrapper
    assert ext.cuda_home() != tmp_path
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").write_text("")
    assert ext.cuda_home() != tmp_path
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "cuda_runtime.h").write_text("")
    assert ext.cuda_home() == tmp_path


def test_architectures_one_without_a_gpu_else_torchs_choice(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;8.6")
    assert ext.cuda_arch_flags() == []
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ext.cuda_arch_flags() == ["-gencode=arch=compute_90,code=sm_90"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ext.cuda_arch_flags() == []


def test_cuda_side_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("GEOMKIT_EXT_CUDA", "0")
    available, why = ext.cuda_toolkit_available()
    assert not available and (why == "GEOMKIT_EXT_CUDA=0" or torch.version.cuda is None)
