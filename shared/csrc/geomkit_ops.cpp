// Schemas of every geomkit op, in one place. Implementations register per device in their
// own files (TORCH_LIBRARY_IMPL); autograd formulas are attached from Python.
#include <torch/library.h>

TORCH_LIBRARY(geomkit, m) {
  m.def(
      "knn_points(Tensor p1, Tensor p2, Tensor lengths1, Tensor lengths2, int K, int norm) "
      "-> (Tensor dists, Tensor idx)");
}
