// K nearest neighbours on CUDA: brute force, one thread per query, the points of the batch
// element staged through shared memory in tiles. The running top K lives in a per-thread
// array for K <= kLocalK and directly in the output row otherwise.
#include <cuda_runtime.h>

#include <cstdint>

#include "knn/knn.h"

namespace geomkit {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxTile = 256;
constexpr size_t kSharedBytes = 48 * 1024;
constexpr int kLocalK = 32;
constexpr int kLocalD = 4;

template <typename T>
__device__ __forceinline__ bool before(T d, int64_t j, T d_other, int64_t j_other) {
  return d < d_other || (d == d_other && j < j_other);
}

template <typename T>
__device__ __forceinline__ void push(T* dist, int64_t* idx, int64_t K, int64_t& count, T d,
                                     int64_t j) {
  if (count == K && !before(d, j, dist[K - 1], idx[K - 1])) return;
  int64_t pos = count == K ? K - 1 : count++;
  while (pos > 0 && before(d, j, dist[pos - 1], idx[pos - 1])) {
    dist[pos] = dist[pos - 1];
    idx[pos] = idx[pos - 1];
    --pos;
  }
  dist[pos] = d;
  idx[pos] = j;
}

// LOCAL: keep the top K in per-thread arrays (K <= kLocalK) or in the output row.
template <typename T, bool LOCAL>
__global__ void knn_kernel(const T* __restrict__ p1, const T* __restrict__ p2,
                           const int64_t* __restrict__ lengths1,
                           const int64_t* __restrict__ lengths2, int64_t N, int64_t P1,
                           int64_t P2, int64_t D, int64_t K, int64_t norm, int64_t tile_size,
                           T* dists, int64_t* idx) {
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
    T local_dist[LOCAL ? kLocalK : 1];
    int64_t local_idx[LOCAL ? kLocalK : 1];
    T* best_dist = LOCAL ? local_dist : dists + (n * P1 + i) * K;
    int64_t* best_idx = LOCAL ? local_idx : idx + (n * P1 + i) * K;
    int64_t count = 0;
    for (int64_t start = 0; start < n_pts; start += tile_size) {
      const int64_t in_tile = n_pts - start < tile_size ? n_pts - start : tile_size;
      __syncthreads();
      for (int64_t k = threadIdx.x; k < in_tile * D; k += blockDim.x) {
        tile[k] = p2[(n * P2 + start) * D + k];
      }
      __syncthreads();
      if (!active) continue;
      for (int64_t t = 0; t < in_tile; ++t) {
        T acc = 0;
        for (int64_t d = 0; d < D; ++d) {
          const T diff = (D <= kLocalD ? q_local[d] : q[d]) - tile[t * D + d];
          acc += norm == 2 ? diff * diff : (diff < 0 ? -diff : diff);
        }
        push(best_dist, best_idx, K, count, acc, start + t);
      }
    }
    if (LOCAL && active) {
      for (int64_t k = 0; k < count; ++k) {
        dists[(n * P1 + i) * K + k] = best_dist[k];
        idx[(n * P1 + i) * K + k] = best_idx[k];
      }
    }
  }
}

thread_local cudaError_t last_error = cudaSuccess;

template <typename T>
void launch(const T* p1, const T* p2, const int64_t* lengths1, const int64_t* lengths2,
            int64_t N, int64_t P1, int64_t P2, int64_t D, int64_t K, int64_t norm, T* dists,
            int64_t* idx, cudaStream_t stream) {
  const dim3 blocks(static_cast<unsigned>((P1 + kThreads - 1) / kThreads),
                    static_cast<unsigned>(N < 65535 ? N : 65535));
  const int64_t fit = static_cast<int64_t>(kSharedBytes / (sizeof(T) * D));
  const int64_t tile_size = fit < 1 ? 1 : (fit < kMaxTile ? fit : kMaxTile);
  const size_t shared = sizeof(T) * tile_size * D;
  if (K <= kLocalK) {
    knn_kernel<T, true><<<blocks, kThreads, shared, stream>>>(
        p1, p2, lengths1, lengths2, N, P1, P2, D, K, norm, tile_size, dists, idx);
  } else {
    knn_kernel<T, false><<<blocks, kThreads, shared, stream>>>(
        p1, p2, lengths1, lengths2, N, P1, P2, D, K, norm, tile_size, dists, idx);
  }
  last_error = cudaGetLastError();
}

}  // namespace

void knn_cuda_launch(const void* p1, const void* p2, const int64_t* lengths1,
                     const int64_t* lengths2, int64_t N, int64_t P1, int64_t P2, int64_t D,
                     int64_t K, int64_t norm, bool is_double, void* dists, int64_t* idx,
                     void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    launch(static_cast<const double*>(p1), static_cast<const double*>(p2), lengths1, lengths2, N,
           P1, P2, D, K, norm, static_cast<double*>(dists), idx, s);
  } else {
    launch(static_cast<const float*>(p1), static_cast<const float*>(p2), lengths1, lengths2, N,
           P1, P2, D, K, norm, static_cast<float*>(dists), idx, s);
  }
}

const char* knn_cuda_last_error() {
  return last_error == cudaSuccess ? nullptr : cudaGetErrorString(last_error);
}

}  // namespace geomkit
