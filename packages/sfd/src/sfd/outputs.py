"""What the authors never released: ``--eval`` (image, albedo, normal, pose and shape metrics),
``--eval_relight``, ``--to_mesh`` and ``--to_uv``, each on the newest run of ``--trainstage``
(or ``--timestamp``), written into a new folder
``exps/{Stage}-<expname>-{eval|relight|mesh|uv}/<timestamp>/`` so nothing earlier is overwritten."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from geomkit.checkpoint import load_state_dict_strict
from geomkit.errors import CheckpointError, ConfigError, InputError, UserError
from geomkit.io.images import read_exr, write_image
from geomkit.io.meshes import read_mesh
from sfd.data import load_scene
from sfd.evaluation import (
    albedo_metrics,
    chamfer_to_truth,
    image_metrics,
    normal_angle,
    pose_errors,
    write_report,
)
from sfd.export import extract_mesh, textured_mesh, write_meshes
from sfd.models.pose import ObjectPose, read_pose_file
from sfd.models.renderer import DupNeuSRenderer
from sfd.runs import find_run, load_run_checkpoint, new_folder
from sfd.training import Options, render_views


def load_trained(options: Options, stage: str):
    """(scene, model with the newest (or --timestamp) run's weights, run folder)."""
    run = find_run(options.exps_folder_name, stage, options.expname, options.timestamp)
    if run is None:
        raise InputError(
            f"no {stage}-{options.expname} run with checkpoints under {options.exps_folder_name}"
        )
    scene = load_scene(options.data_split_dir, options.visible_num)
    visible = scene.n_instances if options.visible_num < 0 else options.visible_num
    poses = ObjectPose(Path(options.data_split_dir), options.init_method, visible)
    model = DupNeuSRenderer(options.conf["model"], poses, scene.scene_center, scene.scene_radius)
    state, _ = load_run_checkpoint(run, options.checkpoint)
    load_state_dict_strict(model, state["model_state_dict"], source=str(run.model_dir))
    return scene, model.eval(), run


def run_outputs(args, options: Options) -> int:
    stage = args.trainstage
    if args.to_uv and stage != "Mat":
        raise ConfigError(
            "--to_uv bakes the material network's albedo and roughness: use --trainstage Mat"
        )
    scene, model, run = load_trained(options, stage)
    for flag, kind, action in (
        (args.eval, "eval", evaluate),
        (args.eval_relight, "relight", relight),
        (args.to_mesh, "mesh", to_mesh),
        (args.to_uv, "uv", to_uv),
    ):
        if flag:
            out = new_folder(options.exps_folder_name, stage, f"{options.expname}-{kind}")
            try:
                action(scene, model, stage, out, args)
            except UserError:
                shutil.rmtree(out)  # only what this call created
                raise
            print(f"{kind}: {out} (from {run.root})", file=sys.stderr)
    return 0


# ---- evaluation ------------------------------------------------------------------------------
def evaluate(scene, model, stage: str, out: Path, args) -> dict:
    """Image metrics on GT-and-hit and on GT masks (+ albedo, normal, roughness, pose, Chamfer
    when the data folder has their ground truth), renders as PNG, metrics.json/.txt."""
    lpips = _lpips()
    level = int(args.conf["train"]["validate_resolution_level"])
    geometry = render_views(model, scene, level)
    pixels = geometry["pixels"]
    gt = scene.rgb.reshape(-1, 3)[pixels.reshape(-1)].reshape(*pixels.shape, 3)
    mask, hit = scene.mask.reshape(-1)[pixels.reshape(-1)].reshape(pixels.shape), geometry["hit"]
    metrics: dict = {
        "resolution_level": level,
        "mask_iou": float((mask & hit).sum() / (mask | hit).sum().clamp(min=1)),
    }
    prediction = geometry["color"]
    if stage == "Mat":
        from sfd.material_stage import render_material_views

        material = render_material_views(model, scene, level, not args.forbid_vis)
        prediction = material["sg_rgb"]
        _write_png(out / "albedo.png", material["diffuse_albedo"])
        write_image(out / "roughness.png", material["roughness"].clip(0, 1).numpy())
        metrics.update(_material_truth(scene, material, mask & hit, mask, lpips))
    metrics["rgb_gt_and_hit"] = image_metrics(prediction, gt, mask & hit, lpips)
    metrics["rgb_gt_mask"] = image_metrics(prediction, gt, mask, lpips)
    _write_png(out / "rgb.png", prediction)
    write_image(
        out / "normal.png", ((geometry["normal"] + 1) / 2 * hit[..., None]).clip(0, 1).numpy()
    )
    if scene.normal is not None:
        truth = scene.normal.reshape(-1, 3)[pixels.reshape(-1)].reshape(*pixels.shape, 3) * 2 - 1
        metrics["normal_angle_deg"] = normal_angle(geometry["normal"], truth, mask & hit)
    metrics.update(pose_and_shape_metrics(scene, model))
    write_report(metrics, out)
    print((out / "metrics.txt").read_text(), file=sys.stderr)
    return metrics


def _material_truth(scene, material, gt_and_hit, gt_mask, lpips) -> dict:
    root, metrics = scene.root, {}
    albedo_path = root / "train" / "000_diffuse.exr"
    if albedo_path.is_file():
        pixels = material["pixels"].reshape(-1)
        truth = torch.from_numpy(read_exr(albedo_path)[..., :3]).float().reshape(-1, 3)[pixels]
        truth = truth.reshape(*material["pixels"].shape, 3)
        first = albedo_metrics(material["diffuse_albedo"], truth, gt_and_hit, lpips)
        metrics["albedo_gt_and_hit"] = first
        metrics["albedo_gt_mask"] = albedo_metrics(
            material["diffuse_albedo"], truth, gt_mask, lpips, first["scale"]
        )
    return metrics


def pose_and_shape_metrics(scene, model, mesh_resolution: int = 128) -> dict:
    """Pose errors against ``blender_object_gt_pose.json`` and, with ``gt/mesh.ply`` (in the
    frame those poses map), the Chamfer of the canonical mesh (``mesh_resolution``^3 marching
    cubes) mapped there by the poses' alignment, in the truth's units; {} without truth."""
    gt_path = scene.root / "blender_object_gt_pose.json"
    if not gt_path.is_file() or model.obj_poses.init_method == "GT":
        return {}
    camera_path = scene.root / "blender_camera_gt_pose.json"
    gt_camera = _camera(camera_path) if camera_path.is_file() else scene.c2w
    gt = read_pose_file(gt_path)[: model.n_visible]
    errors = pose_errors(model.obj_poses.get_pose().detach(), gt, scene.c2w, gt_camera)
    metrics = {
        "pose_rotation_deg": errors.rotation_deg,
        "pose_translation": errors.translation_normalized,
    }
    mesh_path = scene.root / "gt" / "mesh.ply"
    if mesh_path.is_file():
        vertices, _ = extract_mesh(object_sdf(model), mesh_resolution)
        aligned = vertices @ errors.alignment[:3, :3].numpy().T + errors.alignment[:3, 3].numpy()
        metrics["chamfer"] = chamfer_to_truth(aligned, read_mesh(mesh_path), n=20000)
    return metrics


def object_sdf(model: DupNeuSRenderer):
    """The canonical SDF cut to the unit sphere, where S puts the object (the SfM points'
    bounds): outside it the SDF was never constrained and may hold stray surfaces."""
    return lambda points: torch.maximum(model.sdf_network.sdf(points), points.norm(dim=-1) - 1.0)


def _camera(path: Path) -> torch.Tensor:
    from sfd.data import read_camera

    return read_camera(path)[0]


def _lpips():
    """LPIPS-VGG as the original, or None with a line saying why (its weights are a local file)."""
    try:
        from geomkit.metrics.lpips import LPIPS

        return LPIPS("vgg")
    except (CheckpointError, InputError) as err:
        print(f"LPIPS not computed: {err}", file=sys.stderr)
        return None


def relight(scene, model, stage: str, out: Path, args) -> None:
    """Render the Mat model under other light SGs (``--envmap_name`` an (M, 7) .npy such as the
    authors' sg_128.npy); scored against ``test_relight_<name>/000_rgb.exr`` when present."""
    if stage != "Mat":
        raise ConfigError("--eval_relight needs --trainstage Mat")
    path = Path(args.envmap_name)
    if not path.is_file():
        raise InputError(f"--envmap_name must name an (M, 7) .npy of light SGs; {path} not found")
    sgs = torch.from_numpy(np.load(path)).float()
    if sgs.ndim != 2 or sgs.shape[1] != 7:
        raise InputError(f"{path}: light SGs must be (M, 7), got {tuple(sgs.shape)}")
    from sfd.material_stage import render_material_views

    with torch.no_grad():
        model.envmap_material_network.lgtSGs.data = sgs
    level = int(args.conf["train"]["validate_resolution_level"])
    images = render_material_views(model, scene, level, not args.forbid_vis)
    _write_png(out / f"relight_{path.stem}.png", images["sg_rgb"])
    truth = scene.root / f"test_relight_{path.stem}" / "000_rgb.exr"
    if truth.is_file():
        pixels = images["pixels"].reshape(-1)
        gt = (
            torch.from_numpy(read_exr(truth)[..., :3])
            .float()
            .reshape(-1, 3)[pixels]
            .reshape(*images["pixels"].shape, 3)
        )
        mask = scene.mask.reshape(-1)[pixels].reshape(images["pixels"].shape)
        write_report({"relight": image_metrics(images["sg_rgb"], gt, mask & images["hit"])}, out)


# ---- exports ---------------------------------------------------------------------------------
def to_mesh(scene, model, stage: str, out: Path, args) -> list[Path]:
    vertices, faces = extract_mesh(object_sdf(model), args.mesh_resolution)
    return write_meshes(
        out, vertices, faces, model.obj_poses.rigid().detach(), model.obj_poses.scale_mat
    )


def to_uv(scene, model, stage: str, out: Path, args):
    vertices, faces = extract_mesh(object_sdf(model), args.mesh_resolution)
    material = model.envmap_material_network
    return textured_mesh(
        vertices, faces,
        lambda p: material(p)["sg_diffuse_albedo"],
        lambda p: material(p)["sg_roughness"],
        out, texture_size=args.texture_size,
    )  # fmt: skip


def _write_png(path: Path, linear: torch.Tensor) -> None:
    write_image(path, (linear.clip(0, 1) ** (1 / 2.2)).numpy())
