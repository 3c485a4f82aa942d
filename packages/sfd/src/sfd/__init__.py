"""Structure from Duplicates (Cheng et al., NeurIPS 2023) on modern PyTorch: inverse rendering
(geometry, visibility, material and lighting) from one image of many identical objects."""
