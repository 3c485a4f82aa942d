// Schemas of every geomkit op, in one place. Implementations register per device in their
// own folders (TORCH_LIBRARY_IMPL); autograd formulas are attached from Python.
#include <torch/library.h>

TORCH_LIBRARY(geomkit, m) {
  // K nearest neighbours (csrc/knn): squared Euclidean (norm 2) or Manhattan (norm 1).
  m.def(
      "knn_points(Tensor p1, Tensor p2, Tensor lengths1, Tensor lengths2, int K, int norm) "
      "-> (Tensor dists, Tensor idx)");
  // Iterative farthest point sampling (csrc/fps): K (N,) points per cloud from start_idxs (N,).
  m.def(
      "sample_farthest_points(Tensor points, Tensor lengths, Tensor K, Tensor start_idxs) "
      "-> Tensor idx");
  // Up to K points of p2 within `radius` of each p1 point, lowest indices first (csrc/ball_query).
  m.def(
      "ball_query(Tensor p1, Tensor p2, Tensor lengths1, Tensor lengths2, int K, float radius) "
      "-> (Tensor dists, Tensor idx)");
  // Z-buffer of screen-space triangles (csrc/rasterize): one mesh, N views.
  m.def(
      "rasterize_triangles(Tensor verts_screen, Tensor faces, int height, int width, float znear) "
      "-> (Tensor face_idx, Tensor bary, Tensor depth)");
  // Nearest point per pixel, one pixel per point (csrc/splat).
  m.def(
      "splat_points(Tensor xy, Tensor depth, Tensor lengths, int height, int width, float near) "
      "-> (Tensor index, Tensor depth)");
}
