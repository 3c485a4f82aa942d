// Iterative farthest point sampling on the CPU (OpenMP through at::parallel_for).
//
// A step lowers every point's distance to the selected set with its distance to the point
// selected last, then picks the farthest point. Each cloud is copied coordinate-major (D arrays)
// so that a step runs over contiguous arrays the compiler vectorises. Clouds run in parallel,
// except when there are fewer clouds than threads and some are large: then the clouds run one
// after another and each step of a large cloud is split over the points. The farthest point
// (ties to the lower index) is the same however the points are split.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "fps/fps.h"

namespace geomkit {
namespace {

// Points per block of a step: their distances to the selected point accumulate in a local array.
constexpr int64_t kBlock = 256;
// Independent running maxima, so that the search for the largest distance vectorises.
constexpr int kLanes = 8;
// A step is split over threads only in pieces of at least this many points: each split step
// waits for every thread, which costs more than a short step saves.
constexpr int64_t kMinPointsPerThread = 32768;

template <typename T>
struct Farthest {
  T value;
  int64_t index;
};

// The larger distance, ties to the lower index: a total order, so the pieces of a split step
// combine to the same result in any order.
template <typename T>
Farthest<T> farther(const Farthest<T>& a, const Farthest<T>& b) {
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

template <typename T>
struct Cloud {
  int64_t count = 0;
  int64_t D = 0;
  std::vector<T> coords;    // coordinate-major: coords[d * count + p]
  std::vector<T> min_dist;  // squared distance of each point to the selected set

  void load(const T* pts, int64_t n_pts, int64_t dims) {
    count = n_pts;
    D = dims;
    coords.resize(count * D);
    for (int64_t p = 0; p < count; ++p) {
      for (int64_t d = 0; d < D; ++d) coords[d * count + p] = pts[p * D + d];
    }
    min_dist.assign(count, std::numeric_limits<T>::infinity());
  }
};

// Lowers the distances of points [start, start + n) with their squared distances to `selected`,
// summed coordinate by coordinate in the order of the reference (so they agree to the bit).
// DIM 3 takes a fused path for 3D points; any other DIM works for every cloud.D.
template <typename T, int DIM>
void lower_block(Cloud<T>& cloud, const T* selected, int64_t start, int64_t n) {
  T* m = cloud.min_dist.data() + start;
  const T* x = cloud.coords.data() + start;
  if constexpr (DIM == 3) {
    const T* y = x + cloud.count;
    const T* z = y + cloud.count;
    const T qx = selected[0], qy = selected[1], qz = selected[2];
    for (int64_t j = 0; j < n; ++j) {
      const T dx = qx - x[j], dy = qy - y[j], dz = qz - z[j];
      T acc = dx * dx;
      acc += dy * dy;
      acc += dz * dz;
      m[j] = acc < m[j] ? acc : m[j];
    }
  } else {
    T acc[kBlock];
    std::fill(acc, acc + n, T(0));
    for (int64_t d = 0; d < cloud.D; ++d) {
      const T q = selected[d];
      const T* xd = x + d * cloud.count;
      for (int64_t j = 0; j < n; ++j) {
        const T diff = q - xd[j];
        acc[j] += diff * diff;
      }
    }
    for (int64_t j = 0; j < n; ++j) m[j] = acc[j] < m[j] ? acc[j] : m[j];
  }
}

template <typename T>
T block_max(const T* m, int64_t n) {
  T lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, T(-1));
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane_max[l] = m[j + l] > lane_max[l] ? m[j + l] : lane_max[l];
  }
  for (; j < n; ++j) lane_max[0] = m[j] > lane_max[0] ? m[j] : lane_max[0];
  return *std::max_element(lane_max, lane_max + kLanes);
}

// One step over points [begin, end) (not empty): updates their distances with the selected
// point (its D coordinates) and returns the farthest of them.
template <typename T, int DIM>
Farthest<T> step_range(Cloud<T>& cloud, const T* selected, int64_t begin, int64_t end) {
  T best = T(-1);
  int64_t best_block = begin;  // the first block holding the largest distance
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t n = std::min(kBlock, end - start);
    lower_block<T, DIM>(cloud, selected, start, n);
    const T top = block_max(cloud.min_dist.data() + start, n);
    if (top > best) {
      best = top;
      best_block = start;
    }
  }
  const T* m = cloud.min_dist.data();
  const int64_t block_end = std::min(best_block + kBlock, end);
  for (int64_t p = best_block; p < block_end; ++p) {
    if (m[p] == best) return {best, p};
  }
  return {best, begin};  // only when every distance is NaN
}

