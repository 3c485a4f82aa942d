// K nearest neighbours on the CPU (OpenMP through at::parallel_for).
//
// Two exact search strategies giving identical results (top K by (distance, index)):
// - kd-tree, for clouds of at least kMinPointsForTree finite points in up to kMaxTreeDim
//   dimensions;
// - brute force otherwise: every query scans every valid point.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "knn/knn.h"

namespace geomkit {
namespace {

constexpr int64_t kMinPointsForTree = 64;
constexpr int64_t kMaxTreeDim = 8;

// The best K so far, nearest first, stored in the query's output row. Ties go to the lower
// index, so any visiting order gives the same result as a scan in index order.
template <typename T>
struct TopK {
  T* dist;
  int64_t* idx;
  int64_t K;
  int64_t count = 0;

  static bool before(T d, int64_t j, T d_other, int64_t j_other) {
    return d < d_other || (d == d_other && j < j_other);
  }
  bool full() const { return count == K; }
  T worst() const { return dist[count - 1]; }

  void push(T d, int64_t j) {
    if (full() && !before(d, j, dist[K - 1], idx[K - 1])) return;
    int64_t pos = full() ? K - 1 : count++;
    while (pos > 0 && before(d, j, dist[pos - 1], idx[pos - 1])) {
      dist[pos] = dist[pos - 1];
      idx[pos] = idx[pos - 1];
      --pos;
    }
    dist[pos] = d;
    idx[pos] = j;
  }
};

// Distance in the norm's units; DIM is the dimension when known at compile time (0: use D).
template <typename T, int DIM, int NORM>
inline T point_distance(const T* a, const T* b, int64_t D) {
  const int64_t dims = DIM > 0 ? DIM : D;
  T acc = 0;
  for (int64_t d = 0; d < dims; ++d) {
    const T diff = a[d] - b[d];
    acc += NORM == 2 ? diff * diff : std::abs(diff);
  }
  return acc;
}

template <typename T>
bool all_finite(const T* p, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    if (!std::isfinite(p[k])) return false;
  }
  return true;
}

template <typename T, int DIM, int NORM>
void brute_force_query(const T* q, const T* pts, int64_t n_pts, int64_t D, TopK<T>& top) {
  for (int64_t j = 0; j < n_pts; ++j) top.push(point_distance<T, DIM, NORM>(q, pts + j * D, D), j);
}

// Balanced kd-tree over one cloud: median splits on the widest axis of each node's bounding
// box, leaves of at most kLeafSize points, coordinates copied in leaf order for locality.
// A query descends nearest child first and skips every node whose box lies farther than the
// current K-th distance (box distances never exceed the distance to any point inside, also
// in floating point, so the search is exact).
constexpr int64_t kLeafSize = 12;

template <typename T>
struct KdTree {
  int64_t D = 0;
  std::vector<int64_t> index;  // slot -> original point index
  std::vector<T> xyz;          // slot -> coordinates
  std::vector<int64_t> begin, end, left, right;  // per node; children -1 for leaves
  std::vector<T> lo, hi;                  // per node bounding box, D values each
};

template <typename T>
int64_t build_node(const T* pts, KdTree<T>& tree, int64_t first, int64_t last) {
  const int64_t D = tree.D, node = static_cast<int64_t>(tree.begin.size());
  tree.begin.push_back(first);
  tree.end.push_back(last);
  tree.left.push_back(-1);
  tree.right.push_back(-1);
  const T* p0 = pts + tree.index[first] * D;
  tree.lo.insert(tree.lo.end(), p0, p0 + D);
  tree.hi.insert(tree.hi.end(), p0, p0 + D);
  T* lo = tree.lo.data() + node * D;
  T* hi = tree.hi.data() + node * D;
  for (int64_t s = first + 1; s < last; ++s) {
    const T* p = pts + tree.index[s] * D;
    for (int64_t d = 0; d < D; ++d) {
      lo[d] = std::min(lo[d], p[d]);
      hi[d] = std::max(hi[d], p[d]);
    }
  }
  if (last - first <= kLeafSize) return node;
  int64_t axis = 0;
  for (int64_t d = 1; d < D; ++d) {
    if (hi[d] - lo[d] > hi[axis] - lo[axis]) axis = d;
  }
  const int64_t mid = first + (last - first) / 2;
  std::nth_element(tree.index.begin() + first, tree.index.begin() + mid,
                   tree.index.begin() + last, [&](int64_t a, int64_t b) {
                     return pts[a * D + axis] < pts[b * D + axis];
                   });
  const int64_t left = build_node(pts, tree, first, mid);
  const int64_t right = build_node(pts, tree, mid, last);
  tree.left[node] = left;
  tree.right[node] = right;
  return node;
}

template <typename T>
void build_tree(const T* pts, int64_t n, int64_t D, KdTree<T>& tree) {
  tree.D = D;
  tree.index.resize(n);
  for (int64_t j = 0; j < n; ++j) tree.index[j] = j;
  build_node(pts, tree, 0, n);
  tree.xyz.resize(n * D);
  for (int64_t s = 0; s < n; ++s) {
    std::copy(pts + tree.index[s] * D, pts + tree.index[s] * D + D, tree.xyz.begin() + s * D);
  }
}

template <typename T, int DIM, int NORM>
inline T box_distance(const KdTree<T>& tree, int64_t node, const T* q) {
  const int64_t dims = DIM > 0 ? DIM : tree.D;
  const T* lo = tree.lo.data() + node * dims;
  const T* hi = tree.hi.data() + node * dims;
  T acc = 0;
  for (int64_t d = 0; d < dims; ++d) {
    const T gap = q[d] < lo[d] ? lo[d] - q[d] : (q[d] > hi[d] ? q[d] - hi[d] : T(0));
    acc += NORM == 2 ? gap * gap : gap;
  }
  return acc;
}

template <typename T, int DIM, int NORM>
void tree_query(const KdTree<T>& tree, const T* q, TopK<T>& top) {
  struct Entry {
    int64_t node;
    T bound;
  };
  Entry stack[128];
  int depth = 0;
  stack[depth++] = {0, box_distance<T, DIM, NORM>(tree, 0, q)};
  while (depth > 0) {
    const Entry e = stack[--depth];
    if (top.full() && e.bound > top.worst()) continue;
    const int64_t left = tree.left[e.node];
    if (left < 0) {
      for (int64_t s = tree.begin[e.node]; s < tree.end[e.node]; ++s) {
        top.push(point_distance<T, DIM, NORM>(q, tree.xyz.data() + s * tree.D, tree.D),
                 tree.index[s]);
      }
      continue;
    }
    const int64_t right = tree.right[e.node];
    Entry a{left, box_distance<T, DIM, NORM>(tree, left, q)};
    Entry b{right, box_distance<T, DIM, NORM>(tree, right, q)};
    if (a.bound < b.bound) std::swap(a, b);  // push the farther first, pop the nearer first
    stack[depth++] = a;
    stack[depth++] = b;
  }
}

template <typename T, int DIM, int NORM>
void knn_cpu(const T* p1, const T* p2, const int64_t* lengths1, const int64_t* lengths2,
             int64_t N, int64_t P1, int64_t P2, int64_t D, int64_t K, T* dists, int64_t* idx) {
  std::vector<KdTree<T>> trees(N);
  std::vector<char> use_tree(N, 0);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* pts = p2 + n * P2 * D;
      const int64_t count = lengths2[n];
      if (D <= kMaxTreeDim && count >= kMinPointsForTree && all_finite(pts, count * D)) {
        build_tree(pts, count, D, trees[n]);
        use_tree[n] = 1;
      }
    }
  });
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(K, 1));
  at::parallel_for(0, N * P1, grain, [&](int64_t begin, int64_t end) {
    for (int64_t flat = begin; flat < end; ++flat) {
      const int64_t n = flat / P1, i = flat % P1;
      if (i >= lengths1[n]) continue;
      const T* q = p1 + flat * D;
      TopK<T> top{dists + flat * K, idx + flat * K, K};
      if (use_tree[n] && all_finite(q, D)) {
        tree_query<T, DIM, NORM>(trees[n], q, top);
      } else {
        brute_force_query<T, DIM, NORM>(q, p2 + n * P2 * D, lengths2[n], D, top);
      }
    }
  });
}

