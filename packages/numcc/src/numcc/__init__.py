"""NU-MCC and MCC: single-view RGB-D to coloured 3D points. In progress (issue #9): models and
checkpoints (numcc.models, numcc.checkpoints), Repulsive UDF (numcc.udf), data (numcc.data:
CO3D v2, Hypersim), metrics, training targets and optimiser, demo inputs; the entry points
(numcc.main, numcc.demo_web, numcc.demo_iphone) are not written yet."""
