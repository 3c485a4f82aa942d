"""Evaluate the network on the test split without meshes: ``python -m onet.eval CONFIG
[--no-cuda] [--checkpoint PATH] [--set key=value] [--overwrite]`` (the authors' eval.py).

Per test object, as validation during training does: the loss (negative ELBO), rec_error, kl,
IoU of the occupancy at test.threshold on points.npz (data.points_iou_file) and, with
model.binvox, IoU on the 32^3 voxel grid. Written into training.out_dir:

- eval_full.pkl and eval_full.csv: one row per object (idx, class id, class name, modelname,
  metrics); the .pkl holds a list of row dicts (``pandas.DataFrame(rows)``);
- eval.csv: per-class means and, as its last row "mean", the mean of the class means.

The checkpoint is test.model_file looked up in training.out_dir (as onet.generate), or
--checkpoint. The paper's mesh metrics come from onet.generate and onet.eval_meshes instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from geomkit.errors import ArgumentParser, run_main
from geomkit.io import check_can_write
from geomkit.log import progress
from onet.config import add_override_argument, apply_overrides, load_config
from onet.data import build_dataset
from onet.evaluation import class_means, format_table, write_csv, write_pickle
from onet.generate import category_names, load_test_model
from onet.training import Objective, Trainer

OUTPUTS = ("eval_full.pkl", "eval_full.csv", "eval.csv")


def parse_args(argv):
    parser = ArgumentParser(prog="python -m onet.eval", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config file, e.g. configs/img/onet_pretrained.yaml")
    parser.add_argument("--no-cuda", action="store_true", help="run on the CPU")
    parser.add_argument("--checkpoint", help="model file to load instead of test.model_file")
    add_override_argument(parser, "test.threshold=0.3")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    return parser.parse_args(argv)


def evaluate_objects(trainer: Trainer, dataset) -> list[dict]:
    """One row per object: its names and the trainer's eval_step metrics."""
    rows = []
    for idx in progress(range(len(dataset)), desc="evaluate", unit="object"):
        info = dataset.model_info(idx)
        class_name, _ = category_names(dataset, info["category"])
        batch = torch.utils.data.default_collate([dataset[idx]])
        metrics = trainer.eval_step(batch)
        row = {"idx": idx, "class id": info["category"], "class name": class_name}
        row["modelname"] = info["model"]
        rows.append(row | {key: float(value[0]) for key, value in metrics.items()})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = apply_overrides(load_config(args.config), args.set)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    out_dir = Path(cfg["training"]["out_dir"])
    for name in OUTPUTS:
        check_can_write(out_dir / name, args.overwrite)
    dataset = build_dataset(cfg, "test")
    model, checkpoint = load_test_model(cfg, args.checkpoint, len(dataset), device)
    threshold, sample = cfg["test"]["threshold"], cfg["training"]["eval_sample"]
    trainer = Trainer(Objective(model), None, device, threshold, sample)
    print(f"{len(dataset)} test objects, checkpoint {checkpoint}")
    rows = evaluate_objects(trainer, dataset)
    table = class_means(rows)
    write_pickle(out_dir / "eval_full.pkl", rows)
    write_csv(out_dir / "eval_full.csv", rows)
    write_csv(out_dir / "eval.csv", table)
    print(format_table(table))
    return 0


if __name__ == "__main__":
    run_main(main)
