// Ball query between padded point batches: shared declarations.
//
// p1 (N, P1, D), p2 (N, P2, D) row-major; lengths1/lengths2 (N,) give the valid rows of each
// batch element. For every valid p1[n, i], the first K valid points p2[n, j] in index order with
// squared Euclidean distance < radius2 (strictly) are written to idx/dists (N, P1, K), lowest
// index first. radius2 is radius * radius rounded in the points' type, as PyTorch3D computes it
// for float32. Slots with no such point, and rows beyond lengths1[n], are left as the caller
// filled them (dists 0, idx -1, as PyTorch3D pads).
//
// Distances accumulate coordinate by coordinate, d = 0 .. D-1, without fused multiply-adds, so
// the kernels and the pure-PyTorch reference agree on which points lie inside.
//
// Plain types only: ball_query.cu includes this header and compiles with nvcc alone.
#pragma once
#include <cstdint>

namespace geomkit {

// Launches the CUDA kernel on `stream` (a cudaStream_t passed as void*): float or double
// inputs according to `is_double`.
void ball_query_cuda_launch(const void* p1, const void* p2, const int64_t* lengths1,
                            const int64_t* lengths2, int64_t N, int64_t P1, int64_t P2, int64_t D,
                            int64_t K, double radius, bool is_double, void* dists, int64_t* idx,
                            void* stream);

// Returns the last CUDA error as text, or nullptr when there is none.
const char* ball_query_cuda_last_error();

}  // namespace geomkit
