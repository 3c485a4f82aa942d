"""ONet mesh generation per object on the CPU: MISE (resolution 32, 2 upsampling steps, ONet's
image setting) vs dense evaluation of the same 129^3 lattice, each followed by marching cubes.

Two occupancy functions: an analytic torus (a closed-form logit field: the cost is MISE's own
bookkeeping) and ONet's image model built from configs/img/onet.yaml with random weights
(UNTRAINED: its surface is not an object's; at the config's threshold 0.2 it may have none, so a
second row puts the threshold at the model's median occupancy to force a surface through the
box). With --checkpoint instead, a trained image model on one held-out object of each class of
its dataset (the config overrides in --set name the model and the dataset), written to its own
section. The case names give the network queries of each method.

Run: python -m tools.bench.bm_onet_generation [--quick]
     [--checkpoint CKPT --about TEXT --set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import os

import torch

from onet.checkpoints import load_model_weights
from onet.config import apply_overrides, load_config
from onet.data import build_dataset
from onet.generation import Generator3D
from onet.models import build_model
from tests.onet.test_generation import Analytic, torus_distance
from tools.bench.harness import Table, median_seconds, write_section

SECTION = "onet-generation"  # its part of BENCHMARKS.md
DEVICES = ("cpu",)  # make bench: the CPU path only

MISE_SETTING = {"resolution0": 32, "upsampling_steps": 2}
DENSE_SETTING = {"resolution0": 129, "upsampling_steps": 0}
COLUMNS = ["MISE 32x2", "dense 129^3"]


def torus_model() -> Analytic:
    return Analytic(lambda p: -30.0 * torus_distance(p))


def image_model() -> tuple[torch.nn.Module, dict]:
    """ONet's image model with seeded random (untrained) weights, and a random image input."""
    torch.manual_seed(0)
    model = build_model(load_config("configs/img/onet.yaml")).eval()
    return model, {"inputs": torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))}


def median_occupancy(model: torch.nn.Module, data: dict) -> float:
    """The model's median occupancy probability on a 33^3 lattice of the padded box."""
    lattice = torch.stack(torch.meshgrid(*[torch.linspace(-0.55, 0.55, 33)] * 3, indexing="ij"))
    with torch.no_grad():
        logits = model(lattice.reshape(3, -1).T[None], data["inputs"], sample=False)
    return torch.sigmoid(logits.median()).item()


def time_generation(
    model, data: dict, threshold: float, setting: dict, repeats: int
) -> tuple[float, dict]:
    """Median seconds of generate_mesh, and the stats of one run."""
    generator = Generator3D(model, threshold=threshold, device="cpu", **setting)
    seconds = median_seconds(
        lambda: generator.generate_mesh(data), repeats=repeats, warmup=int(repeats > 1)
    )
    return seconds, generator.generate_mesh(data)[1]


def add_case(table: Table, name: str, model, data, threshold: float, dense: bool) -> None:
    mise_time, mise_stats = time_generation(model, data, threshold, MISE_SETTING, repeats=3)
    times = {COLUMNS[0]: mise_time}
    label = f"{name}: MISE {mise_stats['points queried']:,} queries"
    if dense:
        times[COLUMNS[1]], dense_stats = time_generation(
            model, data, threshold, DENSE_SETTING, repeats=1
        )
        ratio = dense_stats["points queried"] / mise_stats["points queried"]
        label += f", dense {dense_stats['points queried']:,} ({ratio:.1f}x more)"
    split = ", ".join(
        f"{key[6:-1]} {1e3 * mise_stats[key]:.0f} ms"
        for key in ("time (encode inputs)", "time (eval points)", "time (marching cubes)")
    )
    table.add(f"{label}; MISE run: {split}", times)


def trained_cases(table: Table, checkpoint: str, overrides: list[str], quick: bool) -> None:
    """One held-out object of each class, through a trained image model."""
    cfg = apply_overrides(load_config("configs/img/onet.yaml"), overrides)
    model = build_model(cfg)
    load_model_weights(model, checkpoint)
    test_set = build_dataset(cfg, "test")
    firsts = {}
    for index in range(len(test_set)):
        firsts.setdefault(test_set.models[index]["category"], index)
    model_name = f"img ONet trained (c_dim {cfg['model']['c_dim']}, hidden "
    model_name += f"{cfg['model']['decoder_kwargs'].get('hidden_size', 256)})"
    for category, index in firsts.items():
        data = {"inputs": torch.as_tensor(test_set[index]["inputs"])[None]}
        name = f"{model_name}, {category}/{test_set.models[index]['model']}, threshold 0.2"
        add_case(table, name, model.eval(), data, 0.2, not quick)


def new_table(quick: bool, what: str, title: str = "ONet mesh generation per object, cpu") -> Table:
    return Table(
        title,
        COLUMNS[0],
        COLUMNS,
        notes=f"Load average (1, 5, 15 min) before timing: {load_average()}. Padding 0.1, "
        f"100k points per network call, no refinement or simplification. {what}"
        + (" Quick run: dense skipped for the network." if quick else ""),
    )


def run(device: str, quick: bool) -> Table:
    """The analytic torus and the untrained image model (what make bench refreshes)."""
    if device != "cpu":
        raise SystemExit("bm_onet_generation times the CPU path only")
    table = new_table(
        quick,
        "'untrained': the config's image model with random weights (seed 0), whose timings "
        "show the network's cost per query, not a real shape.",
    )
    add_case(table, "analytic torus, threshold 0.2", torus_model(), {}, 0.2, dense=True)
    model, data = image_model()
    add_case(table, "img ONet untrained, threshold 0.2", model, data, 0.2, dense=False)
    median = median_occupancy(model, data)
    name = f"img ONet untrained, threshold {median:.4f} (median)"
    add_case(table, name, model, data, median, not quick)
    table.notes += f" Load average after: {load_average()}."
    return table


def run_trained(checkpoint: str, overrides: list[str], about: str, quick: bool) -> Table:
    """A trained image model on one held-out object of each class (its own section)."""
    table = new_table(
        quick, f"Model: {about}.", "ONet mesh generation per object, trained image model, cpu"
    )
    trained_cases(table, checkpoint, overrides, quick)
    table.notes += f" Load average after: {load_average()}."
    return table


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no dense network run, no file update")
    parser.add_argument("--checkpoint", help="time this trained image model instead")
    parser.add_argument("--about", default="a trained image model", help="what --checkpoint is")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides"
    )
    args = parser.parse_args()
    if args.checkpoint is None:
        table, section = run("cpu", args.quick), f"{SECTION}-cpu"
    else:
        table = run_trained(args.checkpoint, args.set, args.about, args.quick)
        section = f"{SECTION}-trained-cpu"
    if not args.quick:
        write_section(section, table.markdown("cpu"))


if __name__ == "__main__":
    main()
