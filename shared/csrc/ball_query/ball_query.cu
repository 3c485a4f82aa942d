// Ball query on CUDA: brute force, one thread per query, scanning p2 in index order through
// shared-memory tiles. A thread stops recording at K points; the block stops loading tiles once
// all of its queries have K points.
#include <cuda_runtime.h>

#include <cstdint>

#include "ball_query/ball_query.h"

namespace geomkit {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxTile = 256;
constexpr size_t kSharedBytes = 48 * 1024;
constexpr int kLocalD = 4;

// Rounded separately (never fused into a multiply-add), so distances equal the CPU kernel's.
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

template <typename T>
__global__ void ball_query_kernel(const T* __restrict__ p1, const T* __restrict__ p2,
                                  const int64_t* __restrict__ lengths1,
                                  const int64_t* __restrict__ lengths2, int64_t N, int64_t P1,
                                  int64_t P2, int64_t D, int64_t K, T radius2, int64_t tile_size,
                                  T* __restrict__ dists, int64_t* __restrict__ idx) {
  extern __shared__ unsigned char shared_raw[];
  T* tile = reinterpret_cast<T*>(shared_raw);
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const bool active = i < lengths1[n];
    const int64_t n_pts = lengths2[n];
    const T* q = p1 + (n * P1 + i) * D;
    T q_local[kLocalD];
    if (active && D <= kLocalD) {
      for (int64_t d = 0; d < D; ++d) q_local[d] = q[d];
    }
    T* row_dists = dists + (n * P1 + i) * K;
    int64_t* row_idx = idx + (n * P1 + i) * K;
    int64_t count = 0;
    for (int64_t start = 0; start < n_pts; start += tile_size) {
      // Also the barrier before the tile is overwritten; the answer is the same in every thread.
      if (!__syncthreads_or(active && count < K)) break;
      const int64_t in_tile = n_pts - start < tile_size ? n_pts - start : tile_size;
      for (int64_t k = threadIdx.x; k < in_tile * D; k += blockDim.x) {
        tile[k] = p2[(n * P2 + start) * D + k];
      }
      __syncthreads();
      if (!active) continue;
      for (int64_t t = 0; t < in_tile && count < K; ++t) {
        T acc = T(0);
        for (int64_t d = 0; d < D; ++d) {
          const T diff = sub_rn(D <= kLocalD ? q_local[d] : q[d], tile[t * D + d]);
          acc = add_rn(acc, mul_rn(diff, diff));
        }
        if (acc < radius2) {
          row_dists[count] = acc;
          row_idx[count] = start + t;
          ++count;
        }
      }
    }
  }
}

thread_local cudaError_t last_error = cudaSuccess;

template <typename T>
void launch(const T* p1, const T* p2, const int64_t* lengths1, const int64_t* lengths2,
            int64_t N, int64_t P1, int64_t P2, int64_t D, int64_t K, double radius, T* dists,
            int64_t* idx, cudaStream_t stream) {
  const dim3 blocks(static_cast<unsigned>((P1 + kThreads - 1) / kThreads),
                    static_cast<unsigned>(N < 65535 ? N : 65535));
  const int64_t fit = static_cast<int64_t>(kSharedBytes / (sizeof(T) * D));
  const int64_t tile_size = fit < 1 ? 1 : (fit < kMaxTile ? fit : kMaxTile);
  const size_t shared = sizeof(T) * tile_size * D;
  // radius * radius rounded in T, as the CPU kernel and the reference compute it.
  const T r = static_cast<T>(radius);
  const T radius2 = r * r;
  ball_query_kernel<T><<<blocks, kThreads, shared, stream>>>(
      p1, p2, lengths1, lengths2, N, P1, P2, D, K, radius2, tile_size, dists, idx);
  last_error = cudaGetLastError();
}

}  // namespace

void ball_query_cuda_launch(const void* p1, const void* p2, const int64_t* lengths1,
                            const int64_t* lengths2, int64_t N, int64_t P1, int64_t P2, int64_t D,
                            int64_t K, double radius, bool is_double, void* dists, int64_t* idx,
                            void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    launch(static_cast<const double*>(p1), static_cast<const double*>(p2), lengths1, lengths2, N,
           P1, P2, D, K, radius, static_cast<double*>(dists), idx, s);
  } else {
    launch(static_cast<const float*>(p1), static_cast<const float*>(p2), lengths1, lengths2, N,
           P1, P2, D, K, radius, static_cast<float*>(dists), idx, s);
  }
}

const char* ball_query_cuda_last_error() {
  return last_error == cudaSuccess ? nullptr : cudaGetErrorString(last_error);
}

}  // namespace geomkit
