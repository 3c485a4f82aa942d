"""Mesh generation from an Occupancy Network (the authors' ``Generator3D``).

Occupancies are evaluated on the lattice of the padded box [-(1 + padding) / 2, (1 + padding) / 2]^3
(lattice point i of n per axis at (1 + padding) * (i / (n - 1) - 0.5)), either all of it
(``upsampling_steps=0``, the dense mode, n = resolution0) or adaptively with MISE
(n = resolution0 * 2^upsampling_steps + 1). The grid is padded with -1e6 so the surface closes,
and marching cubes runs at the threshold's logit. scikit-image places vertices with no offset
(the authors' vendored PyMCubes added +0.5 and subtracted it again). Optional steps follow in the
authors' order: quadric simplification (pyfqmr, aggressiveness 5), then refinement (RMSprop on
the vertices). Normals (``with_normals``) are the network's gradient at the final vertices; the
original estimated them before simplification and lost them there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pyfqmr
import torch
from torch import nn

from geomkit.errors import ConfigError, InputError
from geomkit.mesh import marching_cubes
from geomkit.structures import TriMesh
from onet.mise import MISE
from onet.models.folded import FoldedDecoder, foldable

PAD_VALUE = -1e6
SIMPLIFY_AGGRESSIVENESS = 5.0
REFINE_LR = 1e-4
REFINE_NORMAL_WEIGHT = 0.01
_EPS = 1e-10


def probability_to_logit(threshold: float) -> float:
    """log(t / (1 - t)) for an occupancy probability threshold t in (0, 1)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"the occupancy threshold must lie in (0, 1), got {threshold}")
    return math.log(threshold) - math.log(1.0 - threshold)


