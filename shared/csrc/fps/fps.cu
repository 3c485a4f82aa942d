// Iterative farthest point sampling on CUDA: one block per cloud. Thread t owns the points
// t, t + blockDim.x, ... and keeps their squared distances to the selected set in min_dists; a
// step updates them with the point selected last and finds the farthest point with a block-wide
// argmax (warp shuffles, then one warp over the warps' winners), ties to the lower index.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "fps/fps.h"

namespace geomkit {
namespace {

constexpr int kMaxThreads = 1024;
constexpr int kWarp = 32;
constexpr int64_t kNoIndex = INT64_MAX;

// Rounded separately (never fused into a multiply-add), so distances equal the CPU kernel's.
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// Keeps the larger distance, ties to the lower index.
template <typename T>
__device__ __forceinline__ void keep_farther(T& value, int64_t& index, T other_value,
                                             int64_t other_index) {
  if (other_value > value || (other_value == value && other_index < index)) {
    value = other_value;
    index = other_index;
  }
}

// After the call, lane 0 holds the farthest of the warp's 32 candidates.
template <typename T>
__device__ __forceinline__ void warp_farthest(T& value, int64_t& index) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T other_value = __shfl_down_sync(0xffffffffu, value, offset);
    const int64_t other_index = __shfl_down_sync(0xffffffffu, index, offset);
    keep_farther(value, index, other_value, other_index);
  }
}

// blockDim.x is a multiple of kWarp and at most kMaxThreads.
template <typename T>
__global__ void fps_kernel(const T* __restrict__ points, const int64_t* __restrict__ lengths,
                           const int64_t* __restrict__ K, const int64_t* __restrict__ start_idxs,
                           int64_t P, int64_t D, int64_t max_K, T* __restrict__ min_dists,
                           int64_t* __restrict__ idx) {
  __shared__ T warp_value[kMaxThreads / kWarp];
  __shared__ int64_t warp_index[kMaxThreads / kWarp];
  __shared__ int64_t selected_shared;
  const int64_t n = blockIdx.x;
  const int64_t count = lengths[n];
  const int64_t k_n = K[n] < count ? K[n] : count;
  if (k_n <= 0) return;  // the same for the whole block
  const T* pts = points + n * P * D;
  T* dist = min_dists + n * P;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int n_warps = blockDim.x / kWarp;
  for (int64_t p = threadIdx.x; p < count; p += blockDim.x) dist[p] = T(INFINITY);
  int64_t selected = start_idxs[n];
  if (threadIdx.x == 0) idx[n * max_K] = selected;
  for (int64_t k = 1; k < k_n; ++k) {
    const T* q = pts + selected * D;
    T best = T(-1);
    int64_t best_index = kNoIndex;
    for (int64_t p = threadIdx.x; p < count; p += blockDim.x) {
      T acc = T(0);
      for (int64_t d = 0; d < D; ++d) {
        const T diff = sub_rn(q[d], pts[p * D + d]);
        acc = add_rn(acc, mul_rn(diff, diff));
      }
      T m = dist[p];
      if (acc < m) {
        m = acc;
        dist[p] = m;
      }
      if (m > best) {  // p increases: the first of equal distances stays
        best = m;
        best_index = p;
      }
    }
    warp_farthest(best, best_index);
    if (lane == 0) {
      warp_value[warp] = best;
      warp_index[warp] = best_index;
    }
    __syncthreads();
    if (warp == 0) {
      best = lane < n_warps ? warp_value[lane] : T(-1);
      best_index = lane < n_warps ? warp_index[lane] : kNoIndex;
      warp_farthest(best, best_index);
      if (lane == 0) {
        // No candidate only when every distance is NaN; index 0 as on the CPU.
        const int64_t chosen = best_index < count ? best_index : 0;
        selected_shared = chosen;
        idx[n * max_K + k] = chosen;
      }
    }
    __syncthreads();
    selected = selected_shared;
  }
}

thread_local cudaError_t last_error = cudaSuccess;

template <typename T>
void launch(const T* points, const int64_t* lengths, const int64_t* K, const int64_t* start_idxs,
            int64_t N, int64_t P, int64_t D, int64_t max_K, T* min_dists, int64_t* idx,
            cudaStream_t stream) {
  const int64_t rounded = (P + kWarp - 1) / kWarp * kWarp;
  const int threads = static_cast<int>(rounded < kWarp ? kWarp
                                                       : (rounded > kMaxThreads ? kMaxThreads
                                                                                : rounded));
  fps_kernel<T><<<static_cast<unsigned>(N), threads, 0, stream>>>(
      points, lengths, K, start_idxs, P, D, max_K, min_dists, idx);
  last_error = cudaGetLastError();
}

}  // namespace

void fps_cuda_launch(const void* points, const int64_t* lengths, const int64_t* K,
                     const int64_t* start_idxs, int64_t N, int64_t P, int64_t D, int64_t max_K,
                     bool is_double, void* min_dists, int64_t* idx, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    launch(static_cast<const double*>(points), lengths, K, start_idxs, N, P, D, max_K,
           static_cast<double*>(min_dists), idx, s);
  } else {
    launch(static_cast<const float*>(points), lengths, K, start_idxs, N, P, D, max_K,
           static_cast<float*>(min_dists), idx, s);
  }
}

const char* fps_cuda_last_error() {
  return last_error == cudaSuccess ? nullptr : cudaGetErrorString(last_error);
}

}  // namespace geomkit
