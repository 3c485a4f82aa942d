// CUDA binding of ball_query: tensors in, plain pointers to the launcher in ball_query.cu.
// Compiled only in CUDA builds (WITH_CUDA), so CPU-only torch never needs CUDA headers.
#ifdef WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ball_query/ball_query.h"

namespace geomkit {
namespace {

std::tuple<at::Tensor, at::Tensor> ball_query_cuda(const at::Tensor& p1, const at::Tensor& p2,
                                                   const at::Tensor& lengths1,
                                                   const at::Tensor& lengths2, int64_t K,
                                                   double radius) {
  TORCH_CHECK(p1.dim() == 3 && p2.dim() == 3, "ball_query: p1 and p2 must be (N, P, D)");
  TORCH_CHECK(p1.size(0) == p2.size(0) && p1.size(2) == p2.size(2),
              "ball_query: p1 and p2 must agree in N and D");
  TORCH_CHECK(p1.scalar_type() == p2.scalar_type(), "ball_query: p1 and p2 dtypes differ");
  TORCH_CHECK(p1.scalar_type() == at::kFloat || p1.scalar_type() == at::kDouble,
              "ball_query: CUDA kernel takes float32 or float64");
  TORCH_CHECK(K >= 1, "ball_query: K must be >= 1");
  c10::cuda::CUDAGuard guard(p1.device());
  const auto a = p1.contiguous(), b = p2.contiguous();
  const auto l1 = lengths1.to(p1.device(), at::kLong).contiguous();
  const auto l2 = lengths2.to(p1.device(), at::kLong).contiguous();
  const int64_t N = a.size(0), P1 = a.size(1), P2 = b.size(1), D = a.size(2);
  auto dists = at::zeros({N, P1, K}, a.options());
  auto idx = at::full({N, P1, K}, -1, a.options().dtype(at::kLong));
  if (N > 0 && P1 > 0 && P2 > 0) {
    ball_query_cuda_launch(a.data_ptr(), b.data_ptr(), l1.data_ptr<int64_t>(),
                           l2.data_ptr<int64_t>(), N, P1, P2, D, K, radius,
                           a.scalar_type() == at::kDouble, dists.data_ptr(),
                           idx.data_ptr<int64_t>(), c10::cuda::getCurrentCUDAStream().stream());
    const char* error = ball_query_cuda_last_error();
    TORCH_CHECK(error == nullptr, "ball_query CUDA launch failed: ", error);
  }
  return {dists, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CUDA, m) { m.impl("ball_query", &ball_query_cuda); }

}  // namespace geomkit
#endif  // WITH_CUDA
