// Triangle rasterization (z-buffer) of one mesh seen in N views: shared declarations and the
// per-face / per-pixel arithmetic both kernels run, so that CPU and CUDA agree to the bit.
//
// verts (N, V, 3) row-major: (u, v) pixel coordinates (u right, v down, the top-left pixel's
// centre at (0.5, 0.5)) and z = view depth; faces (F, 3) int64 shared by the views. Pixel
// (row i, col j) is sampled at its centre (j + 0.5, i + 0.5).
//
// The definition (ops/_reference/rasterize.py spells out the same operations in PyTorch):
// * A face is culled when a vertex index is out of range, a coordinate is not finite, any vertex
//   has z <= znear, or its screen area is zero (no back-face culling).
// * Edge k (opposite vertex k) runs from vertex k+1 to vertex k+2. Its edge function is always
//   computed from the lexicographically smaller (u, v) endpoint and negated when the endpoints
//   were swapped, so two faces sharing an edge get exactly opposite values: with the inclusive
//   test below a centre on a shared edge is covered by both faces and meshes have no cracks.
// * A centre is covered when it lies in the face's closed (u, v) bounding box and all three
//   edge functions, multiplied by the sign of the face's area, are >= 0 (edges included).
// * With those edge values e_k (the screen barycentrics times twice the absolute area) and
//   w_k = e_k * (1 / z_k): depth = (e0 + e1 + e2) / (w0 + w1 + w2), which is 1 / sum(b_k / z_k),
//   and the perspective-correct barycentrics are w_k / (w0 + w1 + w2).
// * Z-buffer: the smallest key wins: (depth clamped to >= FLT_MIN and rounded to float32, face
//   index), i.e. the smallest depth, ties to the lowest face index.
// All arithmetic is IEEE double, each operation rounded on its own (never fused into an FMA).
//
// Plain types only: rasterize.cu includes this header and compiles with nvcc alone.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define GEOMKIT_RASTER_HD __host__ __device__ __forceinline__
#else
#define GEOMKIT_RASTER_HD inline
#endif

