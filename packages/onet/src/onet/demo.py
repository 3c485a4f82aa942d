"""Reconstruct meshes from single images with a trained image model:

    python -m onet.demo IMAGES... --checkpoint CKPT --out DIR [--ground-truth PATH...]

Writes DIR/meshes/<name>.obj and .ply (ONet's normalised frame; name: the image's stem, with
its parent folders when stems repeat) and DIR/index.html, one page showing each input beside an
interactive view of its mesh and, where known, of the ground truth (onet.demo_page). Settings
come from the authors' demo config (30 refinement steps, simplification to 5000 faces) unless
overridden.

Ground truth: an image inside an ONet dataset object (``<object>/img_choy2016/000.jpg`` beside
``<object>/points.npz`` and ``pointcloud.npz``, the names of data.points_iou_file and
data.pointcloud_chamfer_file) gets that object by itself; --ground-truth names one per image
instead, in the images' order: an object folder, a mesh file, or ``-`` for none. An object is
shown as its watertight mesh (data.watertight_file, the surface its points were sampled from)
when the folder has one, else as the points of pointcloud.npz, and is scored with ONet's
evaluation (onet.evaluation.MeshEvaluator on the written mesh, 100k samples, as
onet.eval_meshes): IoU on points.npz, Chamfer-L1 and normal consistency on pointcloud.npz, on
the page and in DIR/metrics.csv. A mesh file is shown only (the ONet protocol needs the
object's points), moved into ONet's frame as build_dataset moves its inputs (bounding-box
centre to the origin, longest side 1).

Images are resized to data.img_size as the authors' demo did. Transparent images are composited
onto white, the background of the training renders (the original pasted them onto black).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, UnidentifiedImageError

from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io import (
    atomic_write,
    check_can_write,
    load_npz,
    prepare_output_dir,
    read_mesh,
    write_obj,
    write_ply,
)
from geomkit.log import progress
from geomkit.mesh import normalize_to_unit_box
from onet.checkpoints import load_model_weights
from onet.config import add_override_argument, apply_overrides, load_config
from onet.data.fields import PointCloudField, PointsField
from onet.data.transforms import to_tensor
from onet.demo_page import Row, Truth, render_page
from onet.evaluation import MeshEvaluator, write_csv
from onet.generation import get_generator
from onet.models import build_model

DEMO_CONFIG = "configs/demo.yaml"
NO_TRUTH = "-"
# Seed of the 1e-4 jitter ONet's points loader adds to float16 points (PointsField).
TRUTH_SEED = 0
EVAL_POINTS = 100_000  # surface samples of each predicted mesh, as onet.eval_meshes


class ObjectTruth:
    """An ONet dataset object as ground truth: the files MeshEvaluator needs, and its shape.

    Args:
        folder: the object folder (<dataset>/<category>/<model>).
        data: the config's data section (file names, points_unpackbits).

    Raises:
        InputError: points.npz or pointcloud.npz missing or broken (naming the file).
    """

    def __init__(self, folder: Path, data: dict):
        self.folder = folder
        self.chamfer_file = folder / data["pointcloud_chamfer_file"]
        rng = np.random.default_rng(TRUTH_SEED)
        for name in (data["points_iou_file"], data["pointcloud_chamfer_file"]):
            if not (folder / name).is_file():
                raise InputError(
                    f"ground truth {folder} has no {name}: give an ONet dataset object folder "
                    f"(with {data['points_iou_file']} and {data['pointcloud_chamfer_file']}), "
                    f"a mesh file, or {NO_TRUTH} for none"
                )
        points = PointsField(data["points_iou_file"], unpackbits=data["points_unpackbits"])
        iou = points.load(folder, 0, 0, rng)
        cloud = PointCloudField(data["pointcloud_chamfer_file"]).load(folder, 0, 0, rng)
        self.points_iou, self.occ = iou[None], iou["occ"]
        self.pointcloud, self.normals = cloud[None], cloud["normals"]
        watertight = folder / data["watertight_file"]
        if watertight.is_file():
            shape, shown_as = read_mesh(watertight), f"watertight mesh {watertight.name}"
        else:
            shape = self.pointcloud
            shown_as = f"{len(shape)} points of {data['pointcloud_chamfer_file']}"
        self.truth = Truth(shape, shown_as, str(folder), object_label(folder))

    def score(self, mesh) -> dict[str, float]:
        """MeshEvaluator's metrics of a predicted mesh (keys of onet.evaluation)."""
        evaluator = MeshEvaluator(n_points=EVAL_POINTS)
        return evaluator.eval_mesh(mesh, self.pointcloud, self.normals, self.points_iou, self.occ)

    def eye(self, image: Path) -> tuple[float, float, float] | None:
        """The plotly camera eye of the view that rendered ``image`` (img_choy2016/007.jpg:
        world_mat_7 of its cameras.npz), or None when unknown."""
        cameras = image.parent / "cameras.npz"
        key = f"world_mat_{int(image.stem)}" if image.stem.isdigit() else None
        if key is None or not cameras.is_file():
            return None
        try:
            world_mat = load_npz(cameras, {key: (3, 4)})[key].astype(np.float64)
            frame = load_npz(self.chamfer_file, {"loc": (3,), "scale": ()})
        except InputError:
            return None  # only the starting viewpoint depends on it
        rotation, translation = world_mat[:, :3], world_mat[:, 3]
        centre = -rotation.T @ translation  # camera centre, input frame
        direction = (centre - frame["loc"]) / float(frame["scale"])
        return tuple(float(c) for c in 1.9 * direction / np.linalg.norm(direction))


