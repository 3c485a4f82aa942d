"""NPBG++ (Rakhimov et al., CVPR 2022) and NPBG: neural point-based rendering on geomkit."""
