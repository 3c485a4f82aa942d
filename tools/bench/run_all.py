"""Run every benchmark in tools/bench (make bench) and update BENCHMARKS.md."""

from __future__ import annotations

import importlib
import sys

import torch

from tools.bench.harness import write_section

BENCHMARKS = [
    "tools.bench.bm_knn",
    "tools.bench.bm_chamfer",
    "tools.bench.bm_fps",
    "tools.bench.bm_rasterize",
    "tools.bench.bm_splat",
    "tools.bench.bm_onet_generation",
    "tools.bench.bm_onet_folding",
    "tools.bench.bm_numcc_decoder",
    "tools.bench.bm_numcc_end_to_end",
    "tools.bench.bm_cocoinr",
    "tools.bench.bm_npbgpp",
    "tools.bench.bm_sfd",
]


def main() -> None:
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in BENCHMARKS:
        module = importlib.import_module(name)
        for device in (d for d in available if d in getattr(module, "DEVICES", available)):
            print(f"== {name} on {device}", flush=True)
            table = module.run(device, quick=False)
            write_section(f"{module.SECTION}-{device}", table.markdown(device))
    sys.exit(0)


if __name__ == "__main__":
    main()
