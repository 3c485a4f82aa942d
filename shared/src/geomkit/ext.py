"""Build, load and report the compiled kernels (C++ CPU, CUDA) behind geomkit's ops.

Each distribution (geomkit, and each method package with kernels) has one extension module
holding all of its ops, built just in time with ``torch.utils.cpp_extension`` (ninja) on first
use and cached per torch version and build flavour. Ops register themselves with
``TORCH_LIBRARY``, so PyTorch dispatches by device; Python calls ``torch.ops.<namespace>.<op>``.

``GEOMKIT_NO_EXT=1`` forces the pure-PyTorch references. A fallback is never silent: the first
call that falls back warns with the reason, and ``python -m geomkit.ext`` prints what runs
compiled, on which device, and why not where it does not.

Environment: ``GEOMKIT_EXT_CACHE`` overrides the build folder root (default
``~/.cache/geomkit/ext``); ``GEOMKIT_EXT_VERBOSE=1`` shows the compiler output;
``GEOMKIT_EXT_OPS`` restricts the build to some op folders (see :meth:`Extension.sources`);
``GEOMKIT_EXT_CUDA=0`` builds the CPU kernels only.

Under a CUDA build of torch (PyPI's default) with a CUDA toolkit on the machine, the CUDA side is
compiled and linked too, also where there is no GPU (as in CI): that proves the kernels and
their bindings build, at one architecture (sm_90) when no GPU is visible; on a GPU machine,
for the visible GPUs (or $TORCH_CUDA_ARCH_LIST). Without a toolkit, or under a CPU build of
torch, only the CPU kernels are built, and the report says why.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from geomkit.errors import ArgumentParser

# -ffp-contract=off: no fused multiply-adds, so kernels match the references to the bit.
_CPU_FLAGS = ["-O3", "-fopenmp", "-DNDEBUG", "-ffp-contract=off"]
_CUDA_FLAGS = ["-O3", "--use_fast_math", "-DNDEBUG"]  # torch adds its -std (C++20)
_NO_GPU_ARCH = "90"


class KernelFallbackWarning(UserWarning):
    """An op runs its pure-PyTorch reference because no compiled kernel is available."""


def forced_reference() -> bool:
    """True when GEOMKIT_NO_EXT asks for the pure-PyTorch references everywhere."""
    return os.environ.get("GEOMKIT_NO_EXT", "0") not in ("", "0", "false", "False")


def cuda_home() -> Path | None:
    """The CUDA toolkit to build with: torch's guess ($CUDA_HOME, else the folder above the
    first ``nvcc`` on PATH), else /usr/local/cuda; None unless it holds ``bin/nvcc`` and
    ``include/cuda_runtime.h`` (a wrapper script on PATH makes torch guess a wrong folder)."""
    from torch.utils import cpp_extension

    for candidate in (cpp_extension.CUDA_HOME, "/usr/local/cuda"):
        if candidate and all(
            (Path(candidate) / part).exists() for part in ("bin/nvcc", "include/cuda_runtime.h")
        ):
            return Path(candidate)
    return None


def cuda_toolkit_available() -> tuple[bool, str]:
    """Whether this torch can build CUDA kernels here, and if not, why."""
    if torch.version.cuda is None:
        return False, "this torch is a CPU build"
    if os.environ.get("GEOMKIT_EXT_CUDA", "1") == "0":
        return False, "GEOMKIT_EXT_CUDA=0"
    if cuda_home() is None:
        return False, "no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)"
    return True, ""


def cuda_arch_flags() -> list[str]:
    """nvcc flags choosing the architectures: none (torch's choice: $TORCH_CUDA_ARCH_LIST, else
    the visible GPUs') unless neither is there; then only sm_90 (H100/H200): without a GPU the
    CUDA build proves that kernels and bindings compile and link, and one architecture keeps
    that to about a minute and a half on two cores."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST") or torch.cuda.is_available():
        return []
    return [f"-gencode=arch=compute_{_NO_GPU_ARCH},code=sm_{_NO_GPU_ARCH}"]


