// Triangle rasterization on the CPU (OpenMP through at::parallel_for), in two passes:
// 1. faces of all views in parallel, dynamically scheduled (face sizes vary a lot): each covered
//    pixel centre of the face's pixel box gets an atomic min of its z-buffer key. Faces with
//    large boxes (a floor, a close-up) are set aside and drawn afterwards rows in parallel, so
//    that one big triangle does not serialise on one thread;
// 2. pixels in parallel: the winning face's barycentrics and depth are recomputed.
// The keys live in the face_idx output itself (int64 storage read as uint64), so the z-buffer
// costs no extra memory. The arithmetic is in rasterize.h, shared with the CUDA kernel.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "rasterize/rasterize.h"

namespace geomkit {
namespace {

// Faces handed to a thread at a time in pass 1.
constexpr int64_t kFacesPerTask = 64;
// Faces whose pixel box holds more pixels than this are drawn rows in parallel.
constexpr int64_t kMaxPixelsPerTask = 4096;

void atomic_min(uint64_t* slot, uint64_t key) {
  uint64_t seen = __atomic_load_n(slot, __ATOMIC_RELAXED);
  while (key < seen &&
         !__atomic_compare_exchange_n(slot, &seen, key, true, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
  }
}

// Rows [i_begin, i_end) of the face's pixel box; keys of one view (H, W).
void draw_rows(const raster::Face& face, const raster::PixelBox& box, int64_t f, int64_t i_begin,
               int64_t i_end, int64_t W, uint64_t* keys) {
  raster::Sample s;
  for (int64_t i = i_begin; i < i_end; ++i) {
    const double pv = static_cast<double>(i) + 0.5;
    for (int64_t j = box.j_first; j <= box.j_last; ++j) {
      if (raster::sample_face(face, static_cast<double>(j) + 0.5, pv, s)) {
        atomic_min(keys + i * W + j, raster::depth_key(s.depth, f));
      }
    }
  }
}

// Pass 1 over tasks n * F + f; keys (N, H, W) arrive filled with the empty key.
template <typename T>
void draw_faces(const T* verts, const int64_t* faces, int64_t N, int64_t V, int64_t F, int64_t H,
                int64_t W, double znear, uint64_t* keys) {
  const int64_t n_tasks = N * F;
  std::atomic<int64_t> next_task{0};
  std::vector<std::vector<int64_t>> big_tasks(at::get_num_threads());
  // One chunk per thread; each thread then pulls batches of faces until none are left.
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    auto& mine = big_tasks[at::get_thread_num()];
    for (int64_t start = next_task.fetch_add(kFacesPerTask); start < n_tasks;
         start = next_task.fetch_add(kFacesPerTask)) {
      const int64_t stop = std::min(start + kFacesPerTask, n_tasks);
      for (int64_t task = start; task < stop; ++task) {
        const int64_t n = task / F, f = task % F;
        raster::Face face;
        if (!raster::setup_face(verts + n * V * 3, V, faces + 3 * f, znear, face)) continue;
        const raster::PixelBox box = raster::pixel_box(face, H, W);
        if (box.count() > kMaxPixelsPerTask) {
          mine.push_back(task);
        } else {
          draw_rows(face, box, f, box.i_first, box.i_last + 1, W, keys + n * H * W);
        }
      }
    }
  });
  for (const auto& tasks : big_tasks) {
    for (const int64_t task : tasks) {
      const int64_t n = task / F, f = task % F;
      raster::Face face;
      raster::setup_face(verts + n * V * 3, V, faces + 3 * f, znear, face);
      const raster::PixelBox box = raster::pixel_box(face, H, W);
      const int64_t grain = std::max<int64_t>(1, kMaxPixelsPerTask / box.cols());
      at::parallel_for(box.i_first, box.i_last + 1, grain, [&](int64_t begin, int64_t end) {
        draw_rows(face, box, f, begin, end, W, keys + n * H * W);
      });
    }
  }
}

// face_idx (N, H, W) arrives filled with -1 (the empty key).
template <typename T>
void rasterize_cpu(const T* verts, const int64_t* faces, int64_t N, int64_t V, int64_t F,
                   int64_t H, int64_t W, double znear, int64_t* face_idx, T* bary, T* depth) {
  draw_faces(verts, faces, N, V, F, H, W, znear, reinterpret_cast<uint64_t*>(face_idx));
  at::parallel_for(0, N * H * W, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t pixel = begin; pixel < end; ++pixel) {
      const int64_t n = pixel / (H * W), i = (pixel / W) % H, j = pixel % W;
      raster::resolve_pixel(verts + n * V * 3, V, faces, znear, i, j, face_idx + pixel,
                            bary + 3 * pixel, depth + pixel);
    }
  });
}

void check_inputs(const at::Tensor& verts, const at::Tensor& faces, int64_t height,
                  int64_t width, double znear) {
  TORCH_CHECK(verts.dim() == 3 && verts.size(2) == 3,
              "rasterize_triangles: verts_screen must be (N, V, 3)");
  TORCH_CHECK(verts.scalar_type() == at::kFloat || verts.scalar_type() == at::kDouble,
              "rasterize_triangles: verts_screen must be float32 or float64");
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3 && faces.scalar_type() == at::kLong,
              "rasterize_triangles: faces must be (F, 3) int64");
  TORCH_CHECK(faces.size(0) < raster::kMaxFaces, "rasterize_triangles: at most 2^32 - 1 faces");
  TORCH_CHECK(height >= 0 && width >= 0, "rasterize_triangles: height and width must be >= 0");
  TORCH_CHECK(znear >= 0.0, "rasterize_triangles: znear must be >= 0");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_triangles_cpu(const at::Tensor& verts,
                                                                     const at::Tensor& faces,
                                                                     int64_t height,
                                                                     int64_t width,
                                                                     double znear) {
  check_inputs(verts, faces, height, width, znear);
  const auto v = verts.contiguous();
  const auto f = faces.contiguous();
  const int64_t N = v.size(0), V = v.size(1), F = f.size(0);
  auto face_idx = at::full({N, height, width}, -1, v.options().dtype(at::kLong));
  auto bary = at::empty({N, height, width, 3}, v.options());
  auto depth = at::empty({N, height, width}, v.options());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "rasterize_triangles_cpu", [&] {
    rasterize_cpu<scalar_t>(v.data_ptr<scalar_t>(), f.data_ptr<int64_t>(), N, V, F, height,
                            width, znear, face_idx.data_ptr<int64_t>(), bary.data_ptr<scalar_t>(),
                            depth.data_ptr<scalar_t>());
  });
  return {face_idx, bary, depth};
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CPU, m) { m.impl("rasterize_triangles", &rasterize_triangles_cpu); }

}  // namespace geomkit
