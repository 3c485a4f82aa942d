"""Occupancy Networks (Mescheder et al., CVPR 2019), the authors' im2mesh ONet on modern
PyTorch: ``python -m onet.train``, ``onet.generate``, ``onet.eval_meshes``, ``onet.demo``,
``onet.build_dataset``."""

__version__ = "0.1.0"