namespace geomkit {

// Launches both passes on `stream` (a cudaStream_t passed as void*). verts are float or double
// according to `is_double`, as are bary (N, H, W, 3) and depth (N, H, W). face_idx (N, H, W)
// must be filled with -1 (all bits set, the empty z-buffer key) before the call.
void rasterize_cuda_launch(const void* verts, const int64_t* faces, int64_t N, int64_t V,
                           int64_t F, int64_t H, int64_t W, double znear, bool is_double,
                           int64_t* face_idx, void* bary, void* depth, void* stream);

// Returns the last CUDA error as text, or nullptr when there is none.
const char* rasterize_cuda_last_error();

namespace raster {

// The z-buffer key of a pixel no face covers (also the int64 value -1).
constexpr uint64_t kEmptyKey = ~uint64_t(0);
// Keys hold float32 depths clamped to the smallest normal float, so that flush-to-zero of
// subnormals on the GPU cannot reorder them.
constexpr double kMinKeyDepth = 1.17549435082228750797e-38;  // FLT_MIN
// Face indices must fit in the low 32 bits of a key.
constexpr int64_t kMaxFaces = int64_t(1) << 32;

// IEEE double operations that nvcc may not contract into FMAs (the host build compiles as ISO
// C++, where GCC does not contract either).
GEOMKIT_RASTER_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

GEOMKIT_RASTER_HD double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

GEOMKIT_RASTER_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

GEOMKIT_RASTER_HD double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// x - x is 0 for finite x and NaN for infinities and NaN.
GEOMKIT_RASTER_HD bool is_finite(double x) { return dsub(x, x) == 0.0; }

// One edge: value(p) = sign * (du * (p.v - av) - dv * (p.u - au)), from its canonical start
// (au, av) with (du, dv) = end - start; sign folds in the swap and the face orientation.
struct Edge {
  double au, av, du, dv, sign;
};

struct Face {
  Edge edge[3];  // edge k is opposite vertex k
  double inv_z[3];
  double umin, umax, vmin, vmax;
};

GEOMKIT_RASTER_HD double edge_value(const Edge& e, double pu, double pv) {
  return dmul(e.sign, dsub(dmul(e.du, dsub(pv, e.av)), dmul(e.dv, dsub(pu, e.au))));
}

GEOMKIT_RASTER_HD Edge make_edge(double u0, double v0, double u1, double v1, double orientation) {
  const bool swap = u0 > u1 || (u0 == u1 && v0 > v1);
  const double au = swap ? u1 : u0, av = swap ? v1 : v0;
  const double bu = swap ? u0 : u1, bv = swap ? v0 : v1;
  return Edge{au, av, dsub(bu, au), dsub(bv, av), swap ? -orientation : orientation};
}

GEOMKIT_RASTER_HD double min3(double a, double b, double c) {
  const double ab = a < b ? a : b;
  return ab < c ? ab : c;
}

GEOMKIT_RASTER_HD double max3(double a, double b, double c) {
  const double ab = a > b ? a : b;
  return ab > c ? ab : c;
}

// Sets up face `corners` (three vertex indices) of one view (verts (V, 3)); false when culled.
template <typename T>
GEOMKIT_RASTER_HD bool setup_face(const T* verts, int64_t V, const int64_t* corners,
                                  double znear, Face& face) {
  double u[3], v[3], z[3];
  for (int k = 0; k < 3; ++k) {
    const int64_t index = corners[k];
    if (index < 0 || index >= V) return false;
    u[k] = static_cast<double>(verts[3 * index]);
    v[k] = static_cast<double>(verts[3 * index + 1]);
    z[k] = static_cast<double>(verts[3 * index + 2]);
    if (!is_finite(u[k]) || !is_finite(v[k]) || !is_finite(z[k]) || !(z[k] > znear)) {
      return false;
    }
  }
  const double area =
      dsub(dmul(dsub(u[1], u[0]), dsub(v[2], v[0])), dmul(dsub(v[1], v[0]), dsub(u[2], u[0])));
  if (area == 0.0 || !is_finite(area)) return false;
  const double orientation = area > 0.0 ? 1.0 : -1.0;
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;
    face.edge[k] = make_edge(u[a], v[a], u[b], v[b], orientation);
    face.inv_z[k] = ddiv(1.0, z[k]);
  }
  face.umin = min3(u[0], u[1], u[2]);
  face.umax = max3(u[0], u[1], u[2]);
  face.vmin = min3(v[0], v[1], v[2]);
  face.vmax = max3(v[0], v[1], v[2]);
  return true;
}

// Coverage of the pixel centre (pu, pv); when covered, the perspective weights
// w_k = e_k * (1 / z_k), their sum and the depth.
struct Sample {
  double w[3];
  double w_sum;
  double depth;
};

GEOMKIT_RASTER_HD bool sample_face(const Face& face, double pu, double pv, Sample& s) {
  if (pu < face.umin || pu > face.umax || pv < face.vmin || pv > face.vmax) return false;
  double e[3];
  for (int k = 0; k < 3; ++k) {
    e[k] = edge_value(face.edge[k], pu, pv);
    if (!(e[k] >= 0.0)) return false;
  }
  for (int k = 0; k < 3; ++k) s.w[k] = dmul(e[k], face.inv_z[k]);
  s.w_sum = dadd(dadd(s.w[0], s.w[1]), s.w[2]);
  if (!(s.w_sum > 0.0)) return false;  // all edge values zero, or underflow
  s.depth = ddiv(dadd(dadd(e[0], e[1]), e[2]), s.w_sum);
  return true;
}

GEOMKIT_RASTER_HD uint64_t depth_key(double depth, int64_t face) {
  const float key_depth = static_cast<float>(depth > kMinKeyDepth ? depth : kMinKeyDepth);
  uint32_t bits;
#ifdef __CUDA_ARCH__
  bits = __float_as_uint(key_depth);
#else
  std::memcpy(&bits, &key_depth, sizeof(bits));
#endif
  // Positive floats order like their bit patterns, so keys order by (depth, face index).
  return (static_cast<uint64_t>(bits) << 32) | static_cast<uint64_t>(face);
}

// Pixels [first, last] (possibly empty) whose centres may lie in [lo, hi]: a conservative
// range, sample_face tests the exact bounds.
GEOMKIT_RASTER_HD void pixel_range(double lo, double hi, int64_t size, int64_t& first,
                                   int64_t& last) {
  const double a = floor(lo - 0.5), b = ceil(hi - 0.5);
  first = a < 0.0 ? 0 : (a > static_cast<double>(size) ? size : static_cast<int64_t>(a));
  last = b < -1.0 ? -1 : (b > static_cast<double>(size - 1) ? size - 1 : static_cast<int64_t>(b));
}

// The image pixels a face may cover, rows [i_first, i_last] x cols [j_first, j_last].
struct PixelBox {
  int64_t i_first, i_last, j_first, j_last;

  GEOMKIT_RASTER_HD int64_t cols() const { return j_last >= j_first ? j_last - j_first + 1 : 0; }
  GEOMKIT_RASTER_HD int64_t count() const {
    return i_last >= i_first ? (i_last - i_first + 1) * cols() : 0;
  }
};

GEOMKIT_RASTER_HD PixelBox pixel_box(const Face& face, int64_t H, int64_t W) {
  PixelBox box;
  pixel_range(face.vmin, face.vmax, H, box.i_first, box.i_last);
  pixel_range(face.umin, face.umax, W, box.j_first, box.j_last);
  return box;
}

// Pass 2 for one pixel of view (verts (V, 3)): turns the z-buffer key left in *face_idx by
// pass 1 into the face index (-1 where none), the perspective-correct barycentrics and depth.
template <typename T>
GEOMKIT_RASTER_HD void resolve_pixel(const T* verts, int64_t V, const int64_t* faces,
                                     double znear, int64_t i, int64_t j, int64_t* face_idx,
                                     T* bary, T* depth) {
  const uint64_t key = static_cast<uint64_t>(*face_idx);
  Face face;
  Sample s;
  const int64_t f = static_cast<int64_t>(key & 0xffffffffu);
  // Pass 1 found the winner covered with the same arithmetic, so this recomputation succeeds.
  if (key != kEmptyKey && setup_face(verts, V, faces + 3 * f, znear, face) &&
      sample_face(face, static_cast<double>(j) + 0.5, static_cast<double>(i) + 0.5, s)) {
    *face_idx = f;
    for (int k = 0; k < 3; ++k) bary[k] = static_cast<T>(ddiv(s.w[k], s.w_sum));
    *depth = static_cast<T>(s.depth);
  } else {
    *face_idx = -1;
    for (int k = 0; k < 3; ++k) bary[k] = T(0);
    *depth = T(-1);
  }
}

}  // namespace raster
}  // namespace geomkit