@dataclass
class Extension:
    """One JIT-built extension: its name, the folder of its sources and its op namespace.

    ``ops`` lists the op names it defines, so the report can say which are compiled where.
    Sources: every ``*.cpp`` under ``csrc`` except ``*_cuda.cpp``; in CUDA builds also the
    ``*_cuda.cpp`` bindings and the ``*.cu`` kernels, compiled with ``-DWITH_CUDA``.
    """

    name: str
    csrc: Path
    namespace: str
    ops: tuple[str, ...]
    _state: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load(self) -> bool:
        """Build (if needed) and load the library once; False with a reason on failure."""
        with self._lock:
            if "loaded" not in self._state:
                self._state["loaded"], self._state["reason"] = self._build_and_load()
            return self._state["loaded"]

    @property
    def reason(self) -> str:
        """Why the extension is not loaded ('' when it is)."""
        self.load()
        return self._state["reason"]

    def has_kernel(self, op: str, device_type: str) -> bool:
        """True when ``op`` has a compiled kernel for ``device_type`` ('cpu' or 'cuda')."""
        if forced_reference() or not self.load():
            return False
        key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
        return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
            f"{self.namespace}::{op}", key
        )

    def use_kernel(self, op: str, device: torch.device) -> bool:
        """Whether to call the compiled ``op`` on ``device``; warns once when falling back."""
        if self.has_kernel(op, device.type):
            return True
        warned = self._state.setdefault("warned", set())
        if (op, device.type) not in warned:
            warned.add((op, device.type))
            warnings.warn(
                f"{self.namespace}::{op} runs its pure-PyTorch reference on {device.type}: "
                f"{self.fallback_reason(op, device.type)} (python -m geomkit.ext reports all)",
                KernelFallbackWarning,
                stacklevel=3,
            )
        return False

    def fallback_reason(self, op: str, device_type: str) -> str:
        if forced_reference():
            return "GEOMKIT_NO_EXT is set"
        if not self.load():
            return self.reason
        if device_type == "cuda":
            ok, why = cuda_toolkit_available()
            return why if not ok else "the extension was built without this op's CUDA kernel"
        return f"no compiled {device_type} kernel for this op"

    def build_dir(self) -> Path:
        root = Path(os.environ.get("GEOMKIT_EXT_CACHE", Path.home() / ".cache/geomkit/ext"))
        cuda_ok, _ = cuda_toolkit_available()
        flavour = f"cu{torch.version.cuda}" if cuda_ok else "cpu"
        if cuda_ok and cuda_arch_flags():
            flavour += f"-sm{_NO_GPU_ARCH}"
        python = f"py{sys.version_info[0]}{sys.version_info[1]}"
        tag = f"torch{torch.__version__.split('+')[0]}-{flavour}-{python}"
        return root / f"{self.name}-{tag}"

    def sources(self) -> tuple[list[Path], bool]:
        """Sources to compile and whether this is a CUDA build.

        GEOMKIT_EXT_OPS=knn,fps (a development aid) compiles only those op folders of csrc
        (plus its top-level files), so a kernel being written cannot break the others' build.
        """
        cuda_ok, _ = cuda_toolkit_available()
        only = [name for name in os.environ.get("GEOMKIT_EXT_OPS", "").split(",") if name]
        files = [
            p
            for p in self.csrc.rglob("*")
            if p.parent == self.csrc or not only or p.relative_to(self.csrc).parts[0] in only
        ]
        cpp = sorted(p for p in files if p.suffix == ".cpp" and not p.stem.endswith("_cuda"))
        if not cuda_ok:
            return cpp, False
        cuda = sorted(p for p in files if p.suffix == ".cu" or p.stem.endswith("_cuda"))
        return cpp + cuda, True

    def _build_and_load(self) -> tuple[bool, str]:
        if forced_reference():
            return False, "GEOMKIT_NO_EXT is set"
        if not self.csrc.is_dir():
            return False, f"kernel sources not found at {self.csrc}"
        try:
            from torch.utils import cpp_extension
        except ImportError as err:  # pragma: no cover - torch always ships it
            return False, f"torch.utils.cpp_extension unavailable: {err}"
        sources, with_cuda = self.sources()
        build_dir = self.build_dir()
        build_dir.mkdir(parents=True, exist_ok=True)
        defines = ["-DWITH_CUDA"] if with_cuda else []
        verbose = os.environ.get("GEOMKIT_EXT_VERBOSE", "0") == "1"
        if not (build_dir / f"{self.name}.so").exists():
            print(f"geomkit: building {self.name} kernels in {build_dir} (once)", file=sys.stderr)
        try:
            if with_cuda:  # a wrapper nvcc on PATH makes torch guess a wrong toolkit folder
                cpp_extension.CUDA_HOME = str(cuda_home())
            cpp_extension.load(
                name=self.name,
                sources=[str(s) for s in sources],
                extra_cflags=_CPU_FLAGS + defines,
                extra_cuda_cflags=_CUDA_FLAGS + defines + (cuda_arch_flags() if with_cuda else []),
                extra_ldflags=["-fopenmp"],
                extra_include_paths=[str(self.csrc)],
                build_directory=str(build_dir),
                is_python_module=False,
                verbose=verbose,
            )
        except Exception as err:  # a failed build falls back, with the reason reported
            first = str(err).strip().splitlines()
            return False, f"build failed ({first[0] if first else type(err).__name__}); " + (
                "rerun with GEOMKIT_EXT_VERBOSE=1 for the compiler output"
            )
        return True, ""


def geomkit_extension() -> Extension:
    """geomkit's own extension (ops under ``torch.ops.geomkit``)."""
    return _GEOMKIT


_GEOMKIT = Extension(
    name="geomkit_ext",
    csrc=Path(__file__).resolve().parent / "csrc",
    namespace="geomkit",
    ops=(
        "knn_points",
        "sample_farthest_points",
        "ball_query",
        "rasterize_triangles",
        "splat_points",
    ),
)


def report(extension: Extension) -> list[str]:
    """Lines saying, per op and device, whether it runs compiled or as the reference."""
    lines = [f"{extension.name} ({extension.namespace}), build folder {extension.build_dir()}"]
    loaded = extension.load()
    if not loaded:
        lines.append(f"  not loaded: {extension.reason}")
    cuda_ok, cuda_why = cuda_toolkit_available()
    if cuda_ok:
        arch = f"sm_{_NO_GPU_ARCH} only (no GPU visible)" if cuda_arch_flags() else "torch's list"
        lines.append(f"  CUDA side built with {cuda_home()}/bin/nvcc for {arch}")
    else:
        lines.append(f"  CPU kernels only: {cuda_why}")
    for op in extension.ops:
        cpu = "compiled" if extension.has_kernel(op, "cpu") else "reference"
        if extension.has_kernel(op, "cuda"):
            cuda = "compiled" + ("" if torch.cuda.is_available() else " (no CUDA device here)")
        else:
            cuda = "reference" + (f" ({cuda_why})" if not cuda_ok else "")
        lines.append(f"  {op:28s} cpu: {cpu:10s} cuda: {cuda}")
    return lines


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m geomkit.ext", description="Build the kernels and report what runs compiled."
    )
    parser.add_argument(
        "--build", action="store_true", help="build now; exit 1 when the build fails"
    )
    args = parser.parse_args(argv)
    for line in report(_GEOMKIT):
        print(line)
    if args.build and not forced_reference() and not _GEOMKIT.load():
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
