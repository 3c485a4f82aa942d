// Iterative farthest point sampling: shared declarations.
//
// points (N, P, D) row-major; lengths, K, start_idxs (N,) int64; idx (N, max_K) int64. For each
// cloud n, k_n = min(K[n], lengths[n]) indices are written to idx[n, :k_n]: start_idxs[n] first,
// then at each step the valid point whose squared Euclidean distance to the selected set is the
// largest, ties to the lower index (as argmax). A selected point is at distance 0 from the set,
// so it comes again only once every valid point is at distance 0 (fewer distinct points than
// K[n]), as in PyTorch3D. idx[n, k_n:] is left as the caller filled it (-1).
//
// Distances accumulate coordinate by coordinate, d = 0 .. D-1, without fused multiply-adds, so
// the CPU and CUDA kernels and the pure-PyTorch reference compute identical values and pick the
// same points.
//
// Plain types only: fps.cu includes this header and compiles with nvcc alone.
#pragma once
#include <cstdint>

namespace geomkit {

// Launches the CUDA kernel on `stream` (a cudaStream_t passed as void*): float or double points
// according to `is_double`; min_dists is scratch of N * P elements of that type.
void fps_cuda_launch(const void* points, const int64_t* lengths, const int64_t* K,
                     const int64_t* start_idxs, int64_t N, int64_t P, int64_t D, int64_t max_K,
                     bool is_double, void* min_dists, int64_t* idx, void* stream);

// Returns the last CUDA error as text, or nullptr when there is none.
const char* fps_cuda_last_error();

}  // namespace geomkit
