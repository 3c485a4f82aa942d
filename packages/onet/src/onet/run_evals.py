"""Evaluate a model on test objects the way ONet's paper does, from project-noisypixel's
command: ``python -m onet.run_evals --checkpoint epoch=131-step=63359.ckpt --data_root hdf_data
[--cdim 128 --hdim 128 --encoder efficientnet-b0 --decoder decoder-cbn] [--num-objects 500]
[--seed 0] [--output_path O --exp_name E]``.

Takes their flags (their run_evals.py) and a Lightning .ckpt or an onet model.pt. A Lightning
file names no architecture; it is read from the weights, and a flag that contradicts it is an
error. ``--batch_size`` is accepted and unused, as in theirs.

Differences from their script, on purpose (see the README section "Coming from
project-noisypixel"): ONet's protocol instead of theirs. Each object's mesh (MISE, res 32 + 2
steps, test.threshold) is scored on 100k area-weighted surface samples against pointcloud.npz
(accuracy, completeness, Chamfer-L1 raw and x10, Chamfer-L2, normal consistency) and by mesh IoU
on the 100k points of points.npz, where theirs scored mesh vertices and took a network IoU on
2048 random points. The objects are a seeded sample (--num-objects, --seed; 0 = the whole split),
view 0 of each, instead of 500 unseeded random ones with random views. Empty meshes are counted
(IoU 0; accuracy = completeness = sqrt(3) and Chamfer-L1 their mean), not dropped, and any other
failure stops the run. Means are taken per class, then over classes, as ONet reports them.

Writes into <output_path>/<exp_name>/run_evals (or <training.out_dir>/run_evals): meshes/,
eval_full.csv (one row per object) and eval.csv (class means, last row "mean").
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from geomkit.errors import ArgumentParser, ConfigError, run_main
from geomkit.io import check_can_write
from onet.config import add_override_argument, apply_overrides, load_config, set_key
from onet.data import build_dataset
from onet.data.subset import ObjectSubset, random_objects
from onet.eval_meshes import Evaluation, evaluation_dataset
from onet.evaluation import class_means, format_table, write_csv
from onet.generate import Generation, load_test_model
from onet.generation import get_generator
from onet.noisypixel import checkpoint_model_config
from onet.train import NOISYPIXEL_CONFIG, SHORT_FLAGS, add_short_flags, apply_short_flags

PAPER_SCALE = 10
# Their key spellings beside ONet's, so either reader finds the numbers.
THEIR_NAMES = {
    "completeness2 (mesh)": "completeness_sq",
    "accuracy2 (mesh)": "accuracy_sq",
}


def parse_args(argv):
    parser = ArgumentParser(prog="python -m onet.run_evals", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="Lightning .ckpt or onet model.pt")
    parser.add_argument(
        "--config", default=NOISYPIXEL_CONFIG, help=f"config file (default {NOISYPIXEL_CONFIG})"
    )
    parser.add_argument(
        "--num-objects", type=int, default=500, help="test objects to score (0: all; 500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which objects (default 0)")
    parser.add_argument("--no-cuda", action="store_true", help="run on the CPU")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results")
    add_override_argument(parser, "test.threshold=0.5")
    add_short_flags(parser)
    return parser.parse_args(argv)


def configure(args) -> dict:
    """The config, the flags on top, then the architecture a Lightning file implies (a flag
    that contradicts the file is an error naming both)."""
    cfg = apply_short_flags(load_config(args.config), args)
    apply_overrides(cfg, args.set)
    for key, value in checkpoint_model_config(args.checkpoint).items():
        flag = next((f for f, k in SHORT_FLAGS.items() if k == key), None)
        given = getattr(args, flag, None) if flag else None
        if given is not None and str(given) != str(value):
            raise ConfigError(
                f"--{flag} {given} contradicts the checkpoint {args.checkpoint}, whose weights "
                f"are {key} {value}"
            )
        set_key(cfg, key, value)
    return cfg


def count_empty_meshes(rows: list[dict]) -> int:
    """Give empty meshes the Chamfer-L1 and -L2 of their accuracy and completeness (ONet's
    scorer leaves those out, which would drop the object from the means); returns how many."""
    empty = 0
    for row in rows:
        if "chamfer-L1 (mesh)" not in row and "accuracy (mesh)" in row:
            row["chamfer-L1 (mesh)"] = 0.5 * (row["accuracy (mesh)"] + row["completeness (mesh)"])
            row["chamfer-L2 (mesh)"] = 0.5 * (row["accuracy2 (mesh)"] + row["completeness2 (mesh)"])
            empty += 1
    return empty


def with_both_spellings(row: dict) -> dict:
    """ONet's keys plus project-noisypixel's names and Chamfer-L1 x10."""
    out = dict(row)
    for ours, theirs in THEIR_NAMES.items():
        if ours in row:
            out[theirs] = row[ours]
    if "chamfer-L1 (mesh)" in row:
        out[f"chamfer-L1 x{PAPER_SCALE} (mesh)"] = PAPER_SCALE * row["chamfer-L1 (mesh)"]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = configure(args)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    out_dir = Path(cfg["training"]["out_dir"]) / "run_evals"
    for name in ("eval_full.csv", "eval.csv", "meshes"):
        check_can_write(out_dir / name, args.overwrite)
    dataset = build_dataset(cfg, "test", return_idx=True, return_category=True)
    objects = random_objects(dataset, args.num_objects, args.seed)
    model, checkpoint = load_test_model(cfg, args.checkpoint, len(dataset), device)
    print(f"{len(objects)} of {len(dataset)} test objects (seed {args.seed}), {checkpoint}")
    cfg["generation"].update(vis_n_outputs=0, copy_input=False)
    Generation(cfg, objects, get_generator(model, cfg, device), out_dir).run()
    truth = ObjectSubset(evaluation_dataset(cfg), objects.indices)
    evaluation = Evaluation(cfg, truth, out_dir, inputs=False)
    rows = evaluation.run()
    evaluation.report_problems()
    empty = count_empty_meshes(rows)
    if empty:
        print(f"{empty} empty meshes counted: IoU 0, Chamfer-L1 sqrt(3)", file=sys.stderr)
    rows = [with_both_spellings(row) for row in rows]
    table = class_means(rows, by="class id")
    write_csv(out_dir / "eval_full.csv", rows)
    write_csv(out_dir / "eval.csv", table)
    print(format_table(table))
    return 0


if __name__ == "__main__":
    run_main(main)
