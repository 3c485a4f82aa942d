"""Dataset layouts the synthetic scenes are written in: NeRF (Blender ``transforms_*.json``),
IDR/VolSDF (``image/``, ``mask/``, ``cameras.npz``) and COLMAP (model + images); CO3D v2
(:mod:`geomkit.synth.layouts.co3d`: categories of sequences, for numcc's reader)."""

from geomkit.synth.layouts.colmap import write_colmap
from geomkit.synth.layouts.common import write_ground_truth
from geomkit.synth.layouts.nerf import write_nerf
from geomkit.synth.layouts.volsdf import volsdf_scale_mat, write_volsdf

LAYOUTS = ("nerf", "volsdf", "colmap")

__all__ = [
    "LAYOUTS",
    "volsdf_scale_mat",
    "write_colmap",
    "write_ground_truth",
    "write_nerf",
    "write_volsdf",
]
