// Triangle rasterization on CUDA, in the two passes of the CPU kernel: atomicMin of 64-bit
// z-buffer keys over each face's pixel box, then one thread per pixel resolves the winner. In
// pass 1 each thread sets up one (view, face) and draws it alone when its box is small; larger
// boxes (a floor, a close-up) are queued in shared memory and drawn by the whole block, so that
// one big triangle does not serialise on one thread. Keys live in the face_idx output; the
// arithmetic is rasterize.h's, with explicitly rounded double operations, so results equal the
// CPU's.
#include <cuda_runtime.h>

#include <cstdint>

#include "rasterize/rasterize.h"

namespace geomkit {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;
// Faces whose pixel box holds more pixels than this are drawn by the whole block.
constexpr int64_t kMaxPixelsPerThread = 64;

__device__ __forceinline__ void draw_pixel(const raster::Face& face, int64_t f, int64_t i,
                                           int64_t j, int64_t W, unsigned long long* keys) {
  raster::Sample s;
  if (raster::sample_face(face, static_cast<double>(j) + 0.5, static_cast<double>(i) + 0.5, s)) {
    atomicMin(keys + i * W + j, static_cast<unsigned long long>(raster::depth_key(s.depth, f)));
  }
}

// Task = n * F + f. The block's threads run through the same loop iterations, so the
// __syncthreads calls are reached by all of them.
template <typename T>
__global__ void draw_faces_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                                  int64_t N, int64_t V, int64_t F, int64_t H, int64_t W,
                                  double znear, unsigned long long* keys) {
  __shared__ int64_t big_tasks[kThreads];
  __shared__ int n_big;
  const int64_t n_tasks = N * F;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x; base < n_tasks;
       base += stride) {
    if (threadIdx.x == 0) n_big = 0;
    __syncthreads();
    const int64_t task = base + threadIdx.x;
    raster::Face face;
    if (task < n_tasks &&
        raster::setup_face(verts + (task / F) * V * 3, V, faces + 3 * (task % F), znear, face)) {
      const raster::PixelBox box = raster::pixel_box(face, H, W);
      if (box.count() > kMaxPixelsPerThread) {
        big_tasks[atomicAdd(&n_big, 1)] = task;
      } else {
        unsigned long long* view_keys = keys + (task / F) * H * W;
        for (int64_t i = box.i_first; i <= box.i_last; ++i) {
          for (int64_t j = box.j_first; j <= box.j_last; ++j) {
            draw_pixel(face, task % F, i, j, W, view_keys);
          }
        }
      }
    }
    __syncthreads();
    for (int b = 0; b < n_big; ++b) {
      // Every thread sets the face up again: same arithmetic, same face.
      const int64_t big = big_tasks[b], n = big / F, f = big % F;
      raster::Face shared_face;
      raster::setup_face(verts + n * V * 3, V, faces + 3 * f, znear, shared_face);
      const raster::PixelBox box = raster::pixel_box(shared_face, H, W);
      const int64_t cols = box.cols();
      for (int64_t p = threadIdx.x; p < box.count(); p += blockDim.x) {
        draw_pixel(shared_face, f, box.i_first + p / cols, box.j_first + p % cols, W,
                   keys + n * H * W);
      }
    }
    __syncthreads();  // n_big and big_tasks are reused by the next iteration
  }
}

template <typename T>
__global__ void resolve_kernel(const T* __restrict__ verts, const int64_t* __restrict__ faces,
                               int64_t N, int64_t V, int64_t H, int64_t W, double znear,
                               int64_t* face_idx, T* bary, T* depth) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t pixel = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       pixel < N * H * W; pixel += stride) {
    const int64_t n = pixel / (H * W), i = (pixel / W) % H, j = pixel % W;
    raster::resolve_pixel(verts + n * V * 3, V, faces, znear, i, j, face_idx + pixel,
                          bary + 3 * pixel, depth + pixel);
  }
}

unsigned blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

thread_local cudaError_t last_error = cudaSuccess;

template <typename T>
void launch(const T* verts, const int64_t* faces, int64_t N, int64_t V, int64_t F, int64_t H,
            int64_t W, double znear, int64_t* face_idx, T* bary, T* depth, cudaStream_t stream) {
  last_error = cudaSuccess;
  auto* keys = reinterpret_cast<unsigned long long*>(face_idx);
  if (N * F > 0) {
    draw_faces_kernel<T><<<blocks_for(N * F), kThreads, 0, stream>>>(verts, faces, N, V, F, H, W,
                                                                      znear, keys);
    last_error = cudaGetLastError();
    if (last_error != cudaSuccess) return;
  }
  if (N * H * W == 0) return;
  resolve_kernel<T><<<blocks_for(N * H * W), kThreads, 0, stream>>>(verts, faces, N, V, H, W,
                                                                    znear, face_idx, bary, depth);
  last_error = cudaGetLastError();
}

}  // namespace

void rasterize_cuda_launch(const void* verts, const int64_t* faces, int64_t N, int64_t V,
                           int64_t F, int64_t H, int64_t W, double znear, bool is_double,
                           int64_t* face_idx, void* bary, void* depth, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    launch(static_cast<const double*>(verts), faces, N, V, F, H, W, znear, face_idx,
           static_cast<double*>(bary), static_cast<double*>(depth), s);
  } else {
    launch(static_cast<const float*>(verts), faces, N, V, F, H, W, znear, face_idx,
           static_cast<float*>(bary), static_cast<float*>(depth), s);
  }
}

const char* rasterize_cuda_last_error() {
  return last_error == cudaSuccess ? nullptr : cudaGetErrorString(last_error);
}

}  // namespace geomkit
