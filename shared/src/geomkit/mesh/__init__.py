"""Triangle meshes (geomkit.structures.TriMesh): marching cubes, surface sampling, ONet's
inside test (its IoU), unit-box normalisation, watertightness / orientation checks, and the
largest connected component."""

from __future__ import annotations

from geomkit.mesh.inside import ContainsResult, contains, contains_with_agreement
from geomkit.mesh.isosurface import marching_cubes
from geomkit.mesh.normalize import denormalize, normalize_to_unit_box
from geomkit.mesh.sampling import sample_surface
from geomkit.mesh.topology import (
    is_watertight,
    largest_component,
    merge_duplicate_vertices,
    signed_volume,
)

__all__ = [
    "ContainsResult",
    "contains",
    "contains_with_agreement",
    "denormalize",
    "is_watertight",
    "largest_component",
    "marching_cubes",
    "merge_duplicate_vertices",
    "normalize_to_unit_box",
    "sample_surface",
    "signed_volume",
]