// One step over all points of the cloud, split over threads or on this thread alone.
template <typename T, int DIM>
Farthest<T> step(Cloud<T>& cloud, const T* selected, bool split) {
  if (!split) return step_range<T, DIM>(cloud, selected, 0, cloud.count);
  const Farthest<T> none{-std::numeric_limits<T>::infinity(),
                         std::numeric_limits<int64_t>::max()};
  return at::parallel_reduce(
      0, cloud.count, kMinPointsPerThread, none,
      [&](int64_t begin, int64_t end, Farthest<T> ident) {
        return farther(ident, step_range<T, DIM>(cloud, selected, begin, end));
      },
      farther<T>);
}

// Writes the k_n >= 1 indices sampled from pts (count, D) starting at `start` to out; with
// `split`, each step is split over threads.
template <typename T, int DIM>
void sample_cloud(const T* pts, int64_t count, int64_t D, int64_t k_n, int64_t start, bool split,
                  Cloud<T>& cloud, int64_t* out) {
  out[0] = start;
  if (k_n == 1) return;
  cloud.load(pts, count, D);
  int64_t selected = start;
  for (int64_t k = 1; k < k_n; ++k) {
    selected = step<T, DIM>(cloud, pts + selected * D, split).index;
    out[k] = selected;
  }
}

template <typename T, int DIM>
void fps_cpu(const T* points, const int64_t* lengths, const int64_t* K, const int64_t* start_idxs,
             int64_t N, int64_t P, int64_t D, int64_t max_K, int64_t* idx) {
  const auto run = [&](int64_t n, bool split, Cloud<T>& cloud) {
    const int64_t k_n = std::min(K[n], lengths[n]);
    if (k_n > 0) {
      sample_cloud<T, DIM>(points + n * P * D, lengths[n], D, k_n, start_idxs[n], split, cloud,
                           idx + n * max_K);
    }
  };
  const int64_t largest = N > 0 ? *std::max_element(lengths, lengths + N) : 0;
  if (N < at::get_num_threads() && largest >= 2 * kMinPointsPerThread) {
    Cloud<T> cloud;
    for (int64_t n = 0; n < N; ++n) run(n, lengths[n] >= 2 * kMinPointsPerThread, cloud);
  } else {
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      Cloud<T> cloud;
      for (int64_t n = begin; n < end; ++n) run(n, false, cloud);
    });
  }
}

void check_inputs(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& K,
                  const at::Tensor& start_idxs) {
  TORCH_CHECK(points.dim() == 3, "sample_farthest_points: points must be (N, P, D)");
  const int64_t N = points.size(0);
  for (const auto& t : {lengths, K, start_idxs}) {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == N && t.scalar_type() == at::kLong,
                "sample_farthest_points: lengths, K and start_idxs must be int64 (N,)");
  }
  const auto l = lengths.contiguous(), k = K.contiguous(), s = start_idxs.contiguous();
  const int64_t *l_ptr = l.data_ptr<int64_t>(), *k_ptr = k.data_ptr<int64_t>();
  const int64_t* s_ptr = s.data_ptr<int64_t>();
  for (int64_t n = 0; n < N; ++n) {
    TORCH_CHECK(l_ptr[n] >= 0 && l_ptr[n] <= points.size(1),
                "sample_farthest_points: lengths must lie in [0, P]");
    TORCH_CHECK(k_ptr[n] >= 0, "sample_farthest_points: K must be >= 0");
    TORCH_CHECK(l_ptr[n] == 0 || (s_ptr[n] >= 0 && s_ptr[n] < l_ptr[n]),
                "sample_farthest_points: start_idxs[n] must lie in [0, lengths[n])");
  }
}

at::Tensor sample_farthest_points_cpu(const at::Tensor& points, const at::Tensor& lengths,
                                      const at::Tensor& K, const at::Tensor& start_idxs) {
  check_inputs(points, lengths, K, start_idxs);
  const auto pts = points.contiguous();
  const auto l = lengths.contiguous(), k = K.contiguous(), s = start_idxs.contiguous();
  const int64_t N = pts.size(0), P = pts.size(1), D = pts.size(2);
  const int64_t max_K = N > 0 ? k.max().item<int64_t>() : 0;
  auto idx = at::full({N, max_K}, -1, lengths.options());
  AT_DISPATCH_FLOATING_TYPES(pts.scalar_type(), "sample_farthest_points_cpu", [&] {
    const auto run = [&](auto dim) {
      fps_cpu<scalar_t, decltype(dim)::value>(pts.data_ptr<scalar_t>(), l.data_ptr<int64_t>(),
                                              k.data_ptr<int64_t>(), s.data_ptr<int64_t>(), N, P,
                                              D, max_K, idx.data_ptr<int64_t>());
    };
    if (D == 3) {
      run(std::integral_constant<int, 3>{});
    } else {
      run(std::integral_constant<int, 0>{});
    }
  });
  return idx;
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CPU, m) {
  m.impl("sample_farthest_points", &sample_farthest_points_cpu);
}

}  // namespace geomkit
