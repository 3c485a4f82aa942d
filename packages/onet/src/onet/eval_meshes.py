"""Evaluate generated meshes: ``python -m onet.eval_meshes CONFIG [--eval_input] [--set key=value]
[--overwrite]`` (the authors' eval_meshes.py; all the paper's numbers come from it).

For each test object, <training.out_dir>/<generation.generation_dir>/meshes/<category>/<model>.off
(input/ with --eval_input) is scored against the object's pointcloud.npz (data.
pointcloud_chamfer_file) and points.npz (data.points_iou_file) by :class:`MeshEvaluator`
(metrics and their key names: :mod:`onet.evaluation`); with test.eval_pointcloud also
pointcloud/<category>/<model>.ply. Written into the generation folder:

- eval_meshes_full.pkl and eval_meshes_full.csv: one row per object (idx, class id, class
  name, modelname, '<metric> (mesh)', ...); the .pkl holds a list of row dicts
  (``pandas.DataFrame(rows)``);
- eval_meshes.csv: per-class means and, as its last row "mean", the mean of the class means
  (the headline numbers).

(eval_input_full.pkl/.csv and eval_input.csv with --eval_input.) Chamfer-L1 is printed raw and
x10, the paper's unit (1/10 of the unit box edge). Empty meshes score as in the original:
accuracy = completeness = sqrt(3), normals -1, IoU 0, and no chamfer-L1 / chamfer-L2, so the
means of those two columns leave them out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io import check_can_write, read_mesh, read_point_cloud
from geomkit.log import progress
from onet.config import add_override_argument, apply_overrides, load_config
from onet.data import ShapeNetDataset, open_dataset
from onet.data.fields import IndexField, PointCloudField, PointsField
from onet.evaluation import (
    MeshEvaluator,
    class_means,
    format_table,
    write_csv,
    write_pickle,
)

CHAMFER_L1 = "chamfer-L1 (mesh)"
PAPER_SCALE = 10


def parse_args(argv):
    parser = ArgumentParser(prog="python -m onet.eval_meshes", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config file, e.g. configs/img/onet_pretrained.yaml")
    parser.add_argument("--no-cuda", action="store_true", help="accepted for compatibility")
    parser.add_argument(
        "--eval_input", action="store_true", help="evaluate the copied inputs instead"
    )
    add_override_argument(parser, "generation.generation_dir=pretrained")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    return parser.parse_args(argv)


def evaluation_dataset(cfg: dict) -> ShapeNetDataset:
    """The test split with the IoU points and the Chamfer point cloud of each object."""
    data = cfg["data"]
    fields = {
        "points_iou": PointsField(data["points_iou_file"], unpackbits=data["points_unpackbits"]),
        "pointcloud_chamfer": PointCloudField(data["pointcloud_chamfer_file"]),
        "idx": IndexField(),
    }
    return open_dataset(cfg, fields, data["test_split"])


class Evaluation:
    """Scores every object of the test split; remembers missing files and empty meshes."""

    def __init__(self, cfg: dict, dataset: ShapeNetDataset, generation_dir: Path, inputs: bool):
        self.cfg, self.dataset = cfg, dataset
        self.mesh_root = generation_dir / ("input" if inputs else "meshes")
        self.pointcloud_root = generation_dir / ("input" if inputs else "pointcloud")
        self.evaluator = MeshEvaluator(n_points=100000)
        self.missing: dict[str, list[Path]] = {"mesh": [], "pcl": []}
        self.empty: list[Path] = []

    def run(self) -> list[dict]:
        return [
            self.evaluate_one(idx)
            for idx in progress(range(len(self.dataset)), desc="evaluate", unit="mesh")
        ]

    def evaluate_one(self, idx: int) -> dict:
        info = self.dataset.model_info(idx)
        category, model_name = info["category"], info["model"]
        class_name = self.dataset.metadata.get(category, {}).get("name", "n/a")
        data = self.dataset[idx]
        row = {"idx": idx, "class id": category, "class name": class_name, "modelname": model_name}
        pointcloud_tgt = data["pointcloud_chamfer"]
        if self.cfg["test"]["eval_mesh"]:
            path = self.mesh_root / category / f"{model_name}.off"
            if path.is_file():
                mesh = read_mesh(path)
                if mesh.is_empty:
                    self.empty.append(path)
                scores = self.evaluator.eval_mesh(
                    mesh,
                    pointcloud_tgt,
                    data["pointcloud_chamfer.normals"],
                    data["points_iou"],
                    data["points_iou.occ"],
                )
                row.update({f"{key} (mesh)": value for key, value in scores.items()})
            else:
                self.missing["mesh"].append(path)
        if self.cfg["test"]["eval_pointcloud"]:
            path = self.pointcloud_root / category / f"{model_name}.ply"
            if path.is_file():
                points = read_point_cloud(path).points
                scores = self.evaluator.eval_pointcloud(points, pointcloud_tgt)
                row.update({f"{key} (pcl)": value for key, value in scores.items()})
            else:
                self.missing["pcl"].append(path)
        return row

    def report_problems(self) -> None:
        for kind, paths in self.missing.items():
            if paths:
                print(
                    f"warning: {len(paths)} {kind} files do not exist (e.g. {paths[0]}); "
                    "those objects have no scores",
                    file=sys.stderr,
                )
        if self.empty:
            print(
                f"note: {len(self.empty)} empty meshes (e.g. {self.empty[0]}) scored as in the "
                "original: accuracy = completeness = sqrt(3), normals -1, IoU 0, and no "
                "chamfer-L1 / chamfer-L2, which the class means therefore leave out",
                file=sys.stderr,
            )


def with_paper_chamfer(table: list[dict]) -> list[dict]:
    """The class table with a 'chamfer-L1 x10 (mesh)' column after chamfer-L1, for printing."""
    out = []
    for row in table:
        shown = {}
        for key, value in row.items():
            shown[key] = value
            if key == CHAMFER_L1:
                shown[f"chamfer-L1 x{PAPER_SCALE} (mesh)"] = PAPER_SCALE * value
        out.append(shown)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = apply_overrides(load_config(args.config), args.set)
    generation_dir = Path(cfg["training"]["out_dir"]) / cfg["generation"]["generation_dir"]
    stem = "eval_input" if args.eval_input else "eval_meshes"
    outputs = [generation_dir / f"{stem}{suffix}" for suffix in ("_full.pkl", "_full.csv", ".csv")]
    for path in outputs:
        check_can_write(path, args.overwrite)
    dataset = evaluation_dataset(cfg)
    print(f"Test split: {cfg['data']['test_split']} ({len(dataset)} objects)")
    evaluation = Evaluation(cfg, dataset, generation_dir, args.eval_input)
    rows = evaluation.run()
    evaluation.report_problems()
    if not any(key.endswith(("(mesh)", "(pcl)")) for row in rows for key in row):
        raise InputError(
            f"nothing to evaluate: no meshes or point clouds found under {generation_dir}; "
            "run python -m onet.generate with this config first"
        )
    table = class_means(rows)
    write_pickle(outputs[0], rows)
    write_csv(outputs[1], rows)
    write_csv(outputs[2], table)
    print(format_table(with_paper_chamfer(table)))
    mean = table[-1]
    if CHAMFER_L1 in mean:
        print(
            f"mean chamfer-L1: {mean[CHAMFER_L1]:.4f} "
            f"(x{PAPER_SCALE}: {PAPER_SCALE * mean[CHAMFER_L1]:.4f}, the paper's unit)"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
