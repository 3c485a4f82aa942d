"""SfD Geo iteration time (sample pixels, NeuS up-sampling, render with the eikonal graph, proxy
colour, instance supervision, backward, AdamW) at the authors' default and debug configs.

The runners keep torch's default thread count; the baseline column is the same step with one
thread, which the original's runners force (``torch.set_num_threads(1)``), measured in the same
run (a ratio > 1: the default is faster). The default config runs 256 of its 2048 rays per
iteration here (the full batch needs about 10 GB and a minute per iteration on 2 cores).
Scene: a generated pile of 6 chairs at 256 px with perfect SfM files (geomkit.synth.pile, seed 0).

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
COLUMNS = (f"{DEFAULT_THREADS} threads", "1 thread")


def geo_runner(conf_name: str, exps: Path, overrides=()) -> GeometryRunner:
    data = cached_pile(n_instances=6, shape="chair", train_res=256, raw_res=512, seed=0)
    conf = load_config(conf_name, overrides)
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
        "32+32 samples, 256 of its 2048 pixels); debug: configs/debug.yaml (8x64, 8+8 samples, "
        "300 pixels)." + (" Quick run." if quick else "")
    )
    cases = [("debug", "configs/debug.yaml", (), 2 if quick else 5)]
    if not quick:
        cases.append(
            ("default, 256 rays", "configs/default.yaml", ["--train.geo_num_pixels=256"], 2)
        )
    with tempfile.TemporaryDirectory() as exps:
        for label, name, overrides, repeats in cases:
            runner = geo_runner(name, Path(exps), overrides)
            fns = {COLUMNS[0]: step_with(runner, DEFAULT_THREADS), COLUMNS[1]: step_with(runner, 1)}
            table.add(f"Geo iteration, {label} config", interleaved_medians(fns, repeats))
    torch.set_num_threads(DEFAULT_THREADS)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "two repeats, debug config only")