template <typename T>
void knn_cpu_dispatch(const T* p1, const T* p2, const int64_t* lengths1, const int64_t* lengths2,
                      int64_t N, int64_t P1, int64_t P2, int64_t D, int64_t K, int64_t norm,
                      T* dists, int64_t* idx) {
  const auto run = [&](auto dim, auto norm_tag) {
    knn_cpu<T, decltype(dim)::value, decltype(norm_tag)::value>(p1, p2, lengths1, lengths2, N, P1,
                                                                 P2, D, K, dists, idx);
  };
  using Two = std::integral_constant<int, 2>;
  using One = std::integral_constant<int, 1>;
  using Three = std::integral_constant<int, 3>;
  using Any = std::integral_constant<int, 0>;
  if (D == 3) {
    norm == 2 ? run(Three{}, Two{}) : run(Three{}, One{});
  } else {
    norm == 2 ? run(Any{}, Two{}) : run(Any{}, One{});
  }
}

void check_inputs(const at::Tensor& p1, const at::Tensor& p2, const at::Tensor& lengths1,
                  const at::Tensor& lengths2, int64_t K, int64_t norm) {
  TORCH_CHECK(p1.dim() == 3 && p2.dim() == 3, "knn_points: p1 and p2 must be (N, P, D)");
  TORCH_CHECK(p1.size(0) == p2.size(0) && p1.size(2) == p2.size(2),
              "knn_points: p1 and p2 must agree in N and D");
  TORCH_CHECK(p1.scalar_type() == p2.scalar_type(), "knn_points: p1 and p2 dtypes differ");
  TORCH_CHECK(lengths1.scalar_type() == at::kLong && lengths2.scalar_type() == at::kLong,
              "knn_points: lengths must be int64");
  TORCH_CHECK(lengths1.numel() == p1.size(0) && lengths2.numel() == p2.size(0),
              "knn_points: lengths must have N entries");
  TORCH_CHECK(K >= 1, "knn_points: K must be >= 1");
  TORCH_CHECK(norm == 1 || norm == 2, "knn_points: norm must be 1 or 2");
}

std::tuple<at::Tensor, at::Tensor> knn_points_cpu(const at::Tensor& p1, const at::Tensor& p2,
                                                  const at::Tensor& lengths1,
                                                  const at::Tensor& lengths2, int64_t K,
                                                  int64_t norm) {
  check_inputs(p1, p2, lengths1, lengths2, K, norm);
  const auto a = p1.contiguous(), b = p2.contiguous();
  const auto l1 = lengths1.contiguous(), l2 = lengths2.contiguous();
  const int64_t N = a.size(0), P1 = a.size(1), P2 = b.size(1), D = a.size(2);
  auto dists = at::zeros({N, P1, K}, a.options());
  auto idx = at::zeros({N, P1, K}, a.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "knn_points_cpu", [&] {
    knn_cpu_dispatch<scalar_t>(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
                               l1.data_ptr<int64_t>(), l2.data_ptr<int64_t>(), N, P1, P2, D, K,
                               norm, dists.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
  });
  return {dists, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CPU, m) { m.impl("knn_points", &knn_points_cpu); }

}  // namespace geomkit
