// CUDA binding of sample_farthest_points: tensors in, plain pointers to the launcher in fps.cu.
// Compiled only in CUDA builds (WITH_CUDA), so CPU-only torch never needs CUDA headers.
#ifdef WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "fps/fps.h"

namespace geomkit {
namespace {

at::Tensor sample_farthest_points_cuda(const at::Tensor& points, const at::Tensor& lengths,
                                       const at::Tensor& K, const at::Tensor& start_idxs) {
  TORCH_CHECK(points.dim() == 3, "sample_farthest_points: points must be (N, P, D)");
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "sample_farthest_points: CUDA kernel takes float32 or float64");
  const int64_t N = points.size(0), P = points.size(1), D = points.size(2);
  for (const auto& t : {lengths, K, start_idxs}) {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == N,
                "sample_farthest_points: lengths, K and start_idxs must be (N,)");
  }
  c10::cuda::CUDAGuard guard(points.device());
  const auto pts = points.contiguous();
  const auto l = lengths.to(points.device(), at::kLong).contiguous();
  const auto k = K.to(points.device(), at::kLong).contiguous();
  const auto s = start_idxs.to(points.device(), at::kLong).contiguous();
  // The output width needs max K on the host; the same sync checks the arguments' ranges.
  const int64_t max_K = N > 0 ? k.max().item<int64_t>() : 0;
  if (N > 0) {
    const bool bad = ((l < 0) | (l > P) | (k < 0) | ((l > 0) & ((s < 0) | (s >= l))))
                         .any()
                         .item<bool>();
    TORCH_CHECK(!bad,
                "sample_farthest_points: need 0 <= lengths <= P, K >= 0 and "
                "0 <= start_idxs < lengths");
  }
  auto idx = at::full({N, max_K}, -1, l.options());
  if (N > 0 && P > 0 && max_K > 0) {
    auto min_dists = at::empty({N, P}, pts.options());
    fps_cuda_launch(pts.data_ptr(), l.data_ptr<int64_t>(), k.data_ptr<int64_t>(),
                    s.data_ptr<int64_t>(), N, P, D, max_K, pts.scalar_type() == at::kDouble,
                    min_dists.data_ptr(), idx.data_ptr<int64_t>(),
                    c10::cuda::getCurrentCUDAStream().stream());
    const char* error = fps_cuda_last_error();
    TORCH_CHECK(error == nullptr, "sample_farthest_points CUDA launch failed: ", error);
  }
  return idx;
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CUDA, m) {
  m.impl("sample_farthest_points", &sample_farthest_points_cuda);
}

}  // namespace geomkit
#endif  // WITH_CUDA
