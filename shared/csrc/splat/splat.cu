// Point splatting on CUDA: one thread per point reduces the per-pixel keys of splat.h with
// atomicMin (float32: one pass on packed keys; float64: minimum depth bits, then minimum
// index at that depth), then one thread per pixel decodes keys into point indices and depths.
// The rules (pixel_of, keys) are splat.h's, shared with the CPU kernel, so both devices give
// the same result whatever order the atomics run in.
#include <cuda_runtime.h>

#include <cstdint>

#include "splat/splat.h"

namespace geomkit {
namespace splat {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__device__ __forceinline__ void atomic_min(int64_t* slot, int64_t key) {
  atomicMin(reinterpret_cast<long long*>(slot), static_cast<long long>(key));
}

// Flat pixel in the batch of point `flat` (= n * P + i), or -1 where it is skipped.
template <typename T>
__device__ __forceinline__ int64_t batch_pixel(const T* xy, const T* depth,
                                               const int64_t* lengths, int64_t flat, int64_t P,
                                               const Frame<T>& frame) {
  const int64_t n = flat / P, i = flat % P;
  if (i >= lengths[n]) return -1;
  const int64_t pixel = pixel_of(xy[2 * flat], xy[2 * flat + 1], depth[flat], frame);
  return pixel < 0 ? -1 : n * frame.height * frame.width + pixel;
}

__global__ void reduce_packed_kernel(const float* __restrict__ xy,
                                     const float* __restrict__ depth,
                                     const int64_t* __restrict__ lengths, int64_t N, int64_t P,
                                     Frame<float> frame, int64_t* index) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t flat = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; flat < N * P;
       flat += stride) {
    const int64_t pixel = batch_pixel(xy, depth, lengths, flat, P, frame);
    if (pixel >= 0) atomic_min(index + pixel, packed_key(depth[flat], flat % P));
  }
}

// Pass 1 (INDEX_PASS false): minimum depth bits per pixel into depth_keys. Pass 2: the lowest
// point index among the points at that depth into index.
template <bool INDEX_PASS>
__global__ void reduce_double_kernel(const double* __restrict__ xy,
                                     const double* __restrict__ depth,
                                     const int64_t* __restrict__ lengths, int64_t N, int64_t P,
                                     Frame<double> frame, int64_t* depth_keys, int64_t* index) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t flat = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; flat < N * P;
       flat += stride) {
    const int64_t pixel = batch_pixel(xy, depth, lengths, flat, P, frame);
    if (pixel < 0) continue;
    const int64_t bits = bits_of(depth[flat]);
    if (!INDEX_PASS) {
      atomic_min(depth_keys + pixel, bits);
    } else if (bits == depth_keys[pixel]) {
      atomic_min(index + pixel, flat % P);
    }
  }
}

// Keys to results: kEmpty -> -1 in index and depth_out, else the point index (the key's low 32
// bits) and the depth its high bits hold.
__global__ void finish_packed_kernel(int64_t count, int64_t* index, float* depth_out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count;
       k += stride) {
    const int64_t key = index[k];
    const bool empty = key == kEmpty;
    index[k] = empty ? -1 : key & kIndexMask;
    depth_out[k] = empty ? -1.0f : packed_depth(key);
  }
}

// index holds the winners (kEmpty where none), depth_keys their depth bits.
__global__ void finish_double_kernel(int64_t count, const int64_t* __restrict__ depth_keys,
                                     int64_t* index, double* depth_out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count;
       k += stride) {
    const bool empty = index[k] == kEmpty;
    if (empty) index[k] = -1;
    depth_out[k] = empty ? -1.0 : from_bits<double>(depth_keys[k]);
  }
}

unsigned blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

thread_local cudaError_t last_error = cudaSuccess;

}  // namespace

void splat_cuda_launch(const void* xy, const void* depth, const int64_t* lengths, int64_t N,
                       int64_t P, int64_t height, int64_t width, double near, bool is_double,
                       int64_t* index, void* depth_out, int64_t* depth_keys, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned point_blocks = blocks_for(N * P);
  const unsigned pixel_blocks = blocks_for(N * height * width);
  if (is_double) {
    const auto* p = static_cast<const double*>(xy);
    const auto* d = static_cast<const double*>(depth);
    const auto frame = make_frame<double>(height, width, near);
    reduce_double_kernel<false>
        <<<point_blocks, kThreads, 0, s>>>(p, d, lengths, N, P, frame, depth_keys, index);
    reduce_double_kernel<true>
        <<<point_blocks, kThreads, 0, s>>>(p, d, lengths, N, P, frame, depth_keys, index);
    finish_double_kernel<<<pixel_blocks, kThreads, 0, s>>>(
        N * height * width, depth_keys, index, static_cast<double*>(depth_out));
  } else {
    const auto* p = static_cast<const float*>(xy);
    const auto* d = static_cast<const float*>(depth);
    reduce_packed_kernel<<<point_blocks, kThreads, 0, s>>>(
        p, d, lengths, N, P, make_frame<float>(height, width, near), index);
    finish_packed_kernel<<<pixel_blocks, kThreads, 0, s>>>(N * height * width, index,
                                                           static_cast<float*>(depth_out));
  }
  last_error = cudaGetLastError();
}

const char* splat_cuda_last_error() {
  return last_error == cudaSuccess ? nullptr : cudaGetErrorString(last_error);
}

}  // namespace splat
}  // namespace geomkit
