// CUDA binding of rasterize_triangles: tensors in, plain pointers to the launcher in
// rasterize.cu. Compiled only in CUDA builds (WITH_CUDA), so CPU-only torch never needs CUDA
// headers.
#ifdef WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "rasterize/rasterize.h"

namespace geomkit {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_triangles_cuda(const at::Tensor& verts,
                                                                      const at::Tensor& faces,
                                                                      int64_t height,
                                                                      int64_t width,
                                                                      double znear) {
  TORCH_CHECK(verts.dim() == 3 && verts.size(2) == 3,
              "rasterize_triangles: verts_screen must be (N, V, 3)");
  TORCH_CHECK(verts.scalar_type() == at::kFloat || verts.scalar_type() == at::kDouble,
              "rasterize_triangles: verts_screen must be float32 or float64");
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3 && faces.scalar_type() == at::kLong,
              "rasterize_triangles: faces must be (F, 3) int64");
  TORCH_CHECK(faces.device() == verts.device(),
              "rasterize_triangles: faces and verts_screen must be on the same device");
  TORCH_CHECK(faces.size(0) < raster::kMaxFaces, "rasterize_triangles: at most 2^32 - 1 faces");
  TORCH_CHECK(height >= 0 && width >= 0, "rasterize_triangles: height and width must be >= 0");
  TORCH_CHECK(znear >= 0.0, "rasterize_triangles: znear must be >= 0");
  c10::cuda::CUDAGuard guard(verts.device());
  const auto v = verts.contiguous();
  const auto f = faces.contiguous();
  const int64_t N = v.size(0), V = v.size(1), F = f.size(0);
  auto face_idx = at::full({N, height, width}, -1, v.options().dtype(at::kLong));
  auto bary = at::empty({N, height, width, 3}, v.options());
  auto depth = at::empty({N, height, width}, v.options());
  rasterize_cuda_launch(v.data_ptr(), f.data_ptr<int64_t>(), N, V, F, height, width, znear,
                        v.scalar_type() == at::kDouble, face_idx.data_ptr<int64_t>(),
                        bary.data_ptr(), depth.data_ptr(),
                        c10::cuda::getCurrentCUDAStream().stream());
  const char* error = rasterize_cuda_last_error();
  TORCH_CHECK(error == nullptr, "rasterize_triangles CUDA launch failed: ", error);
  return {face_idx, bary, depth};
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CUDA, m) {
  m.impl("rasterize_triangles", &rasterize_triangles_cuda);
}

}  // namespace geomkit
#endif  // WITH_CUDA
