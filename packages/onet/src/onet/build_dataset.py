"""Build ONet's ShapeNet layout from meshes: ``python -m onet.build_dataset MESH_DIR OUT``.

The authors' pipeline (scripts/dataset_shapenet/build.sh) without OpenGL, meshlabserver or
compiled extensions: per mesh, mesh-fusion's 1_scale.py + 2_fusion.py (onet.fusion: a
watertight mesh by TSDF fusion of 100 depth maps), then scripts/sample_mesh.py with --resize
--packbits --float16, plus Choy-2016-style renders (onet.choy) and 32^3 voxels. MESH_DIR holds
.off/.obj/.ply meshes, either directly (one category, --category) or in one sub-folder per
category (folder name = category id, e.g. a ShapeNet synset). OUT gets:

* ``metadata.yaml``: category id -> {id, name} (ShapeNet names for ONet's 13 synsets, else
  the id); existing entries are kept.
* ``<category>/{train,val,test}.lst``: the category's object folders, split --val / --test
  after a shuffle seeded by --seed and the category. The original's create_split.py shuffles
  only with --shuffle (off by default) and otherwise cuts os.listdir order, which depends on
  the file system: its splits could not be reproduced.
* ``<category>/<model id = file stem>/``:
  - ``points.npz``: ``points`` (N, 3) float16 uniform in [-0.55, 0.55]^3 (box 1 + --points-
    padding 0.1; a share 1 - --points-uniform-ratio are surface samples + N(0, --points-sigma)),
    ``occupancies`` np.packbits of geomkit.mesh.contains (ONet's check_mesh_contains) on the
    watertight mesh, ``loc`` (3,) and ``scale`` () float64.
  - ``pointcloud.npz``: ``points`` and ``normals`` (face normals) (--pointcloud-size, 3)
    float16, area-weighted samples of the watertight mesh, plus loc, scale.
  - ``model.binvox``: --voxels-res^3 voxels over [-0.5, 0.5]^3, occupied where the voxel centre
    is inside the watertight mesh or a surface sample falls in the voxel; the header's
    translate / scale map the voxels to the input mesh's frame.
  - ``img_choy2016/000.jpg ... 023.jpg`` and ``cameras.npz`` (see onet.choy).
  - ``model_watertight.off``: the watertight mesh (ONet's data.watertight_file).

Points, normals, voxels and the watertight mesh are in the normalised frame
``(input - loc) / scale``: loc = the INPUT mesh's bounding-box centre, scale = its longest side
(sample_mesh.py --resize with --bbox_in_folder 0_in), so the thickened watertight mesh may reach
slightly beyond the unit cube. cameras.npz's world_mat and the binvox header map from the
input frame, as ONet's do. The renders take +y as up (ShapeNet's convention).

Objects are built in a hidden temporary folder beside their target and renamed into place, so
no half-written object folder is ever visible. A broken mesh (unreadable, no faces, NaN,
degenerate) prints one error line naming the file and the others are still built; the run
then exits with status 2. Existing object folders and split lists are only replaced with
--overwrite (checked before anything is built).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import yaml

from geomkit.errors import (
    ArgumentParser,
    ConfigError,
    InputError,
    OutputExistsError,
    UserError,
    run_main,
)
from geomkit.io import atomic_write, read_mesh, require_dir, write_off
from geomkit.mesh import is_watertight, normalize_to_unit_box
from geomkit.structures import TriMesh
from onet.choy import choy_renders, save_choy_renders
from onet.data.binvox import write_binvox
from onet.fusion import PRECISE, FusionOptions, watertight_mesh
from onet.sample_mesh import SampleOptions, export_pointcloud, export_points, voxelize

MESH_SUFFIXES = (".off", ".obj", ".ply")
SPLITS = ("train", "val", "test")
DEFAULT_CATEGORY = "00000000"
CHOY_FOLDER = "img_choy2016"
# ONet's data/metadata.yaml: the 13 ShapeNet synsets it trains on.
SHAPENET_NAMES = {
    "02691156": "airplane,aeroplane,plane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car,auto,automobile,machine,motorcar",
    "03001627": "chair",
    "03211117": "display,video display",
    "03636649": "lamp",
    "03691459": "loudspeaker,speaker,speaker unit,loudspeaker system,speaker system",
    "04090263": "rifle",
    "04256520": "sofa,couch,lounge",
    "04379243": "table",
    "04401088": "telephone,phone,telephone set",
    "04530566": "vessel,watercraft",
}


@dataclass(frozen=True)
class MeshJob:
    """One input mesh and where it goes: OUT/<category>/<model_id>."""

    path: Path
    category: str
    model_id: str


class JobResult(NamedTuple):
    """seconds the object took; error is None when built, else the one-line reason."""

    job: MeshJob
    seconds: float
    error: str | None


def main(argv=None) -> int:
    args = parse_args(argv)
    sample = SampleOptions(
        args.points,
        args.points_uniform_ratio,
        args.points_sigma,
        args.points_padding,
        args.pointcloud_size,
        args.voxels_res,
        args.seed,
    )
    fusion = None if args.no_fusion else fusion_options(args)
    jobs = find_meshes(require_dir(args.mesh_dir, "MESH_DIR"), args.category)
    given = read_metadata(Path(args.mesh_dir))  # class names that came with the meshes
    out = Path(args.out)
    metadata = read_metadata(out)
    check_outputs(out, jobs, args.overwrite)
    results = run_jobs(jobs, out, sample, fusion, args.overwrite, args.jobs)
    categories = sorted({r.job.category for r in results if r.error is None})
    for category in categories:
        write_splits(out / category, args.val, args.test, args.seed)
    if categories:
        write_metadata(out, metadata, categories, given)
    return report(results, out)


def parse_args(argv):
    parser = ArgumentParser(
        prog="python -m onet.build_dataset", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "mesh_dir", help="folder of meshes, or of one folder of meshes per category"
    )
    parser.add_argument("out", help="dataset folder to write (ONet's data/ShapeNet layout)")
    parser.add_argument(
        "--category",
        help=f"category id for a MESH_DIR holding mesh files directly (default {DEFAULT_CATEGORY})",
    )
    parser.add_argument("--val", type=float, default=0.1, help="share of each category for val")
    parser.add_argument("--test", type=float, default=0.2, help="share of each category for test")
    parser.add_argument("--points", type=int, default=100_000, help="points.npz size")
    parser.add_argument(
        "--points-uniform-ratio",
        type=float,
        default=1.0,
        help="share of points.npz uniform in the box; the rest are noisy surface samples",
    )
    parser.add_argument(
        "--points-sigma", type=float, default=0.01, help="noise std of the surface samples"
    )
    parser.add_argument(
        "--points-padding", type=float, default=0.1, help="the points box is 1 + this per side"
    )
    parser.add_argument("--pointcloud-size", type=int, default=100_000, help="pointcloud.npz size")
    parser.add_argument("--voxels-res", type=int, default=32, help="model.binvox resolution")
    parser.add_argument("--depth-views", type=int, default=100, help="depth maps for the fusion")
    parser.add_argument("--resolution", type=int, default=256, help="TSDF voxels per side")
    parser.add_argument(
        "--truncation-factor", type=float, default=10.0, help="TSDF truncation in voxels"
    )
    parser.add_argument(
        "--depth-offset-factor", type=float, default=1.5, help="depth maps lowered by voxels"
    )
    parser.add_argument("--no-erosion", action="store_true", help="no 3x3 depth-map erosion")
    parser.add_argument(
        "--precise",
        action="store_true",
        help="fusion without the authors' thickening: truncation 3, offset 0, no erosion",
    )
    parser.add_argument(
        "--no-fusion",
        action="store_true",
        help="use the meshes as they are (each must already be watertight)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing objects")
    parser.add_argument("--seed", type=int, default=0, help="seed of samples, views and splits")
    parser.add_argument("--jobs", type=int, default=1, help="objects built in parallel processes")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def fusion_options(args) -> FusionOptions:
    """The fusion settings of the command line (the authors' unless --precise or changed)."""
    options = FusionOptions(
        args.depth_views,
        args.resolution,
        truncation_factor=args.truncation_factor,
        depth_offset_factor=args.depth_offset_factor,
        erosion=not args.no_erosion,
    )
    return replace(options, **PRECISE) if args.precise else options


def _check_args(parser: ArgumentParser, args) -> None:
    if not (0 <= args.val and 0 <= args.test and args.val + args.test <= 1):
        parser.error(f"--val {args.val} and --test {args.test} must be >= 0 with a sum <= 1")
    if not 0 <= args.points_uniform_ratio <= 1:
        parser.error(f"--points-uniform-ratio must be in [0, 1], got {args.points_uniform_ratio}")
    positive = {
        "--points": args.points,
        "--pointcloud-size": args.pointcloud_size,
        "--voxels-res": args.voxels_res,
        "--depth-views": args.depth_views,
        "--resolution": args.resolution,
        "--jobs": args.jobs,
    }
    for flag, value in positive.items():
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if args.points_sigma < 0 or args.points_padding < 0:
        parser.error("--points-sigma and --points-padding must be >= 0")


def find_meshes(mesh_dir: Path, category: str | None) -> list[MeshJob]:
    """The meshes to build: files directly in ``mesh_dir`` (category ``category``, default
    00000000) or in its sub-folders (category = folder name), sorted.

    Raises:
        InputError: no meshes, files and category folders mixed, or two files with one stem.
        ConfigError: --category given for a MESH_DIR of category folders.
    """
    direct = _mesh_files(mesh_dir)
    folders = [p for p in sorted(mesh_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    folders = [f for f in folders if _mesh_files(f)]
    if direct and folders:
        raise InputError(
            f"MESH_DIR {mesh_dir} holds both mesh files and category folders "
            f"({folders[0].name}, ...); move the files into a category folder"
        )
    if folders:
        if category is not None:
            raise ConfigError(
                f"--category applies to a MESH_DIR of mesh files; {mesh_dir} has category "
                "folders, whose names are the categories"
            )
        return [
            job for folder in folders for job in _category_jobs(_mesh_files(folder), folder.name)
        ]
    if not direct:
        raise InputError(
            f"no {'/'.join(MESH_SUFFIXES)} meshes in MESH_DIR {mesh_dir} or in its sub-folders"
        )
    return _category_jobs(direct, category or DEFAULT_CATEGORY)


def _mesh_files(folder: Path) -> list[Path]:
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in MESH_SUFFIXES and not p.name.startswith(".")
    ]


def _category_jobs(paths: list[Path], category: str) -> list[MeshJob]:
    by_id: dict[str, Path] = {}
    for path in paths:
        if path.stem in by_id:
            raise InputError(
                f"{by_id[path.stem]} and {path} would both be object {category}/{path.stem}; "
                "rename one"
            )
        by_id[path.stem] = path
    return [MeshJob(path, category, model_id) for model_id, path in by_id.items()]


def read_metadata(out: Path) -> dict:
    """FOLDER/metadata.yaml as a dict ({} when absent), read before any work is done.

    Raises:
        InputError: the file exists but is not a YAML mapping.
    """
    path = out / "metadata.yaml"
    if not path.is_file():
        return {}
    try:
        metadata = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid YAML ({err}); fix or remove it") from None
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InputError(f"{path} must map category ids to {{id, name}}; fix or remove it")
    return metadata


def check_outputs(out: Path, jobs: list[MeshJob], overwrite: bool) -> None:
    """Refuse, before any work, to replace object folders or split lists without --overwrite.

    Raises:
        OutputExistsError: naming the first existing output and how many there are.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"OUT {out} exists and is not a folder")
    if overwrite:
        return
    existing = [
        out / j.category / j.model_id for j in jobs if (out / j.category / j.model_id).exists()
    ]
    for category in sorted({j.category for j in jobs}):
        existing += [p for p in (out / category / f"{s}.lst" for s in SPLITS) if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"{existing[0]} already exists{more}; pass --overwrite to replace the objects and "
            "split lists being built"
        )


def run_jobs(
    jobs: list[MeshJob],
    out: Path,
    sample: SampleOptions,
    fusion: FusionOptions | None,
    overwrite: bool,
    n_processes: int,
) -> list[JobResult]:
    """Build every object, printing one line each (errors on stderr), in ``n_processes``."""
    results = []
    if n_processes == 1 or len(jobs) == 1:
        for job in jobs:
            results.append(
                _announce(build_job(job, out, sample, fusion, overwrite), len(results), len(jobs))
            )
        return results
    threads = max(1, (os.cpu_count() or 1) // n_processes)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        n_processes, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(build_job, job, out, sample, fusion, overwrite) for job in jobs]
        for future in as_completed(futures):
            results.append(_announce(future.result(), len(results), len(jobs)))
    return results


def _announce(result: JobResult, done: int, total: int) -> JobResult:
    job = result.job
    if result.error is None:
        print(
            f"[{done + 1}/{total}] {job.category}/{job.model_id}: built in {result.seconds:.1f} s",
            flush=True,
        )
    else:
        print(f"[{done + 1}/{total}] {job.category}/{job.model_id}: failed", flush=True)
        print(f"error: {result.error}", file=sys.stderr, flush=True)
    return result


def build_job(
    job: MeshJob, out: Path, sample: SampleOptions, fusion: FusionOptions | None, overwrite: bool
) -> JobResult:
    """Build one object; a user error (broken mesh) becomes the result's one-line reason."""
    start = time.perf_counter()
    try:
        build_object(job, out / job.category / job.model_id, sample, fusion, overwrite)
    except UserError as err:
        message = " ".join(str(err).split())
        if str(job.path) not in message:
            message = f"{job.path}: {message}"
        return JobResult(job, time.perf_counter() - start, message)
    return JobResult(job, time.perf_counter() - start, None)


def build_object(
    job: MeshJob, target: Path, sample: SampleOptions, fusion: FusionOptions | None, overwrite: bool
) -> None:
    """Write one object folder: built in a hidden temporary folder, then renamed to ``target``.

    Raises:
        InputError: broken or (with --no-fusion) non-watertight mesh.
        OutputExistsError: ``target`` exists and not ``overwrite``.
    """
    mesh = load_input_mesh(job.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        staging.chmod(_folder_mode())  # mkdtemp makes it private to its owner
        rng = np.random.default_rng(
            [sample.seed, zlib.crc32(f"{job.category}/{job.model_id}".encode())]
        )
        write_object_files(staging, mesh, sample, fusion, rng)
        _publish(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_input_mesh(path: Path) -> TriMesh:
    """Read a mesh and reject what cannot be built: no faces, NaN / inf, zero total area.

    Raises:
        InputError: naming the file.
    """
    mesh = read_mesh(path)
    if len(mesh.faces) == 0:
        raise InputError(f"{path}: the mesh has no faces (a point cloud?); ONet needs a surface")
    if not np.isfinite(mesh.vertices).all():
        raise InputError(f"{path}: the mesh has NaN or infinite vertex coordinates")
    if not mesh.face_areas().sum() > 0:
        raise InputError(f"{path}: the mesh is degenerate (all its faces have zero area)")
    return mesh


def write_object_files(
    folder: Path,
    mesh: TriMesh,
    sample: SampleOptions,
    fusion: FusionOptions | None,
    rng: np.random.Generator,
) -> None:
    """All of an object's files into ``folder``, from the input mesh (see the module docstring).

    Raises:
        InputError: with ``fusion`` None, the mesh is not watertight.
    """
    normalized, loc, scale = normalize_to_unit_box(mesh)
    watertight = _watertight_normalized(mesh, normalized, loc, scale, fusion)
    write_off(folder / "model_watertight.off", watertight)
    export_points(folder / "points.npz", watertight, loc, scale, sample, rng)
    surface = export_pointcloud(folder / "pointcloud.npz", watertight, loc, scale, sample, rng)
    occupancy = voxelize(watertight, surface, sample.voxels_res)
    write_binvox(folder / "model.binvox", occupancy, loc - scale / 2.0, scale)
    save_choy_renders(folder / CHOY_FOLDER, choy_renders(normalized, loc, scale, rng))


def _watertight_normalized(
    mesh: TriMesh, normalized: TriMesh, loc: np.ndarray, scale: float, fusion: FusionOptions | None
) -> TriMesh:
    """The watertight mesh in the normalised frame, without colours or normals."""
    if fusion is None:
        if not is_watertight(mesh):
            raise InputError(
                "the mesh is not watertight (some edge is not shared by exactly two faces "
                "running it in opposite directions); drop --no-fusion to make it watertight"
            )
        return TriMesh(normalized.vertices, normalized.faces)
    fused = watertight_mesh(mesh, fusion)
    return TriMesh((fused.vertices - loc) / scale, fused.faces)


def _folder_mode() -> int:
    """The permissions os.mkdir gives a new folder under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def _publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished ``staging`` folder to ``target`` (replacing it with ``overwrite``)."""
    if not target.exists():
        staging.rename(target)
        return
    if not overwrite:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    # A folder cannot be renamed over a non-empty one: move the old one aside first.
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    target.rename(retired / target.name)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def split_ids(
    ids: list[str], val: float, test: float, seed: int, category: str
) -> dict[str, list[str]]:
    """create_split.py's split with a reproducible shuffle.

    ``n_val = int(val * n)``, ``n_test = int(test * n)``, the rest train; the ids are sorted,
    then permuted by a generator seeded with (seed, crc32(category)), then cut in the order
    train, val, test.

    Returns:
        {"train": [...], "val": [...], "test": [...]}, a partition of ``ids``.
    """
    ordered = sorted(ids)
    rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
    shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
    n_val, n_test = int(val * len(ids)), int(test * len(ids))
    n_train = len(ids) - n_val - n_test
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }


def write_splits(category_dir: Path, val: float, test: float, seed: int) -> None:
    """{train,val,test}.lst of every object folder in ``category_dir`` (hidden ones skipped)."""
    ids = [p.name for p in category_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for split, members in split_ids(ids, val, test, seed, category_dir.name).items():
        with atomic_write(category_dir / f"{split}.lst", "w") as handle:
            handle.write("\n".join(members))


def write_metadata(out: Path, metadata: dict, categories: list[str], given: dict) -> None:
    """Add the categories missing from OUT/metadata.yaml (ONet writes it as JSON, valid YAML).

    Names come from MESH_DIR/metadata.yaml (``given``) when it has them, else ONet's ShapeNet
    names, else the id.
    """
    updated = dict(metadata)
    for category in categories:
        entry = given.get(category)
        name = entry.get("name") if isinstance(entry, dict) else None
        updated.setdefault(
            category, {"id": category, "name": name or SHAPENET_NAMES.get(category, category)}
        )
    if updated == metadata:
        return
    with atomic_write(out / "metadata.yaml", "w") as handle:
        handle.write(json.dumps(updated, indent=4) + "\n")


def report(results: list[JobResult], out: Path) -> int:
    """Print the summary; exit status 2 when an object failed."""
    failed = [r for r in results if r.error is not None]
    print(f"{len(results) - len(failed)} built, {len(failed)} failed (into {out})")
    for result in failed:
        print(f"  failed: {result.error}")
    return 2 if failed else 0


if __name__ == "__main__":
    run_main(main)