def shown_path(path: Path) -> Path:
    """``path`` relative to the working folder when it lies below it, else absolute."""
    path = path.absolute()
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def object_label(folder: Path) -> str:
    """'<model> (<class name>)' from the dataset's metadata.yaml, else '<category>/<model>'."""
    category = folder.parent.name
    try:
        metadata = yaml.safe_load((folder.parent.parent / "metadata.yaml").read_text())
        name = str(metadata[category]["name"]).split(",")[0]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return f"{category}/{folder.name}"
    return f"{folder.name} ({name})"


def dataset_object(image: Path, data: dict) -> Path | None:
    """The dataset object an image was rendered from (<object>/<views folder>/<image>), or None
    when the folder above the image's has no points.npz and pointcloud.npz."""
    folder = shown_path(image.absolute().parent.parent)
    files = (data["points_iou_file"], data["pointcloud_chamfer_file"])
    return folder if all((folder / name).is_file() for name in files) else None


def load_truth(path: str | None, image: Path, data: dict) -> ObjectTruth | Truth | None:
    """The ground truth of one image: ``path`` from --ground-truth (NO_TRUTH: none), or, when
    None, the dataset object the image comes from.

    Raises:
        InputError: path missing, unreadable, or an object folder without its points.
    """
    if path == NO_TRUTH:
        return None
    if path is None:
        folder = dataset_object(image, data)
        return None if folder is None else ObjectTruth(folder, data)
    source = Path(path)
    if source.is_dir():
        return ObjectTruth(source, data)
    if not source.is_file():
        raise InputError(
            f"ground truth {source} not found: give an ONet dataset object folder, a mesh file "
            f"(.off, .obj, .ply), or {NO_TRUTH} for none"
        )
    mesh, _, _ = normalize_to_unit_box(read_mesh(source))
    return Truth(mesh, "source mesh, in ONet's unit box", str(source), source.stem)


def load_image(path: Path, size: int) -> tuple[torch.Tensor, Image.Image]:
    """(3, size, size) in [0, 1] and the RGB image shown on the page."""
    try:
        with Image.open(path) as handle:
            image = handle.convert("RGBA")
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"cannot read image {path}: {err}") from err
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, image).convert("RGB")
    return to_tensor(rgb.resize((size, size), Image.BILINEAR)), rgb


