// CUDA binding of knn_points: tensors in, plain pointers to the launcher in knn.cu.
// Compiled only in CUDA builds (WITH_CUDA), so CPU-only torch never needs CUDA headers.
#ifdef WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "knn/knn.h"

namespace geomkit {
namespace {

std::tuple<at::Tensor, at::Tensor> knn_points_cuda(const at::Tensor& p1, const at::Tensor& p2,
                                                   const at::Tensor& lengths1,
                                                   const at::Tensor& lengths2, int64_t K,
                                                   int64_t norm) {
  TORCH_CHECK(p1.dim() == 3 && p2.dim() == 3, "knn_points: p1 and p2 must be (N, P, D)");
  TORCH_CHECK(p1.size(0) == p2.size(0) && p1.size(2) == p2.size(2),
              "knn_points: p1 and p2 must agree in N and D");
  TORCH_CHECK(p1.scalar_type() == p2.scalar_type(), "knn_points: p1 and p2 dtypes differ");
  TORCH_CHECK(p1.scalar_type() == at::kFloat || p1.scalar_type() == at::kDouble,
              "knn_points: CUDA kernel takes float32 or float64");
  TORCH_CHECK(K >= 1 && (norm == 1 || norm == 2), "knn_points: K >= 1 and norm in {1, 2}");
  c10::cuda::CUDAGuard guard(p1.device());
  const auto a = p1.contiguous(), b = p2.contiguous();
  const auto l1 = lengths1.to(p1.device(), at::kLong).contiguous();
  const auto l2 = lengths2.to(p1.device(), at::kLong).contiguous();
  const int64_t N = a.size(0), P1 = a.size(1), P2 = b.size(1), D = a.size(2);
  auto dists = at::zeros({N, P1, K}, a.options());
  auto idx = at::zeros({N, P1, K}, a.options().dtype(at::kLong));
  if (N > 0 && P1 > 0 && P2 > 0) {
    knn_cuda_launch(a.data_ptr(), b.data_ptr(), l1.data_ptr<int64_t>(), l2.data_ptr<int64_t>(),
                    N, P1, P2, D, K, norm, a.scalar_type() == at::kDouble, dists.data_ptr(),
                    idx.data_ptr<int64_t>(), c10::cuda::getCurrentCUDAStream().stream());
    const char* error = knn_cuda_last_error();
    TORCH_CHECK(error == nullptr, "knn_points CUDA launch failed: ", error);
  }
  return {dists, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CUDA, m) { m.impl("knn_points", &knn_points_cuda); }

}  // namespace geomkit
#endif  // WITH_CUDA
