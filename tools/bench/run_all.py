"""Run every benchmark in tools/bench (make bench) and update BENCHMARKS.md."""

from __future__ import annotations

import importlib
import sys

import torch

BENCHMARKS = [
    "tools.bench.bm_knn",
    "tools.bench.bm_chamfer",
    "tools.bench.bm_fps",
    "tools.bench.bm_rasterize",
    "tools.bench.bm_splat",
    "tools.bench.bm_onet_generation",
    "tools.bench.bm_onet_folding",
    "tools.bench.bm_numcc_decoder",
]


def main() -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in BENCHMARKS:
        module = importlib.import_module(name)
        for device in devices:
            print(f"== {name} on {device}", flush=True)
            table = module.run(device, quick=False)
            module.write_section(f"{module.SECTION}-{device}", table.markdown(device))
    sys.exit(0)


if __name__ == "__main__":
    main()
