// CUDA binding of splat_points: tensors in, plain pointers to the launcher in splat.cu.
// Compiled only in CUDA builds (WITH_CUDA), so CPU-only torch never needs CUDA headers.
#ifdef WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "splat/splat.h"

namespace geomkit {
namespace splat {
namespace {

std::tuple<at::Tensor, at::Tensor> splat_points_cuda(const at::Tensor& xy,
                                                     const at::Tensor& depth,
                                                     const at::Tensor& lengths, int64_t height,
                                                     int64_t width, double near) {
  TORCH_CHECK(xy.dim() == 3 && xy.size(2) == 2, "splat_points: xy must be (N, P, 2)");
  TORCH_CHECK(depth.dim() == 2 && depth.size(0) == xy.size(0) && depth.size(1) == xy.size(1),
              "splat_points: depth must be (N, P) matching xy");
  TORCH_CHECK(xy.scalar_type() == depth.scalar_type(), "splat_points: xy and depth dtypes differ");
  TORCH_CHECK(xy.scalar_type() == at::kFloat || xy.scalar_type() == at::kDouble,
              "splat_points: kernel takes float32 or float64");
  TORCH_CHECK(lengths.numel() == xy.size(0), "splat_points: lengths must have N entries");
  TORCH_CHECK(height >= 0 && width >= 0, "splat_points: height and width must be >= 0");
  TORCH_CHECK(near >= 0, "splat_points: near must be >= 0");
  TORCH_CHECK(xy.size(1) < kMaxPoints, "splat_points: at most 2^32 - 1 points per batch element");
  c10::cuda::CUDAGuard guard(xy.device());
  const auto points = xy.contiguous(), depths = depth.to(xy.device()).contiguous();
  const auto counts = lengths.to(xy.device(), at::kLong).contiguous();
  const int64_t N = points.size(0), P = points.size(1);
  const bool is_double = points.scalar_type() == at::kDouble;
  auto index = at::full({N, height, width}, kEmpty, points.options().dtype(at::kLong));
  auto depth_out = at::empty({N, height, width}, depths.options());
  auto depth_keys = is_double ? at::full({N, height, width}, kEmpty, index.options())
                              : at::empty({0}, index.options());
  if (N * height * width > 0) {
    splat_cuda_launch(points.data_ptr(), depths.data_ptr(), counts.data_ptr<int64_t>(), N, P,
                      height, width, near, is_double, index.data_ptr<int64_t>(),
                      depth_out.data_ptr(), is_double ? depth_keys.data_ptr<int64_t>() : nullptr,
                      c10::cuda::getCurrentCUDAStream().stream());
    const char* error = splat_cuda_last_error();
    TORCH_CHECK(error == nullptr, "splat_points CUDA launch failed: ", error);
  }
  return {index, depth_out};
}

}  // namespace
}  // namespace splat

TORCH_LIBRARY_IMPL(geomkit, CUDA, m) { m.impl("splat_points", &splat::splat_points_cuda); }

}  // namespace geomkit
#endif  // WITH_CUDA
