// Point splatting on the CPU (OpenMP through at::parallel_for), without atomics. The points of
// each batch element are split into `lanes` contiguous index ranges, each reduced by one task
// into its own buffer with plain minima (lane 0 into the index output, the others into
// scratch); a parallel pass over the pixels then takes the minimum over the lanes and turns
// keys into point indices and depths. Lanes hold increasing index ranges, so keeping the
// first of equal depths keeps the lowest index, splat.h's tie rule.
//
// Why not atomics: an atomic minimum needs a compare-and-branch per point, and its mispredicts
// stop the random accesses into the image from overlapping; the branch-free minimum of a
// private buffer is about twice as fast at 512 x 512 (scratch costs at most
// kScratchPixelsPerPoint times the points in pixels).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "splat/splat.h"

namespace geomkit {
namespace splat {
namespace {

constexpr int64_t kPixelGrain = 1 << 15;
constexpr int64_t kScratchPixelsPerPoint = 4;

// Lanes per batch element: enough to give every thread work, within the scratch budget.
int64_t lane_count(int64_t N, int64_t P, int64_t pixels) {
  const int64_t threads = at::get_num_threads();
  const int64_t wanted = (threads + N - 1) / N;
  const int64_t affordable = 1 + kScratchPixelsPerPoint * P / pixels;
  return std::max<int64_t>(1, std::min(wanted, affordable));
}

// Per-lane buffers of N * pixels values: lane 0 is `output`, lane l >= 1 the l-th block of
// `scratch`.
struct LaneBuffers {
  int64_t* output;
  int64_t* scratch;
  int64_t N, pixels;

  int64_t* lane(int64_t l) const { return l == 0 ? output : scratch + (l - 1) * N * pixels; }
};

// Calls reduce(n, first, last, lane) for the points [first, last) of every lane, in parallel.
template <typename Reduce>
void for_each_lane(const int64_t* lengths, int64_t N, int64_t lanes, const Reduce& reduce) {
  at::parallel_for(0, N * lanes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / lanes, lane = task % lanes;
      reduce(n, lengths[n] * lane / lanes, lengths[n] * (lane + 1) / lanes, lane);
    }
  });
}

// float32: one packed key per pixel and lane, kEmpty on entry; the output lane ends holding
// the winners' indices. Depths are decoded from the keys (a gather from `depth` would miss the
// cache at every pixel).
void splat_float(const float* xy, const float* depth, const int64_t* lengths, int64_t N,
                 int64_t P, const Frame<float>& frame, int64_t lanes, const LaneBuffers& keys,
                 float* depth_out) {
  const int64_t pixels = keys.pixels;
  for_each_lane(lengths, N, lanes, [&](int64_t n, int64_t first, int64_t last, int64_t lane) {
    const float* p = xy + n * P * 2;
    const float* d = depth + n * P;
    int64_t* slots = keys.lane(lane) + n * pixels;
    for (int64_t i = first; i < last; ++i) {
      const int64_t pixel = pixel_of(p[2 * i], p[2 * i + 1], d[i], frame);
      if (pixel >= 0) slots[pixel] = std::min(slots[pixel], packed_key(d[i], i));
    }
  });
  at::parallel_for(0, N * pixels, kPixelGrain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      int64_t key = keys.output[k];
      for (int64_t l = 1; l < lanes; ++l) key = std::min(key, keys.lane(l)[k]);
      const bool empty = key == kEmpty;
      keys.output[k] = empty ? -1 : key & kIndexMask;
      depth_out[k] = empty ? -1.0f : packed_depth(key);
    }
  });
}

