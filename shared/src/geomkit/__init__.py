"""geomkit: cameras, rays, transforms, IO, meshes, metrics, checkpoints, kernels and the pieces
of SDF networks (geomkit.sdf) shared by the method packages (numcc, npbgpp, cocoinr, sfd, onet).

Submodules are imported on use (``from geomkit import cameras``); importing geomkit itself is
cheap and loads no kernels.
"""

__version__ = "0.1.0"
