"""A synthetic "pile" for Structure from Duplicates: N copies of one textured shape resting on a
ground plane at known poses, seen in ONE image, written in SfD's data layout.

Preprocessing (SfM over instance crops) and training are measured against its truth: the
instance segmentation, the object-to-world poses, the camera, the canonical mesh and the
SfM-style files (poses, scale matrix, visible surface points) as if SfM had been perfect.

Conventions of the written files (those of the authors' ``data/airplane``):

* Camera: ``transforms_{train,test}.json`` hold one OpenGL/Blender camera-to-world matrix and
  the focal (a string) at train_res. SfD casts rays through integer pixel positions
  (u = column, v = row) with the principal point (W/2, H/2); in geomkit's pixel convention
  (pixel centres at j + 0.5) that is (W/2 + 0.5, H/2 + 0.5), which :meth:`Pile.cameras` uses.
  The raw image is the same view at raw_res (focal scaled by raw_res / train_res).
* World: z up, the ground plane z = 0. Object frame: the shape's own axes with the centre of
  its bounding box at the origin; G_i (``blender_object_gt_pose.json``) maps it to the world.
* ``gt/mesh.ply``: the shape in the object frame, the frame G_i maps to the world (what
  ``--eval`` compares a recovered mesh with).
* ``object_pred_pose.json`` O_i = G_i G_0^-1 and ``object_scale_matrix.json``
  S = G_0 diag(r, r, r, 1), r = half the bounding-box diagonal, so that O_i S maps the unit
  sphere (the mesh divided by r, SfD's canonical frame) onto instance i.
* Segmentation: background 0, instance k = 1..N stored as round(k / N * 255) (Python's round);
  ``points_world_{i}`` and pose i belong to instance k = i + 1.
* Colours: Lambertian albedo x (ambient + (1 - ambient) max(0, n . l)) with one directional
  light, stored as PNG value^(1 / 2.2), the gamma SfD's loader undoes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geomkit.cameras import Cameras, from_opengl_c2w
from geomkit.errors import ConfigError
from geomkit.io import (
    atomic_write,
    check_can_write,
    load_json,
    prepare_output_dir,
    save_json,
    write_image,
    write_ply,
)
from geomkit.mesh import sample_surface
from geomkit.ops.rasterize import Fragments, rasterize_mesh
from geomkit.render import interpolate, shade_lambertian, surface_normals
from geomkit.structures import TriMesh
from geomkit.synth.camera_paths import look_at_c2w_opengl
from geomkit.synth.generate import cached_build, shape_from_name
from geomkit.synth.shapes import FAMILIES, MESH_SUFFIXES, Shape
from geomkit.synth.textures import Texture, waves

# PILE_VERSION seeds the random streams: bump it when the scene itself changes. FILES_VERSION
# only keys the cache: bump it when what is written changes, so cached piles are regenerated.
PILE_VERSION = 2
FILES_VERSION = 3
GAMMA = 2.2
AMBIENT = 0.3
BACKGROUND = (0.4, 0.4, 0.4)  # plain grey, stored linear (written as BACKGROUND^(1/2.2))
ELEVATION_DEG = (45.0, 60.0)  # camera elevation above the ground plane
FILL = 0.85  # the pile's projection spans at most this share of the image half-width
TEXTURE_WAVES = 32  # plane waves summed into the texture
TEXTURE_CYCLES = (4.0, 48.0)  # their frequencies (cycles per shape unit), log-uniform
FOV_RANGE_DEG = (20.0, 100.0)  # fov_deg allowed: telephoto to ultra-wide
MIN_VISIBLE = 0.6  # least share of an instance's own silhouette not hidden by the others
POSE_ATTEMPTS = 20
POINTS_PER_INSTANCE = 4000  # surface samples per instance before the visibility test
DEPTH_TOLERANCE_PX = 1.5  # visible if within this many pixel footprints of the rendered depth


@dataclass
class Pile:
    """A written pile and its ground truth.

    root: the output folder. name: the shape name used in the pose keys ("chair_00", ...).
    poses: (N, 4, 4) float64 object-to-world G_i. c2w: (4, 4) OpenGL camera-to-world.
    focal: pixels at train_res. radius: r, half the bounding-box diagonal of the shape.
    """

    root: Path
    name: str
    poses: np.ndarray
    c2w: np.ndarray
    focal: float
    radius: float
    train_res: int
    raw_res: int

    @property
    def n_instances(self) -> int:
        return len(self.poses)

    @property
    def scale_matrix(self) -> np.ndarray:
        """(4, 4) S = G_0 diag(r, r, r, 1): unit sphere frame to instance 0 in the world."""
        return self.poses[0] @ np.diag([self.radius] * 3 + [1.0])

    def cameras(self, resolution: int | None = None) -> Cameras:
        """The camera at ``resolution`` (default train_res) as float64 geomkit Cameras."""
        return pile_cameras(self.c2w, self.focal, self.train_res, resolution or self.train_res)


def pile_cameras(c2w: np.ndarray, focal: float, train_res: int, resolution: int) -> Cameras:
    """geomkit Cameras of SfD's camera (focal at ``train_res``) seen at ``resolution`` pixels.

    The principal point is SfD's (W/2, H/2) on integer pixel positions, i.e. geomkit's
    (W/2 + 0.5, H/2 + 0.5).
    """
    f = focal * resolution / train_res
    c = resolution / 2 + 0.5
    return from_opengl_c2w(
        torch.as_tensor(c2w, dtype=torch.float64)[None],
        torch.tensor([[f, f]], dtype=torch.float64),
        torch.tensor([[c, c]], dtype=torch.float64),
        torch.tensor([resolution, resolution]),
    )


def make_pile(
    out: str | os.PathLike,
    n_instances: int = 6,
    shape: str = "chair",
    train_res: int = 256,
    raw_res: int = 512,
    seed: int = 0,
    overwrite: bool = False,
    tilt_deg: float = 0.0,
    mesh_resolution: int = 96,
    fov_deg: float = 60.0,
) -> Pile:
    """Render ``n_instances`` copies of ``shape`` into one image and write SfD's layout in ``out``.

    Args:
        out: output folder; an existing non-empty one needs ``overwrite``.
        n_instances: N >= 1 copies, on a disc around the origin, none overlapping another.
        shape: a family of geomkit.synth.shapes (FAMILIES; "chair" has no rotational symmetry)
            or a mesh file. Its parameters and its texture (a function of object-frame points)
            come from ``seed``.
        train_res: side of the square ``train/`` images; raw_res: of ``raw/`` (>= train_res).
        seed: shape, texture, poses, camera and light; the same seed gives identical files.
        tilt_deg: besides a uniform rotation about the ground normal, tilt each copy about a
            random horizontal axis by up to this angle (it still rests on the ground).
        mesh_resolution: marching-cubes grid of a procedural shape.
        fov_deg: field of view across the image side; the camera moves as close as makes the
            pile fill the frame. The default, a phone's main camera on a square crop, gives
            clear perspective, which SfM over the copies needs: on 6-box piles sfd.preprocess
            measured 0.05-1.3 degrees rotation error at 60 and 0.1-2.4 at 40 degrees (1.6 times
            as far, nearly affine views).

    Returns:
        The Pile (paths, poses, camera).

    Raises:
        ConfigError: a bad setting, or no placement found where every copy stays visible.
        OutputExistsError: ``out`` is not empty and ``overwrite`` is False.

    Nothing is written before the pile has been rendered.
    """
    _check_settings(n_instances, shape, train_res, raw_res, tilt_deg, mesh_resolution, fov_deg)
    check_can_write(out, overwrite)
    canonical, centre = _object_frame(shape_from_name(shape, seed), mesh_resolution)
    corners = canonical.vertices.max(0) - canonical.vertices.min(0)
    radius = 0.5 * float(np.linalg.norm(corners))
    # the texture has its own stream, so that changing it leaves the poses and camera as they are
    texture = _pile_texture(np.random.default_rng([seed, PILE_VERSION, 0]))
    rng = np.random.default_rng([seed, PILE_VERSION, 1])
    scene = _arrange(canonical, n_instances, train_res, tilt_deg, fov_deg, rng)
    light = _light_direction(rng)
    train = _render(scene, canonical, texture, light, train_res)
    raw = _render(scene, canonical, texture, light, raw_res)
    out = prepare_output_dir(out, overwrite)
    pile = Pile(
        out, _shape_name(shape), scene.poses, scene.c2w, scene.focal, radius, train_res, raw_res
    )
    _write_images(out, train, raw, n_instances, scene.c2w)
    _write_sfm_files(out, pile, _visible_points(canonical, scene.poses, (raw, train), rng))
    (out / "gt").mkdir(exist_ok=True)
    colors = np.clip(texture(canonical.vertices), 0, 1)
    write_ply(
        out / "gt" / "mesh.ply",
        TriMesh(canonical.vertices, canonical.faces, vertex_colors=colors),
    )
    settings = {
        "n_instances": n_instances,
        "shape": shape,
        "train_res": train_res,
        "raw_res": raw_res,
        "seed": seed,
        "tilt_deg": tilt_deg,
        "mesh_resolution": mesh_resolution,
        "fov_deg": fov_deg,
    }
    _write_provenance(out, pile, settings, centre, light)
    return pile


def cached_pile(**settings) -> Path:
    """The folder of make_pile(**settings), generated once in the synth cache and reused."""
    key = {"pile_version": PILE_VERSION, "files": FILES_VERSION, **settings}
    return cached_build(
        key,
        "pile-",
        Path("gt") / "pile.json",
        lambda out: make_pile(out, overwrite=True, **settings),
    )


def read_pile(root: str | os.PathLike) -> Pile:
    """The Pile written by :func:`make_pile` into ``root`` (its ground truth, not SfM's)."""
    root = Path(root)
    info = load_json(root / "gt" / "pile.json", required_keys=("shape_name", "radius"))
    poses = load_json(root / "blender_object_gt_pose.json")
    meta = load_json(root / "transforms_train.json", required_keys=("focal", "frames"))
    return Pile(
        root=root,
        name=info["shape_name"],
        poses=np.array([poses[key] for key in sorted(poses, key=_index)], dtype=np.float64),
        c2w=np.array(meta["frames"][0]["transform_matrix"], dtype=np.float64),
        focal=float(meta["focal"]),
        radius=float(info["radius"]),
        train_res=int(info["settings"]["train_res"]),
        raw_res=int(info["settings"]["raw_res"]),
    )


def segmentation_values(n_instances: int) -> list[int]:
    """Stored value of instance k = 1..N: round(k / N * 255) (index k - 1 in the list)."""
    return [round(k / n_instances * 255) for k in range(1, n_instances + 1)]


# -- settings and the object frame ------------------------------------------------------------


def _check_settings(n, shape, train_res, raw_res, tilt_deg, mesh_resolution, fov_deg) -> None:
    if not isinstance(n, int) or not 1 <= n <= 255:
        raise ConfigError(f"n_instances must be an integer in [1, 255], got {n!r}")
    if shape not in FAMILIES and Path(shape).suffix.lower() not in MESH_SUFFIXES:
        raise ConfigError(
            f"shape {shape!r} is neither one of {sorted(FAMILIES)} nor a mesh file "
            f"({', '.join(MESH_SUFFIXES)})"
        )
    if not isinstance(train_res, int) or train_res < 32:
        raise ConfigError(f"train_res must be an integer >= 32, got {train_res!r}")
    if not isinstance(raw_res, int) or raw_res < train_res:
        raise ConfigError(f"raw_res must be an integer >= train_res ({train_res}), got {raw_res!r}")
    if not 0.0 <= tilt_deg <= 30.0:
        raise ConfigError(f"tilt_deg must be in [0, 30] so copies still rest, got {tilt_deg!r}")
    if not isinstance(mesh_resolution, int) or mesh_resolution < 32:
        raise ConfigError(f"mesh_resolution must be an integer >= 32, got {mesh_resolution!r}")
    low, high = FOV_RANGE_DEG
    if not low <= fov_deg <= high:
        raise ConfigError(f"fov_deg must be in [{low:g}, {high:g}] degrees, got {fov_deg!r}")


def _shape_name(shape: str) -> str:
    return shape if shape in FAMILIES else Path(shape).stem


def _object_frame(shape: Shape, resolution: int) -> tuple[TriMesh, np.ndarray]:
    """The shape's mesh with its bounding-box centre moved to the origin, and that centre."""
    mesh = shape.mesh(resolution)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    return TriMesh(vertices - centre, mesh.faces), centre


def _pile_texture(rng) -> Texture:
    """Plane waves through a 6-colour palette, many and finer than random_texture's, detail at
    every scale from a face to a few raw pixels: SIFT then finds hundreds of matches between
    copies (12 waves of 4-16 cycles gave 15-80 and SfM poses off by up to 80 degrees)."""
    n = TEXTURE_WAVES
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    low, high = np.log(TEXTURE_CYCLES)
    frequencies, phases = np.exp(rng.uniform(low, high, n)), rng.uniform(0, 2 * np.pi, n)
    return waves(directions, frequencies, phases, rng.uniform(0.05, 0.95, size=(6, 3)))


# -- poses, camera, light ---------------------------------------------------------------------


@dataclass
class _Scene:
    poses: np.ndarray  # (N, 4, 4) object to world
    c2w: np.ndarray  # (4, 4) OpenGL
    focal: float  # at train_res
    train_res: int


def _arrange(
    canonical: TriMesh, n: int, train_res: int, tilt_deg: float, fov_deg: float, rng
) -> _Scene:
    """Poses and camera where every copy keeps MIN_VISIBLE of its silhouette in the image."""
    focal = (train_res / 2) / math.tan(math.radians(fov_deg) / 2)
    for _ in range(POSE_ATTEMPTS):
        poses = _sample_poses(canonical.vertices, n, tilt_deg, rng)
        c2w = _look_down(canonical.vertices, poses, fov_deg, rng)
        cameras = pile_cameras(c2w, focal, train_res, train_res)
        if min(_visible_shares(canonical, poses, cameras)) >= MIN_VISIBLE:
            return _Scene(poses, c2w, focal, train_res)
    raise ConfigError(
        f"no placement of {n} copies keeps each one {MIN_VISIBLE:.0%} visible after "
        f"{POSE_ATTEMPTS} tries; use fewer instances or another seed"
    )


def _sample_poses(vertices: np.ndarray, n: int, tilt_deg: float, rng) -> np.ndarray:
    """(N, 4, 4) object-to-world poses: random yaw (and tilt), resting on z = 0, centres on a
    disc far enough apart that the footprints (bounding circles) do not overlap."""
    rotations = np.stack([_random_rotation(tilt_deg, rng) for _ in range(n)])
    rotated = vertices @ rotations.transpose(0, 2, 1)  # (N, V, 3)
    footprint = np.linalg.norm(rotated[..., :2], axis=-1).max(1)
    heights = -rotated[..., 2].min(1)
    centres = _place_discs(footprint, rng)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = np.column_stack([centres, heights])
    return poses


def _random_rotation(tilt_deg: float, rng) -> np.ndarray:
    """A uniform rotation about world z after a tilt of up to ``tilt_deg`` about a random
    horizontal axis."""
    yaw = rng.uniform(0, 2 * np.pi)
    axis_angle = rng.uniform(0, 2 * np.pi)
    tilt = math.radians(tilt_deg) * rng.uniform(0, 1)
    axis = np.array([math.cos(axis_angle), math.sin(axis_angle), 0.0])
    return _axis_angle(np.array([0.0, 0.0, 1.0]), yaw) @ _axis_angle(axis, tilt)


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _place_discs(radii: np.ndarray, rng, gap: float = 0.15) -> np.ndarray:
    """(N, 2) centres of non-overlapping discs (radii plus ``gap`` of the largest one),
    random sequential placement in a disc that grows until all fit."""
    spacing = radii + gap * radii.max()
    extent = spacing.max() * (0.5 + 0.8 * math.sqrt(len(radii)))
    while True:
        centres: list[np.ndarray] = []
        for r in spacing:
            for _ in range(500):
                p = _uniform_in_disc(extent, rng)
                if all(np.linalg.norm(p - c) >= r + spacing[j] for j, c in enumerate(centres)):
                    centres.append(p)
                    break
            else:
                break
        if len(centres) == len(radii):
            return np.array(centres) - np.mean(centres, axis=0)
        extent *= 1.15


def _uniform_in_disc(radius: float, rng) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return radius * math.sqrt(rng.uniform(0, 1)) * np.array([math.cos(angle), math.sin(angle)])


def _look_down(vertices: np.ndarray, poses: np.ndarray, fov_deg: float, rng) -> np.ndarray:
    """OpenGL camera-to-world at a random azimuth and ELEVATION_DEG looking at the pile's
    bounding-box centre, at the distance where the pile spans FILL of the image half-width."""
    world = _to_world(vertices, poses).reshape(-1, 3)
    target = 0.5 * (world.min(0) + world.max(0))
    extent = float(np.linalg.norm(world - target, axis=1).max())
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = math.radians(rng.uniform(*ELEVATION_DEG))
    direction = np.array(
        [
            math.cos(elevation) * math.cos(azimuth),
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
        ]
    )
    goal = FILL * math.tan(math.radians(fov_deg) / 2)

    def camera_at(distance: float) -> tuple[np.ndarray, float]:
        c2w = look_at_c2w_opengl((target + distance * direction)[None], target)[0]
        camera = (world - c2w[:3, 3]) @ c2w[:3, :3]  # OpenGL camera coordinates, z < 0 ahead
        return c2w, float(np.abs(camera[:, :2] / camera[:, 2:]).max())

    # the spread falls as the camera recedes: bisect between just outside the pile and far away
    near, far = 1.05 * extent, 100.0 * extent
    for _ in range(60):
        middle = 0.5 * (near + far)
        near, far = (middle, far) if camera_at(middle)[1] > goal else (near, middle)
    return camera_at(far)[0]


def _light_direction(rng) -> np.ndarray:
    """World direction towards a directional light 40-70 degrees above the ground."""
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = math.radians(rng.uniform(40.0, 70.0))
    return np.array(
        [
            math.cos(elevation) * math.cos(azimuth),
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
        ]
    )


def _to_world(vertices: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """(N, V, 3) the object-frame vertices placed by each pose."""
    return vertices @ poses[:, :3, :3].transpose(0, 2, 1) + poses[:, None, :3, 3]


# -- rendering --------------------------------------------------------------------------------


@dataclass
class _Frame:
    """One rendered image: rgb (H, W, 3) linear, ids (H, W) instance k = 1..N (0 empty),
    depth (H, W) view z (0 empty), normals (H, W, 3) world unit (0 empty), the cameras."""

    rgb: np.ndarray
    ids: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    cameras: Cameras


def _rasterize(canonical: TriMesh, poses: np.ndarray, cameras: Cameras):
    """Fragments of all copies as one mesh, its (V*N, 3) world vertices and faces."""
    n, n_faces = len(poses), len(canonical.faces)
    vertices = torch.as_tensor(_to_world(canonical.vertices, poses).reshape(-1, 3))
    offsets = len(canonical.vertices) * np.arange(n)[:, None, None]
    faces = torch.as_tensor((canonical.faces[None] + offsets).reshape(n * n_faces, 3))
    return rasterize_mesh(vertices, faces, cameras), vertices, faces


def _instance_ids(fragments: Fragments, n_faces: int) -> np.ndarray:
    face_idx = fragments.face_idx[0].numpy()
    return np.where(face_idx >= 0, face_idx // n_faces + 1, 0)


def _visible_shares(canonical: TriMesh, poses: np.ndarray, cameras: Cameras) -> list[float]:
    """Per copy: pixels it covers in the pile / pixels it would cover alone."""
    fragments, _, _ = _rasterize(canonical, poses, cameras)
    ids = _instance_ids(fragments, len(canonical.faces))
    shares = []
    for i in range(len(poses)):
        placed = _to_world(canonical.vertices, poses[i : i + 1])[0]
        alone = rasterize_mesh(placed, canonical.faces, cameras)
        shares.append((ids == i + 1).sum() / max(int((alone.face_idx >= 0).sum()), 1))
    return shares


def _render(scene: _Scene, canonical, texture: Texture, light: np.ndarray, res: int) -> _Frame:
    """Lambertian image of the pile with the texture evaluated in each copy's object frame."""
    cameras = pile_cameras(scene.c2w, scene.focal, scene.train_res, res)
    fragments, vertices, faces = _rasterize(canonical, scene.poses, cameras)
    covered = fragments.face_idx >= 0
    object_points = torch.as_tensor(np.tile(canonical.vertices, (len(scene.poses), 1)))
    local = interpolate(fragments, faces, object_points)
    albedo = torch.zeros_like(local)
    albedo[covered] = torch.as_tensor(texture(local[covered].numpy()), dtype=albedo.dtype)
    normals = surface_normals(fragments, vertices, faces)
    rgb = shade_lambertian(albedo, normals, torch.as_tensor(light), AMBIENT, two_sided=True)
    rgb = torch.where(covered[..., None], rgb, rgb.new_tensor(BACKGROUND))
    depth = torch.where(covered, fragments.depth, 0.0)
    return _Frame(
        rgb[0].numpy(),
        _instance_ids(fragments, len(canonical.faces)),
        depth[0].numpy(),
        normals[0].numpy(),
        cameras,
    )


# -- ground truth files -----------------------------------------------------------------------


def _visible_points(
    canonical: TriMesh, poses: np.ndarray, frames: tuple[_Frame, ...], rng
) -> dict[str, np.ndarray]:
    """Per instance i, world surface samples seen in every frame (the raw and the train image):
    the pixel each projects to shows instance i + 1 at its depth."""
    points = {}
    for i, pose in enumerate(poses):
        local, _ = sample_surface(canonical, POINTS_PER_INSTANCE, seed=rng)
        world = local @ pose[:3, :3].T + pose[:3, 3]
        seen = np.logical_and.reduce([_seen_as(world, i + 1, frame) for frame in frames])
        points[f"points_world_{i}"] = world[seen]
    return {"points_world_all": np.concatenate(list(points.values())), **points}


def _seen_as(world: np.ndarray, instance: int, frame: _Frame) -> np.ndarray:
    """(P,) bool: the point projects to a pixel of ``instance`` within DEPTH_TOLERANCE_PX pixel
    footprints of the rendered depth."""
    uv, depth = frame.cameras.project(torch.as_tensor(world))
    uv, depth = uv[0].numpy(), depth[0].numpy()
    height, width = frame.ids.shape
    col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (depth > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row = np.where(inside, col, 0), np.where(inside, row, 0)
    tolerance = DEPTH_TOLERANCE_PX * depth / float(frame.cameras.focal_length[0, 0])
    close = np.abs(frame.depth[row, col] - depth) <= tolerance
    return inside & (frame.ids[row, col] == instance) & close


def _write_images(out: Path, train: _Frame, raw: _Frame, n: int, c2w: np.ndarray) -> None:
    lookup = np.array([0, *segmentation_values(n)], dtype=np.uint8)
    for folder, frame in (("raw", raw), ("train", train)):
        (out / folder).mkdir(exist_ok=True)
        write_image(out / folder / "000_rgb.png", np.clip(frame.rgb, 0, 1) ** (1 / GAMMA))
        write_image(out / folder / "000_instance_seg.png", lookup[frame.ids])
    covered = train.ids > 0
    write_image(out / "train" / "000_mask.png", covered)
    normals_camera = train.normals @ c2w[:3, :3]  # OpenGL camera axes: x right, y up, z back
    write_image(
        out / "train" / "000_normal.png",
        np.where(covered[..., None], (normals_camera + 1) / 2, 1.0),
    )


def _write_sfm_files(out: Path, pile: Pile, points: dict[str, np.ndarray]) -> None:
    """The camera, the poses and the points as SfD's preprocessing writes them."""
    transforms = {
        "focal": str(pile.focal),
        "frames": [{"file_path": "train/000", "transform_matrix": pile.c2w}],
    }
    for split in ("train", "test"):
        save_json(out / f"transforms_{split}.json", transforms, indent=4)
    keys = [f"{pile.name}_{i:02d}" for i in range(pile.n_instances)]
    save_json(out / "blender_object_gt_pose.json", dict(zip(keys, pile.poses, strict=True)), 4)
    relative = pile.poses @ np.linalg.inv(pile.poses[0])
    save_json(out / "object_pred_pose.json", dict(zip(keys, relative, strict=True)), indent=4)
    save_json(out / "object_scale_matrix.json", {"scale_matrix": pile.scale_matrix}, indent=4)
    with atomic_write(out / "non_empty_indexes.txt", "w") as handle:
        np.savetxt(handle, np.arange(pile.n_instances, dtype=np.float64))
    with atomic_write(out / "points_world.npy", "wb") as handle:
        np.save(handle, points, allow_pickle=True)


def _write_provenance(out: Path, pile: Pile, settings: dict, centre, light) -> None:
    save_json(
        out / "gt" / "pile.json",
        {
            "pile_version": PILE_VERSION,
            "settings": settings,
            "shape_name": pile.name,
            "radius": pile.radius,
            "object_frame": "shape coordinates minus bbox_centre, the frame of gt/mesh.ply "
            "(its vertex colours the linear albedo); divided by radius it is the unit sphere "
            "frame that O_i S maps to instance i",
            "bbox_centre": centre,
            "focal_train": pile.focal,
            "principal_point": "(W/2, H/2) on integer pixel positions, as SfD's loader",
            "world": "z up, ground plane z = 0",
            "light_direction_world": light,
            "ambient": AMBIENT,
            "background_linear": BACKGROUND,
            "png_gamma": GAMMA,
        },
    )


def _index(key: str) -> int:
    return int(key.rsplit("_", 1)[1])
