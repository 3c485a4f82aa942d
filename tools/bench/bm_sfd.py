"""SfD Geo iteration time (sample pixels, NeuS up-sampling, render with the eikonal graph, proxy
colour, instance supervision, backward, AdamW) at the authors' default and debug configs.

On a CPU the stage runners use one thread, as the original's runners do; the baseline column is
the same step with torch's default thread count, measured in the same run (a ratio > 1: one
thread is faster). Scene: a generated pile of 6 chairs at 256 px with perfect SfM files
(geomkit.synth.pile, seed 0).

Run: python -m tools.bench.bm_sfd [--device cuda] [--quick]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from geomkit.synth.pile import cached_pile
from sfd.config import load_config
from sfd.training import GeometryRunner, Options
from tools.bench.harness import Table, bench_main, interleaved_medians

SECTION = "sfd"
DEVICES = ("cpu",)  # the runners place everything on the CPU for now
DEFAULT_THREADS = torch.get_num_threads()
COLUMNS = ("1 thread", f"{DEFAULT_THREADS} threads")


def geo_runner(conf_name: str, exps: Path) -> GeometryRunner:
    data = cached_pile(n_instances=6, shape="chair", train_res=256, raw_res=512, seed=0)
    conf = load_config(conf_name)
    torch.manual_seed(0)
    return GeometryRunner(
        Options(conf=conf, data_split_dir=data, expname="bench", exps_folder_name=exps, debug=True)
    )


def step_with(runner: GeometryRunner, threads: int):
    def call():
        torch.set_num_threads(threads)
        runner.step()

    return call


def run(device: str, quick: bool) -> Table:
    table = Table(f"SfD Geo iteration, {device}", COLUMNS[0], COLUMNS, unit="s")
    table.notes = (
        "One training iteration of the Geo stage (GeometryRunner.step) on a generated pile of 6 "
        "chairs at 256x256 (perfect SfM files). Default: configs/default.yaml (8x512 SDF MLP, "
        "32+32 samples, 2048 pixels); debug: configs/debug.yaml (8x64, 8+8 samples, 300 pixels)."
        + (" Quick run." if quick else "")
    )
    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory() as exps:
        for name in ("configs/debug.yaml",) + (() if quick else ("configs/default.yaml",)):
            runner = geo_runner(name, Path(exps))
            fns = {COLUMNS[0]: step_with(runner, 1), COLUMNS[1]: step_with(runner, DEFAULT_THREADS)}
            table.add(f"Geo iteration, {Path(name).stem} config", interleaved_medians(fns, repeats))
    torch.set_num_threads(DEFAULT_THREADS)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "two repeats, debug config only")
