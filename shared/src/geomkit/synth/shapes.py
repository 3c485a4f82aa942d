"""Procedural shapes with known surfaces: signed distance functions, meshed by marching cubes.

Every shape fits in the box [-0.5, 0.5]^3 (world z up) and is watertight. Composites are
unions of primitives whose parameters are drawn from a seeded generator, so each name is a
family of related shapes (a "class" for ONet-style training). Each shape carries a procedural
colour (geomkit.synth.textures) so that photometric methods see texture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce

import numpy as np

from geomkit.io import read_mesh
from geomkit.mesh import marching_cubes, normalize_to_unit_box
from geomkit.structures import TriMesh
from geomkit.synth.textures import Texture, random_texture

SDF = Callable[[np.ndarray], np.ndarray]  # points (..., 3) -> signed distance (...), < 0 inside
MESH_SUFFIXES = (".obj", ".ply", ".off")


@dataclass
class Shape:
    """A named shape: its surface as a mesh, optionally its SDF, and its colour function."""

    name: str
    color: Texture
    sdf: SDF | None = None
    _mesh: TriMesh | None = field(default=None, repr=False)

    def mesh(self, resolution: int = 128) -> TriMesh:
        """The surface: marching cubes of the SDF on a resolution^3 grid over [-0.5, 0.5]^3
        (a shape made from a mesh file returns that mesh)."""
        if self.sdf is None:
            return self._mesh
        if self._mesh is None or self._mesh.extras.get("resolution") != resolution:
            axis = np.linspace(-0.5, 0.5, resolution)
            grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
            mesh = marching_cubes(self.sdf(grid), 0.0, inside="below")
            mesh.extras["resolution"] = resolution
            self._mesh = mesh
        return self._mesh


# -- primitives (Inigo Quilez's exact distance formulas) ------------------------------------


def sphere(center, radius: float) -> SDF:
    center = np.asarray(center, dtype=np.float64)
    return lambda p: np.linalg.norm(p - center, axis=-1) - radius


def box(center, half_size, rounding: float = 0.0) -> SDF:
    center = np.asarray(center, dtype=np.float64)
    half = np.asarray(half_size, dtype=np.float64) - rounding

    def sdf(p):
        q = np.abs(p - center) - half
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(q.max(axis=-1), 0.0)
        return outside + inside - rounding

    return sdf


def torus(center, major: float, minor: float) -> SDF:
    """A torus around the z axis through ``center``."""
    center = np.asarray(center, dtype=np.float64)

    def sdf(p):
        q = p - center
        ring = np.hypot(q[..., 0], q[..., 1]) - major
        return np.hypot(ring, q[..., 2]) - minor

    return sdf


def capsule(a, b, radius: float) -> SDF:
    """All points within ``radius`` of the segment ab."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ab = b - a

    def sdf(p):
        t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
        return np.linalg.norm(p - a - t[..., None] * ab, axis=-1) - radius

    return sdf


def cylinder(center, radius: float, half_height: float) -> SDF:
    """A capped cylinder along z."""
    center = np.asarray(center, dtype=np.float64)

    def sdf(p):
        q = p - center
        d = np.stack([np.hypot(q[..., 0], q[..., 1]) - radius, np.abs(q[..., 2]) - half_height], -1)
        return np.minimum(d.max(axis=-1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=-1)

    return sdf


def union(*sdfs: SDF) -> SDF:
    return lambda p: reduce(np.minimum, (f(p) for f in sdfs))


# -- families ---------------------------------------------------------------------------------


def _sphere(rng):
    return sphere((0, 0, 0), rng.uniform(0.3, 0.42))


def _torus(rng):
    minor = rng.uniform(0.07, 0.12)
    return torus((0, 0, 0), rng.uniform(0.22, 0.45 - minor), minor)


def _box(rng):
    return box((0, 0, 0), rng.uniform(0.2, 0.42, 3), rounding=rng.uniform(0.0, 0.05))


def _capsule(rng):
    h = rng.uniform(0.12, 0.3)
    r = rng.uniform(0.1, 0.45 - h)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    return capsule(-h * direction, h * direction, r)


def _snowman(rng):
    r0, r1, r2 = rng.uniform(0.17, 0.2), rng.uniform(0.12, 0.14), rng.uniform(0.08, 0.1)
    z0 = -0.45 + r0
    z1 = z0 + r0 + 0.7 * r1
    return union(
        sphere((0, 0, z0), r0), sphere((0, 0, z1), r1), sphere((0, 0, z1 + r1 + 0.7 * r2), r2)
    )


def _table(rng):
    top_z = rng.uniform(0.05, 0.3)
    half_w, half_d = rng.uniform(0.3, 0.45), rng.uniform(0.2, 0.4)
    thickness = rng.uniform(0.02, 0.05)
    leg = rng.uniform(0.025, 0.05)
    legs = [
        box(
            (sx * (half_w - leg), sy * (half_d - leg), (top_z - 0.45) / 2),
            (leg, leg, (top_z + 0.45) / 2),
        )
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    return union(box((0, 0, top_z), (half_w, half_d, thickness), rounding=0.01), *legs)


def _chair(rng):
    seat_z = rng.uniform(-0.1, 0.05)
    half = rng.uniform(0.18, 0.26)
    leg = rng.uniform(0.02, 0.035)
    back_h = rng.uniform(0.15, 0.45 - seat_z - 0.05)
    seat = box((0, 0, seat_z), (half, half, 0.03), rounding=0.01)
    back = box((0, half - 0.025, seat_z + back_h / 2 + 0.03), (half, 0.025, back_h / 2))
    legs = [
        box(
            (sx * (half - leg), sy * (half - leg), (seat_z - 0.45) / 2),
            (leg, leg, (seat_z + 0.45) / 2),
        )
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    return union(seat, back, *legs)


def _lamp(rng):
    base_r = rng.uniform(0.12, 0.2)
    pole_top = rng.uniform(0.05, 0.2)
    shade_z = pole_top + 0.08
    return union(
        cylinder((0, 0, -0.42), base_r, 0.03),
        capsule((0, 0, -0.4), (0, 0, pole_top), rng.uniform(0.015, 0.03)),
        torus((0, 0, shade_z), rng.uniform(0.12, 0.2), rng.uniform(0.04, 0.07)),
        sphere((0, 0, shade_z), rng.uniform(0.06, 0.1)),
    )


FAMILIES: dict[str, Callable[[np.random.Generator], SDF]] = {
    "sphere": _sphere,
    "torus": _torus,
    "box": _box,
    "capsule": _capsule,
    "snowman": _snowman,
    "table": _table,
    "chair": _chair,
    "lamp": _lamp,
}


def make_shape(name: str, seed: int = 0) -> Shape:
    """A shape of family ``name`` (see FAMILIES) with parameters and colours drawn from ``seed``."""
    if name not in FAMILIES:
        raise ValueError(f"unknown shape {name!r}; choose one of {sorted(FAMILIES)} or a mesh file")
    rng = np.random.default_rng(seed)
    return Shape(name, random_texture(rng), sdf=FAMILIES[name](rng))


def mesh_shape(path, seed: int = 0, padding: float = 0.1) -> Shape:
    """A shape from a mesh file, normalised to the unit box with ``padding``, procedural colour."""
    mesh, _, _ = normalize_to_unit_box(read_mesh(path), padding=padding)
    return Shape(str(path), random_texture(np.random.default_rng(seed)), _mesh=mesh)
