"""Synthetic scenes with exact cameras and known surfaces, in the dataset layouts the method
packages read. ``python -m geomkit.synth --help`` for the command line.

Shapes (geomkit.synth.shapes) are SDF families meshed by marching cubes, or mesh files; they
are rendered (geomkit.render) from camera paths (geomkit.synth.camera_paths) into Views
(geomkit.synth.scene) and written by geomkit.synth.layouts. geomkit.synth.pile puts N copies
of one shape into a single image (Structure from Duplicates).
"""

from geomkit.synth.camera_paths import camera_path, fibonacci_sphere, look_at_c2w_opengl
from geomkit.synth.generate import cached_scene, generate_scene, shape_from_name
from geomkit.synth.pile import Pile, cached_pile, make_pile, pile_cameras, read_pile
from geomkit.synth.scene import DEPTH_SCALE, Views, render_views
from geomkit.synth.shapes import FAMILIES, Shape, make_shape, mesh_shape

__all__ = [
    "DEPTH_SCALE",
    "FAMILIES",
    "Pile",
    "Shape",
    "Views",
    "cached_pile",
    "cached_scene",
    "camera_path",
    "fibonacci_sphere",
    "generate_scene",
    "look_at_c2w_opengl",
    "make_pile",
    "make_shape",
    "mesh_shape",
    "pile_cameras",
    "read_pile",
    "render_views",
    "shape_from_name",
]