def output_names(paths: list[Path]) -> list[str]:
    """File stems, or as many trailing path parts as make them unique (ONet's renders are all
    img_choy2016/000.jpg), joined by '_'."""
    longest = max(len(p.parts) for p in paths)
    for depth in range(1, longest + 1):
        names = ["_".join(p.with_suffix("").parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    raise InputError(f"an image is given twice: {sorted(map(str, paths))}")


def page_settings(args, cfg: dict) -> list[tuple[str, str]]:
    gen = cfg["generation"]
    return [
        ("checkpoint", str(args.checkpoint)),
        ("config", str(args.config)),
        ("input size", f"{cfg['data']['img_size']} px"),
        (
            "mesh extraction",
            f"threshold {cfg['test']['threshold']}, grid {gen['resolution_0']} x "
            f"2^{gen['upsampling_steps']}, {gen['refinement_step']} refinement steps, "
            f"simplified to {gen['simplify_nfaces'] or 'no limit of'} faces",
        ),
    ]


def metrics_rows(names: list[str], rows: list[Row]) -> list[dict]:
    """metrics.csv: one row per scored image, MeshEvaluator's keys at full precision."""
    out = []
    for name, row in zip(names, rows, strict=True):
        if row.metrics is not None:
            out.append({"image": name, "object": row.truth.source, **row.metrics})
    return out


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m onet.demo", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="input images (jpg, png; RGBA allowed)")
    parser.add_argument("--checkpoint", required=True, help="trained image model (.pt)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", default=DEMO_CONFIG, help=f"config (default {DEMO_CONFIG})")
    parser.add_argument(
        "--ground-truth",
        nargs="+",
        metavar="PATH",
        help="one per image, in order: an ONet dataset object folder (shown and scored), a mesh "
        f"file (shown), or {NO_TRUTH}; default: the dataset object an image comes from, if any",
    )
    add_override_argument(parser, "generation.refinement_step=0")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    if args.ground_truth is not None and len(args.ground_truth) != len(args.images):
        parser.error(
            f"--ground-truth needs one path per image ({len(args.images)}), got "
            f"{len(args.ground_truth)}; use {NO_TRUTH} for an image without one"
        )
    cfg = apply_overrides(load_config(args.config), args.set)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    images = [Path(p) for p in args.images]
    names = output_names(images)
    # Everything is read and checked before the first output is written.
    inputs = [load_image(p, cfg["data"]["img_size"]) for p in images]
    given = args.ground_truth or [None] * len(images)
    truths = [load_truth(g, p, cfg["data"]) for g, p in zip(given, images, strict=True)]
    check_can_write(args.out, args.overwrite)
    model = build_model(cfg).to(device)
    load_model_weights(model, args.checkpoint)
    generator = get_generator(model, cfg, device)
    out = prepare_output_dir(args.out, args.overwrite)
    rows = []
    jobs = list(zip(images, names, inputs, truths, strict=True))
    for path, name, (tensor, shown), truth in progress(jobs, desc="meshes"):
        start = time.time()
        mesh, _ = generator.generate_mesh({"inputs": tensor[None]})
        seconds = time.time() - start
        write_obj(out / "meshes" / f"{name}.obj", mesh)
        write_ply(out / "meshes" / f"{name}.ply", mesh)
        row = Row(name, shown, mesh, seconds)
        if isinstance(truth, ObjectTruth):
            # Scored as written (float32 PLY), so re-scoring the file gives the same numbers.
            row.metrics = truth.score(read_mesh(out / "meshes" / f"{name}.ply"))
            row.truth, row.eye = truth.truth, truth.eye(path)
        elif truth is not None:
            row.truth = truth
            row.notes.append("not scored: ONet's metrics need the object's points.npz")
        rows.append(row)
        if len(mesh.faces) == 0:
            print(f"{path}: no surface at threshold {generator.threshold} (empty mesh)")
        else:
            scores = ""
            if row.metrics is not None:
                scores = (
                    f", IoU {row.metrics['iou']:.4f}, "
                    f"Chamfer-L1 x10 {10 * row.metrics.get('chamfer-L1', float('nan')):.4f}"
                )
            print(f"{path}: {len(mesh.faces)} faces in {seconds:.1f} s{scores}")
    page = render_page(rows, page_settings(args, cfg))
    table = metrics_rows(names, rows)
    if table:
        write_csv(out / "metrics.csv", table)
    with atomic_write(out / "index.html", "w") as handle:
        handle.write(page)
    scored = f", {len(table)} scored in {out / 'metrics.csv'}" if table else ""
    print(f"wrote {len(rows)} meshes to {out / 'meshes'} and {out / 'index.html'}{scored}")
    return 0


if __name__ == "__main__":
    run_main(main)