class Generator3D:
    """Extracts meshes from an Occupancy Network, as the authors' ``Generator3D``.

    Args:
        model: an OccupancyNetwork or anything with its interface: ``encode_inputs(inputs)`` ->
            c, ``decode(p (B, T, 3), z, c)`` -> occupancy LOGITS (B, T), and
            ``get_z_from_prior(batch_size, sample)`` -> z (B, z_dim).
        points_batch_size: points per network call.
        threshold: occupancy probability of the surface (ONet img: 0.2).
        refinement_step: RMSprop refinement iterations (0: none).
        device: where the network runs; None: the model's device (CPU without parameters).
        resolution0: MISE's initial voxels per axis; in dense mode, lattice points per axis.
        upsampling_steps: MISE depth; 0 evaluates the full resolution0^3 lattice (dense mode).
        with_normals: give the mesh vertex normals from the network's gradient.
        padding: the box edge is 1 + padding.
        sample: draw z from the prior rather than take its mean.
        simplify_nfaces: simplify to this many faces (None: no simplification).
        fold: evaluate a conditional-batch-norm decoder folded for the object
            (:class:`~onet.models.folded.FoldedDecoder`): the same logits to float rounding,
            faster; False runs ``model.decode`` as the authors did.
    """

    def __init__(
        self,
        model: nn.Module,
        points_batch_size: int = 100000,
        threshold: float = 0.5,
        refinement_step: int = 0,
        device: torch.device | str | None = None,
        resolution0: int = 16,
        upsampling_steps: int = 3,
        with_normals: bool = False,
        padding: float = 0.1,
        sample: bool = False,
        simplify_nfaces: int | None = None,
        fold: bool = True,
    ):
        if points_batch_size < 1:
            raise ValueError(f"points_batch_size must be >= 1, got {points_batch_size}")
        if resolution0 < 2 and upsampling_steps == 0:
            raise ValueError(f"dense mode needs resolution0 >= 2, got {resolution0}")
        self.logit_threshold = probability_to_logit(threshold)
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.model = model.to(self.device)
        self.points_batch_size = int(points_batch_size)
        self.threshold = float(threshold)
        self.refinement_step = int(refinement_step)
        self.resolution0 = int(resolution0)
        self.upsampling_steps = int(upsampling_steps)
        self.with_normals = with_normals
        self.padding = float(padding)
        self.sample = sample
        self.simplify_nfaces = simplify_nfaces
        self.fold = fold
        self.points_queried = 0

    @property
    def box_size(self) -> float:
        return 1.0 + self.padding

    def generate_mesh(self, data: dict) -> tuple[TriMesh, dict]:
        """The mesh of one object.

        Args:
            data: {'inputs': (1, ...) tensor (the network's input with a batch of 1)}; without
                'inputs' the model gets an empty (1, 0) input (unconditional models).

        Returns:
            (TriMesh in the padded box's frame, stats): stats hold 'time (encode inputs)',
            'time (eval points)', 'time (marching cubes)', and 'time (simplify)',
            'time (refine)', 'time (normals)' when those ran (seconds), and 'points queried'
            (network evaluations).
        """
        self.model.eval()
        stats: dict[str, float] = {}
        inputs = torch.as_tensor(data.get("inputs", torch.empty(1, 0))).to(self.device)
        start = time.time()
        with torch.no_grad():
            c = self.model.encode_inputs(inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA runs asynchronously: time the work
        stats["time (encode inputs)"] = time.time() - start
        z = self.model.get_z_from_prior(1, sample=self.sample).to(self.device)
        mesh = self.generate_from_latent(z, c, stats)
        return mesh, stats

    def generate_from_latent(
        self, z: torch.Tensor, c: torch.Tensor | None = None, stats: dict | None = None
    ) -> TriMesh:
        """The mesh of latent code z (1, z_dim) and conditioning c (1, c_dim).

        Args:
            z: (1, z_dim) float latent code (z_dim may be 0).
            c: (1, c_dim) float conditioning code, or None for an empty one.
            stats: a dict to which the timings and 'points queried' are added.

        Returns:
            TriMesh: vertices (V, 3) float64 in the padded box, faces (F, 3) int64 with
            outward normals by the right-hand rule; empty when the surface is not crossed.
        """
        stats = {} if stats is None else stats
        c = torch.empty(1, 0, device=self.device) if c is None else c
        self.points_queried = 0
        start = time.time()
        decode = self.object_decoder(z, c)
        if self.upsampling_steps == 0:
            values = self._dense_values(decode)
        else:
            values = self._mise_values(decode)
        stats["time (eval points)"] = time.time() - start
        stats["points queried"] = self.points_queried
        return self.extract_mesh(values, z, c, stats)

    def object_decoder(self, z: torch.Tensor, c: torch.Tensor) -> Callable:
        """Points (1, T, 3) -> logits (1, T) of the object (z, c): the folded decoder when
        ``fold`` is set and the model has an eval-mode CBN decoder, else ``model.decode``."""
        if self.fold and foldable(self.model):
            folded = FoldedDecoder(self.model.decoder, z, c)
            return lambda p: folded(p[0])[None]
        return lambda p: self.model.decode(p, z, c)

    def _dense_values(self, decode: Callable) -> np.ndarray:
        n = self.resolution0
        lattice = torch.from_numpy(np.indices((n,) * 3).reshape(3, -1).T.copy())
        logits = self.eval_points(self.lattice_to_box(lattice, n - 1), decode)
        return logits.numpy().reshape(n, n, n)

    def _mise_values(self, decode: Callable) -> np.ndarray:
        extractor = MISE(self.resolution0, self.upsampling_steps, self.logit_threshold)
        points = extractor.query()
        while len(points):
            p = self.lattice_to_box(torch.from_numpy(points), extractor.resolution)
            extractor.update(points, self.eval_points(p, decode).numpy().astype(np.float64))
            points = extractor.query()
        return extractor.to_dense()

    def lattice_to_box(self, lattice: torch.Tensor, n_cells: int) -> torch.Tensor:
        """Integer lattice points (N, 3) in {0..n_cells} -> float32 (N, 3) in the padded box:
        (1 + padding) * (i / n_cells - 0.5)."""
        return self.box_size * (lattice.float() / n_cells - 0.5)

    def eval_points(self, p: torch.Tensor, decode: Callable) -> torch.Tensor:
        """Occupancy logits (N,) float32 on the CPU of points p (N, 3) by ``decode`` (see
        :meth:`object_decoder`), in batches of points_batch_size; counts the points in
        ``points_queried``.

        Raises:
            InputError: the network returned NaN (broken weights or input).
        """
        chunks = []
        for batch in torch.split(p, self.points_batch_size):
            with torch.no_grad():
                logits = decode(batch[None].to(self.device))
            chunks.append(logits[0].float().cpu())
        self.points_queried += len(p)
        logits = torch.cat(chunks) if chunks else torch.empty(0)
        if torch.isnan(logits).any():
            raise InputError(
                f"the network returned NaN occupancy logits for {int(torch.isnan(logits).sum())}"
                f" of {len(logits)} points; check the model weights and the input"
            )
        return logits

    def extract_mesh(
        self,
        values: np.ndarray,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        stats: dict | None = None,
    ) -> TriMesh:
        """Marching cubes on a grid of logits, then the optional steps.

        Args:
            values: (n, n, n) float logits on the lattice of the padded box, [x, y, z].
            z: (1, z_dim) latent code, for refinement and normals.
            c: (1, c_dim) conditioning code, for refinement and normals.
            stats: dict receiving 'time (marching cubes)' and the optional steps' times.

        Returns:
            TriMesh (see :meth:`generate_from_latent`).
        """
        stats = {} if stats is None else stats
        c = torch.empty(1, 0, device=self.device) if c is None else c
        n = np.asarray(values.shape, dtype=np.float64)
        half = self.box_size / 2
        # The pad sample lies one lattice step outside the box on each side.
        step = self.box_size / (n - 1)
        start = time.time()
        padded = np.pad(np.asarray(values, dtype=np.float32), 1, constant_values=PAD_VALUE)
        mesh = marching_cubes(padded, self.logit_threshold, -half - step, half + step)
        stats["time (marching cubes)"] = time.time() - start
        mesh = TriMesh(mesh.vertices, mesh.faces)
        if mesh.is_empty:
            return mesh
        if self.simplify_nfaces is not None:
            start = time.time()
            mesh = simplify_mesh(mesh, self.simplify_nfaces)
            stats["time (simplify)"] = time.time() - start
        if self.refinement_step > 0:
            start = time.time()
            mesh = self.refine_mesh(mesh, z, c)
            stats["time (refine)"] = time.time() - start
        if self.with_normals:
            start = time.time()
            mesh.vertex_normals = self.estimate_normals(mesh.vertices, z, c)
            stats["time (normals)"] = time.time() - start
        return mesh

    def estimate_normals(
        self, vertices: np.ndarray, z: torch.Tensor, c: torch.Tensor
    ) -> np.ndarray:
        """Unit normals (V, 3) float64: -grad of the logit, i.e. pointing out of the solid."""
        normals = []
        for batch in torch.split(
            torch.as_tensor(vertices, dtype=torch.float32), self.points_batch_size
        ):
            p = batch[None].to(self.device).requires_grad_()
            (grad,) = torch.autograd.grad(self.model.decode(p, z, c).sum(), p)
            normal = -grad[0]
            normals.append((normal / normal.norm(dim=-1, keepdim=True)).cpu())
        return torch.cat(normals).double().numpy()

    def refine_mesh(self, mesh: TriMesh, z: torch.Tensor, c: torch.Tensor) -> TriMesh:
        """Move the vertices onto the surface: ``refinement_step`` RMSprop (lr 1e-4) steps on
        :func:`refinement_loss`, one Dirichlet(0.5, 0.5, 0.5) point per face per step."""
        self.model.eval()
        vertices = nn.Parameter(
            torch.as_tensor(mesh.vertices, dtype=torch.float32, device=self.device)
        )
        faces = torch.as_tensor(mesh.faces, device=self.device)
        optimizer = torch.optim.RMSprop([vertices], lr=REFINE_LR)
        dirichlet = torch.distributions.Dirichlet(torch.full((3,), 0.5, device=self.device))
        for _ in range(self.refinement_step):
            optimizer.zero_grad()
            weights = dirichlet.sample((len(faces),))
            loss = refinement_loss(self.model, vertices, faces, weights, z, c, self.threshold)
            loss.backward()
            optimizer.step()
        return TriMesh(vertices.detach().cpu().double().numpy(), mesh.faces)


def get_generator(model: nn.Module, cfg: dict, device: torch.device | str | None) -> Generator3D:
    """The generator a config describes (the authors' ``get_generator``): test.threshold and
    generation.{resolution_0, upsampling_steps, use_sampling, refinement_step, simplify_nfaces,
    batch_size} (points per network call).

    Raises:
        ConfigError: a value out of range, or a preprocessor (not supported).
    """
    gen = cfg["generation"]
    if cfg.get("preprocessor", {}).get("type") is not None:
        raise ConfigError("preprocessor.type is not supported by onet.generate; set it to null")
    threshold = cfg["test"]["threshold"]
    if not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise ConfigError(f"test.threshold must be a probability in (0, 1), got {threshold!r}")
    _check_int(gen, "resolution_0", 2)
    _check_int(gen, "upsampling_steps", 0)
    _check_int(gen, "refinement_step", 0)
    _check_int(gen, "batch_size", 1)
    if gen["simplify_nfaces"] is not None:
        _check_int(gen, "simplify_nfaces", 4)
    return Generator3D(
        model,
        points_batch_size=gen["batch_size"],
        threshold=threshold,
        refinement_step=gen["refinement_step"],
        device=device,
        resolution0=gen["resolution_0"],
        upsampling_steps=gen["upsampling_steps"],
        sample=bool(gen["use_sampling"]),
        simplify_nfaces=gen["simplify_nfaces"],
    )


def _check_int(section: dict, key: str, minimum: int) -> None:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"generation.{key} must be an integer >= {minimum}, got {value!r}")


