"""Point clouds for NPBG++ from posed images (the preprocessing the original never released):
``python -m npbgpp.make_point_cloud SCENE_DIR --out SCENE_DIR/mvs_pc.ply [--format
auto|colmap|nerf|idr] [--dense/--no-dense] [--max-images N] [--overwrite]``.

Layouts (``--format auto`` takes the first that is present):

- colmap: a model in ``sparse/0/`` or ``sparse/`` (cameras/images/points3D .bin or .txt) and
  the images in ``images/``;
- nerf: ``transforms.json`` (instant-ngp, nerfstudio), else ``transforms_train.json`` (Blender;
  ``file_path`` without a suffix gets ``.png``); frames whose image is missing are reported once
  and skipped;
- idr: ``cameras.npz`` (``world_mat_i``) with ``image/``; the cloud is in the world frame of
  ``world_mat`` (``scale_mat`` is not applied, as NPBG++'s DTU loader ignores it).

Steps (geomkit.sfm): SIFT features, matches verified against the KNOWN poses, triangulation
with poses and intrinsics fixed (pycolmap); then, with ``--dense`` (the default), a CPU plane
sweep per view fused across views (patch-match stereo needs a CUDA build of pycolmap, which the
PyPI wheels are not; the run says which). Writes a binary PLY with colours and prints the
number of points, the mean reprojection error of the triangulated points in pixels and the
share of images used. An existing ``--out`` is kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from geomkit.cameras import Cameras, from_colmap, from_idr, from_nerf_transforms
from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io import check_can_write, load_json, load_npz, read_image, write_ply
from geomkit.structures import PointCloud

FORMATS = ("auto", "colmap", "nerf", "idr")
_SHOWN_MISSING = 5


def parse_args(argv):
    parser = ArgumentParser(
        prog="python -m npbgpp.make_point_cloud", description=__doc__.splitlines()[0]
    )
    parser.add_argument("scene_dir", help="scene folder (COLMAP, NeRF or IDR layout)")
    parser.add_argument("--out", help="output PLY (default SCENE_DIR/mvs_pc.ply)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="scene layout")
    parser.add_argument(
        "--dense",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="densify the triangulated points by plane sweep and fusion (default on)",
    )
    parser.add_argument("--max-images", type=int, help="use at most N images, evenly spaced")
    parser.add_argument("--workdir", help="keep the feature database and model here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's log")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    scene = Path(args.scene_dir)
    if not scene.is_dir():
        raise InputError(f"scene folder not found: {scene}")
    out = check_can_write(args.out or scene / "mvs_pc.ply", args.overwrite)
    if args.max_images is not None and args.max_images < 2:
        raise InputError(f"--max-images must be at least 2, got {args.max_images}")
    layout = detect_layout(scene) if args.format == "auto" else args.format
    _quiet_colmap(args.verbose)
    cameras, paths = read_posed_images(scene, layout)
    cameras, paths = subsample(cameras, paths, args.max_images)
    start = time.perf_counter()
    if args.workdir:
        cloud, report = make_point_cloud(cameras, paths, Path(args.workdir), args.dense)
    else:
        with tempfile.TemporaryDirectory(prefix="make_point_cloud-") as workdir:
            cloud, report = make_point_cloud(cameras, paths, Path(workdir), args.dense)
    write_ply(out, cloud)
    print_report(report, out, time.perf_counter() - start)
    return 0


def make_point_cloud(cameras: Cameras, paths: list[Path], workdir: Path, dense: bool):
    """(PointCloud, report) of the posed images: triangulated points, densified if asked."""
    from geomkit.sfm import triangulate_known_poses
    from geomkit.sfm.densify import densify_plane_sweep, patch_match_available

    sparse = triangulate_known_poses(cameras, paths, workdir)
    report = dict(sparse.report)
    if len(sparse) == 0:
        raise InputError(
            f"no point could be triangulated from {len(paths)} images (too few matching "
            "features: the images need texture and overlap, and the poses must be right)"
        )
    cloud = PointCloud(sparse.points, colors=sparse.colors)
    report["dense"] = "off"
    if dense:
        available, why = patch_match_available()
        report["dense"] = (
            f"CPU plane sweep; patch-match stereo unavailable: {why}"
            if not available
            else "CPU plane sweep; pycolmap has CUDA but this tool does not run patch-match"
        )
        fused = densify_plane_sweep(cameras, paths, sparse.points)
        report["dense_points"] = len(fused)
        if len(fused):
            cloud = PointCloud(fused.points, colors=fused.colors)
    return cloud, report


def detect_layout(scene: Path) -> str:
    """'colmap', 'nerf' or 'idr', by the files present (see the module docstring)."""
    if _colmap_model(scene) is not None:
        return "colmap"
    if _nerf_file(scene) is not None:
        return "nerf"
    if (scene / "cameras.npz").is_file():
        return "idr"
    raise InputError(
        f"{scene} has no COLMAP model (sparse/0 or sparse), no transforms.json or "
        "transforms_train.json and no cameras.npz; pass a scene in one of these layouts"
    )


def read_posed_images(scene: Path, layout: str) -> tuple[Cameras, list[Path]]:
    """float64 cameras and image paths of a scene; images that are missing are reported once
    and dropped."""
    readers = {"colmap": _read_colmap, "nerf": _read_nerf, "idr": _read_idr}
    cameras, paths = readers[layout](scene)
    present = [i for i, path in enumerate(paths) if path.is_file()]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(str(p.relative_to(scene)) for p in missing[:_SHOWN_MISSING])
        more = ", ..." if len(missing) > _SHOWN_MISSING else ""
        print(
            f"warning: {len(missing)} of {len(paths)} images listed by the {layout} cameras are "
            f"missing ({shown}{more}); using the other {len(present)}",
            file=sys.stderr,
        )
    if len(present) < 2:
        raise InputError(f"{scene}: {len(present)} image(s) found; at least 2 are needed")
    return cameras[present], [paths[i] for i in present]


def subsample(cameras: Cameras, paths: list[Path], max_images: int | None):
    """At most ``max_images`` views, evenly spaced in the given order."""
    if max_images is None or len(paths) <= max_images:
        return cameras, paths
    keep = np.unique(np.linspace(0, len(paths) - 1, max_images).round().astype(int)).tolist()
    return cameras[keep], [paths[i] for i in keep]


def print_report(report: dict, out: Path, seconds: float) -> None:
    used, given = report["images_used"], report["images_given"]
    print(f"wrote {out}")
    print(
        f"triangulated points: {report['num_points']}, mean reprojection error "
        f"{report['mean_reprojection_error_px']:.3f} px, mean track length "
        f"{report['mean_track_length']:.2f}"
    )
    print(f"images used: {used}/{given} ({100.0 * used / max(given, 1):.0f}%)")
    if report["dense"] != "off":
        print(f"dense points: {report['dense_points']} ({report['dense']})")
    print(f"time: {seconds:.1f} s")


def _quiet_colmap(verbose: bool) -> None:
    """COLMAP logs every step at INFO on stderr; keep its errors only, unless verbose."""
    import pycolmap

    pycolmap.logging.minloglevel = pycolmap.logging.INFO if verbose else pycolmap.logging.ERROR


def _colmap_model(scene: Path) -> Path | None:
    for folder in (scene / "sparse" / "0", scene / "sparse"):
        if any((folder / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return folder
    return None


def _read_colmap(scene: Path) -> tuple[Cameras, list[Path]]:
    model = _colmap_model(scene)
    if model is None:
        raise InputError(f"{scene}: no COLMAP model in sparse/0 or sparse")
    cameras, names = from_colmap(model, dtype=torch.float64)
    return cameras, [scene / "images" / name for name in names]


def _nerf_file(scene: Path) -> Path | None:
    for name in ("transforms.json", "transforms_train.json"):
        if (scene / name).is_file():
            return scene / name
    return None


def _read_nerf(scene: Path) -> tuple[Cameras, list[Path]]:
    path = _nerf_file(scene)
    if path is None:
        raise InputError(f"{scene}: no transforms.json or transforms_train.json")
    meta = load_json(path)
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not frames or not isinstance(frames, list):
        raise InputError(f"{path} has no 'frames' list")
    paths = [_nerf_image_path(scene, frame) for frame in frames]
    size = None
    if "h" not in meta or "w" not in meta:
        first = next((p for p in paths if p.is_file()), None)
        if first is None:
            raise InputError(f"{path}: none of the {len(paths)} images listed exists")
        size = read_image(first).shape[:2]
    try:
        cameras, _ = from_nerf_transforms(meta, image_size=size, dtype=torch.float64)
    except InputError as err:
        raise InputError(f"{path}: {err}") from err
    return cameras, paths


def _nerf_image_path(scene: Path, frame) -> Path:
    file_path = frame.get("file_path") if isinstance(frame, dict) else None
    if not isinstance(file_path, str):
        raise InputError(f"{scene}: a frame of the transforms file has no 'file_path'")
    path = scene / file_path
    return path if path.suffix else path.with_suffix(".png")


def _read_idr(scene: Path) -> tuple[Cameras, list[Path]]:
    arrays = load_npz(scene / "cameras.npz")
    count = sum(1 for key in arrays if key.startswith("world_mat_") and "inv" not in key)
    if count == 0:
        raise InputError(f"{scene / 'cameras.npz'} has no world_mat_0")
    folder = scene / "image"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if len(names) != count:
        raise InputError(
            f"{scene}: {count} world_mat_i in cameras.npz but {len(names)} files in image/"
        )
    try:
        world_mats = np.stack([arrays[f"world_mat_{i}"] for i in range(count)])
    except KeyError as err:
        raise InputError(f"{scene / 'cameras.npz'} lacks {err}") from err
    size = read_image(folder / names[0]).shape[:2]
    cameras = from_idr(torch.as_tensor(world_mats, dtype=torch.float64), None, size)
    return cameras, [folder / name for name in names]


if __name__ == "__main__":
    run_main(main)
