"""NU-MCC (Lionar et al., NeurIPS 2023) and its baseline MCC (Wu et al., CVPR 2023): one RGB-D
view to a coloured point cloud. Entry points: ``numcc.main`` (train, --run_val, --run_viz),
``numcc.demo_web``, ``numcc.demo_iphone``, ``numcc.prepare_hypersim``, ``numcc.synthetic``
(a generated CO3D-layout dataset). Models and the authors' checkpoints: numcc.models,
numcc.checkpoints; Repulsive UDF: numcc.udf; data: numcc.data (CO3D v2, Hypersim)."""
