// Point splatting (NPBG++'s nearest-point rasterizer): shared declarations and the per-point
// rules that both kernels apply.
//
// xy (N, P, 2) continuous pixel coordinates (x right, y down; pixel (row i, col j) covers
// [j, j+1) x [i, i+1)), depth (N, P) view z, lengths (N,) valid points per batch element.
// Point i of batch element n lands in pixel (floor(y), floor(x)) when 0 <= x < width,
// 0 <= y < height and near < depth < inf; each pixel keeps the point of minimum depth, ties to
// the lowest point index. index (N, H, W) int64 holds the winner (-1 where none), depth
// (N, H, W) its depth (-1 where none).
//
// Both kernels reduce per-pixel int64 keys that start at kEmpty: float32 packs (depth bits
// << 32 | point index) into one key, whose minimum decides depth and tie together; float64
// keys are the depth bits, with the point index kept beside them (the CPU compares the pairs,
// CUDA takes a second pass for the minimum index among the points at the minimum depth).
// Positive finite floats order like their bit patterns read as integers, and near >= 0, so
// the keys order like (depth, index).
//
// The tests below run on bit patterns: CUDA builds use --use_fast_math, whose flush-to-zero
// would otherwise let the devices disagree on denormal or negative-zero inputs.
//
// Plain types only: splat.cu includes this header and compiles with nvcc alone.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define GEOMKIT_SPLAT_HD __host__ __device__ __forceinline__
#else
#define GEOMKIT_SPLAT_HD inline
#endif

namespace geomkit {
namespace splat {

// Key of a pixel no point reached (also the initial value of every key buffer).
constexpr int64_t kEmpty = INT64_MAX;
// The float32 key keeps the point index in its low 32 bits.
constexpr int64_t kMaxPoints = int64_t(1) << 32;
constexpr int64_t kIndexMask = kMaxPoints - 1;

template <typename T>
struct FloatBits;

template <>
struct FloatBits<float> {
  using Int = int32_t;
  static constexpr Int kInf = 0x7f800000;
  static constexpr Int kNegativeZero = INT32_MIN;
};

template <>
struct FloatBits<double> {
  using Int = int64_t;
  static constexpr Int kInf = 0x7ff0000000000000LL;
  static constexpr Int kNegativeZero = INT64_MIN;
};

template <typename T>
GEOMKIT_SPLAT_HD typename FloatBits<T>::Int bits_of(T value) {
  typename FloatBits<T>::Int bits;
  memcpy(&bits, &value, sizeof(T));
  return bits;
}

// Bits of the largest T not above `near` (near >= 0): for any T depth, depth > near exactly
// when bits_of(depth) > this (negative depths have negative bits).
template <typename T>
inline int64_t near_bits(double near) {
  T rounded = static_cast<T>(near);
  if (static_cast<double>(rounded) > near) rounded = std::nextafter(rounded, T(0));
  return bits_of(rounded == T(0) ? T(0) : rounded);  // -0 is +0
}

// The image and the near plane as the per-point tests use them, computed once per call.
template <typename T>
struct Frame {
  int64_t height, width;
  typename FloatBits<T>::Int x_limit, y_limit;  // bits of T(width), T(height)
  int64_t near_threshold;                       // near_bits<T>(near)
};

template <typename T>
inline Frame<T> make_frame(int64_t height, int64_t width, double near) {
  return {height, width, bits_of(static_cast<T>(width)), bits_of(static_cast<T>(height)),
          near_bits<T>(near)};
}

// 0 <= v < limit for a positive finite limit given by its bits; NaN and infinities fail.
template <typename T>
GEOMKIT_SPLAT_HD bool in_range(T v, typename FloatBits<T>::Int limit_bits) {
  const auto bits = bits_of(v);
  const auto magnitude = bits == FloatBits<T>::kNegativeZero ? 0 : bits;
  return magnitude >= 0 && magnitude < limit_bits;
}

// near < depth < inf.
template <typename T>
GEOMKIT_SPLAT_HD bool depth_visible(T depth, int64_t near_threshold) {
  const int64_t bits = bits_of(depth);
  return bits > near_threshold && bits < FloatBits<T>::kInf;
}

// Flat pixel (row * width + col) the point lands in, or -1 where it is skipped. Coordinates
// in [0, limit) truncate to their floor.
template <typename T>
GEOMKIT_SPLAT_HD int64_t pixel_of(T x, T y, T depth, const Frame<T>& frame) {
  if (!depth_visible(depth, frame.near_threshold) || !in_range(x, frame.x_limit) ||
      !in_range(y, frame.y_limit)) {
    return -1;
  }
  return static_cast<int64_t>(y) * frame.width + static_cast<int64_t>(x);
}

template <typename T>
GEOMKIT_SPLAT_HD T from_bits(typename FloatBits<T>::Int bits) {
  T value;
  memcpy(&value, &bits, sizeof(T));
  return value;
}

// float32 single-pass key: depth bits above the point index.
GEOMKIT_SPLAT_HD int64_t packed_key(float depth, int64_t point) {
  return (static_cast<int64_t>(bits_of(depth)) << 32) | point;
}

GEOMKIT_SPLAT_HD float packed_depth(int64_t key) {
  return from_bits<float>(static_cast<int32_t>(key >> 32));
}

// Launches the CUDA kernels on `stream` (a cudaStream_t passed as void*). float or double
// xy/depth according to `is_double`. `index` (N*H*W) must hold kEmpty on entry; for double
// inputs `depth_keys` is N*H*W int64 scratch holding kEmpty, else unused (may be null).
void splat_cuda_launch(const void* xy, const void* depth, const int64_t* lengths, int64_t N,
                       int64_t P, int64_t height, int64_t width, double near, bool is_double,
                       int64_t* index, void* depth_out, int64_t* depth_keys, void* stream);

// Returns the last CUDA error as text, or nullptr when there is none.
const char* splat_cuda_last_error();

}  // namespace splat
}  // namespace geomkit