def refinement_loss(
    model: nn.Module,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    weights: torch.Tensor,
    z: torch.Tensor,
    c: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """ONet's refinement objective at one point per face.

    With p = sum_k w_k v_k the face point, s = sigmoid(decode(p)), n = normalize(cross(v1 - v0,
    v2 - v1)) and t = normalize(-grad_p s): mean((s - threshold)^2) + 0.01 * mean(||n - t||^2).

    Args:
        model: has ``decode(p (1, F, 3), z, c)`` -> logits (1, F).
        vertices: (V, 3) float32, requires grad.
        faces: (F, 3) int64.
        weights: (F, 3) barycentric weights (rows sum to 1).
        z, c: (1, z_dim), (1, c_dim) codes.
        threshold: occupancy probability of the surface.

    Returns:
        scalar loss tensor (differentiable w.r.t. vertices).
    """
    corners = vertices[faces]
    points = (corners * weights[:, :, None]).sum(dim=1)
    face_normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1])
    face_normal = face_normal / (face_normal.norm(dim=1, keepdim=True) + _EPS)
    occupancy = torch.sigmoid(model.decode(points[None], z, c))[0]
    (grad,) = torch.autograd.grad(occupancy.sum(), points, create_graph=True)
    target = -grad / (grad.norm(dim=1, keepdim=True) + _EPS)
    loss_value = (occupancy - threshold).pow(2).mean()
    loss_normal = (face_normal - target).pow(2).sum(dim=1).mean()
    return loss_value + REFINE_NORMAL_WEIGHT * loss_normal


def simplify_mesh(mesh: TriMesh, n_faces: int) -> TriMesh:
    """Fast-Quadric-Mesh-Simplification (pyfqmr) to about ``n_faces`` faces, with ONet's
    libsimplify settings: aggressiveness 5, update every 5 of at most 100 iterations, and its
    border rule (an edge between a border and an inner vertex is kept)."""
    simplifier = pyfqmr.Simplify()
    simplifier.setMesh(np.ascontiguousarray(mesh.vertices, np.float64), mesh.faces.astype(np.int32))
    simplifier.simplify_mesh(
        target_count=int(n_faces),
        aggressiveness=SIMPLIFY_AGGRESSIVENESS,
        preserve_border=False,
        verbose=False,
    )
    vertices, faces, _ = simplifier.getMesh()
    return TriMesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")