// float64: per pixel and lane the depth bits (kEmpty on entry) and the point holding them;
// the output lane of `points` ends holding the winners' indices.
void splat_double(const double* xy, const double* depth, const int64_t* lengths, int64_t N,
                  int64_t P, const Frame<double>& frame, int64_t lanes,
                  const LaneBuffers& depth_bits, const LaneBuffers& points, double* depth_out) {
  const int64_t pixels = depth_bits.pixels;
  for_each_lane(lengths, N, lanes, [&](int64_t n, int64_t first, int64_t last, int64_t lane) {
    const double* p = xy + n * P * 2;
    const double* d = depth + n * P;
    int64_t* bits = depth_bits.lane(lane) + n * pixels;
    int64_t* point = points.lane(lane) + n * pixels;
    for (int64_t i = first; i < last; ++i) {
      const int64_t pixel = pixel_of(p[2 * i], p[2 * i + 1], d[i], frame);
      if (pixel >= 0 && bits_of(d[i]) < bits[pixel]) {  // strict: equal depth keeps lower i
        bits[pixel] = bits_of(d[i]);
        point[pixel] = i;
      }
    }
  });
  at::parallel_for(0, N * pixels, kPixelGrain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      int64_t best = depth_bits.output[k], point = points.output[k];
      for (int64_t l = 1; l < lanes; ++l) {
        if (depth_bits.lane(l)[k] < best) {
          best = depth_bits.lane(l)[k];
          point = points.lane(l)[k];
        }
      }
      const bool empty = best == kEmpty;
      points.output[k] = empty ? -1 : point;
      depth_out[k] = empty ? -1.0 : from_bits<double>(best);
    }
  });
}

void check_inputs(const at::Tensor& xy, const at::Tensor& depth, const at::Tensor& lengths,
                  int64_t height, int64_t width, double near) {
  TORCH_CHECK(xy.dim() == 3 && xy.size(2) == 2, "splat_points: xy must be (N, P, 2)");
  TORCH_CHECK(depth.dim() == 2 && depth.size(0) == xy.size(0) && depth.size(1) == xy.size(1),
              "splat_points: depth must be (N, P) matching xy");
  TORCH_CHECK(xy.scalar_type() == depth.scalar_type(), "splat_points: xy and depth dtypes differ");
  TORCH_CHECK(xy.scalar_type() == at::kFloat || xy.scalar_type() == at::kDouble,
              "splat_points: kernel takes float32 or float64");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.numel() == xy.size(0),
              "splat_points: lengths must be int64 with N entries");
  TORCH_CHECK(height >= 0 && width >= 0, "splat_points: height and width must be >= 0");
  TORCH_CHECK(near >= 0, "splat_points: near must be >= 0");
  TORCH_CHECK(xy.size(1) < kMaxPoints, "splat_points: at most 2^32 - 1 points per batch element");
}

std::tuple<at::Tensor, at::Tensor> splat_points_cpu(const at::Tensor& xy, const at::Tensor& depth,
                                                    const at::Tensor& lengths, int64_t height,
                                                    int64_t width, double near) {
  check_inputs(xy, depth, lengths, height, width, near);
  const auto points = xy.contiguous(), depths = depth.contiguous();
  const auto counts = lengths.contiguous();
  const int64_t N = points.size(0), P = points.size(1), pixels = height * width;
  const auto long_options = points.options().dtype(at::kLong);
  auto depth_out = at::empty({N, height, width}, depths.options());
  if (N * pixels == 0) return {at::empty({N, height, width}, long_options), depth_out};
  const int64_t lanes = lane_count(N, P, pixels);
  const int64_t* len = counts.data_ptr<int64_t>();
  if (points.scalar_type() == at::kFloat) {
    auto index = at::full({N, height, width}, kEmpty, long_options);
    auto scratch = at::full({lanes - 1, N, height, width}, kEmpty, long_options);
    splat_float(points.data_ptr<float>(), depths.data_ptr<float>(), len, N, P,
                make_frame<float>(height, width, near), lanes,
                {index.data_ptr<int64_t>(), scratch.data_ptr<int64_t>(), N, pixels},
                depth_out.data_ptr<float>());
    return {index, depth_out};
  }
  auto index = at::empty({N, height, width}, long_options);
  auto scratch_points = at::empty({lanes - 1, N, height, width}, long_options);
  auto bits = at::full({lanes, N, height, width}, kEmpty, long_options);
  int64_t* bits_ptr = bits.data_ptr<int64_t>();
  splat_double(points.data_ptr<double>(), depths.data_ptr<double>(), len, N, P,
               make_frame<double>(height, width, near), lanes,
               {bits_ptr, bits_ptr + N * pixels, N, pixels},
               {index.data_ptr<int64_t>(), scratch_points.data_ptr<int64_t>(), N, pixels},
               depth_out.data_ptr<double>());
  return {index, depth_out};
}

}  // namespace
}  // namespace splat

TORCH_LIBRARY_IMPL(geomkit, CPU, m) { m.impl("splat_points", &splat::splat_points_cpu); }

}  // namespace geomkit
