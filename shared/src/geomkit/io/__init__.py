"""Reading and writing geometry, images and arrays, with checks that name the bad file.

Readers raise :class:`geomkit.errors.InputError` naming the file and what is wrong; writers
replace their target atomically (refusing to overwrite is the entry points' job, see
:func:`check_can_write`).
"""

from __future__ import annotations

from geomkit.io.arrays import load_json, load_npz, save_json, save_npz
from geomkit.io.files import (
    atomic_path,
    atomic_write,
    check_can_write,
    prepare_output_dir,
    require_dir,
    require_file,
)
from geomkit.io.images import (
    read_depth_png,
    read_exr,
    read_image,
    read_mask,
    write_depth_png,
    write_exr,
    write_image,
)
from geomkit.io.meshes import (
    read_geometry,
    read_mesh,
    read_obj,
    read_off,
    read_point_cloud,
    write_obj,
    write_off,
)
from geomkit.io.ply import fan_triangulate, read_ply, write_ply

__all__ = [
    "atomic_path",
    "atomic_write",
    "check_can_write",
    "fan_triangulate",
    "load_json",
    "load_npz",
    "prepare_output_dir",
    "read_depth_png",
    "read_exr",
    "read_geometry",
    "read_image",
    "read_mask",
    "read_mesh",
    "read_obj",
    "read_off",
    "read_ply",
    "read_point_cloud",
    "require_dir",
    "require_file",
    "save_json",
    "save_npz",
    "write_depth_png",
    "write_exr",
    "write_image",
    "write_obj",
    "write_off",
    "write_ply",
]
