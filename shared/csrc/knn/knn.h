// K nearest neighbours between padded point batches: shared declarations.
//
// p1 (N, P1, D), p2 (N, P2, D) row-major; lengths1/lengths2 (N,) give the valid rows of each
// batch element. For every valid p1[n, i] the K closest valid p2[n, j] are written to
// dists/idx (N, P1, K), nearest first, ties to the lower index; norm 2 gives squared Euclidean
// distances, norm 1 Manhattan distances. Entries beyond lengths2[n] (K > lengths2[n]) and rows
// beyond lengths1[n] are left as the caller filled them (zeros, as PyTorch3D pads).
//
// Plain types only: knn.cu includes this header and compiles with nvcc alone.
#pragma once
#include <cstdint>

namespace geomkit {

// Launches the CUDA kernel on `stream` (a cudaStream_t passed as void*). float or double
// inputs according to `is_double`.
void knn_cuda_launch(const void* p1, const void* p2, const int64_t* lengths1,
                     const int64_t* lengths2, int64_t N, int64_t P1, int64_t P2, int64_t D,
                     int64_t K, int64_t norm, bool is_double, void* dists, int64_t* idx,
                     void* stream);

// Returns the last CUDA error as text, or nullptr when there is none.
const char* knn_cuda_last_error();

}  // namespace geomkit
