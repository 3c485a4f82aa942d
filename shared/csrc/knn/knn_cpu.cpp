// K nearest neighbours on the CPU (OpenMP through at::parallel_for).
//
// Two exact searches with identical results (the top K by (distance, index)): a kd-tree
// (kdtree.h) for clouds of at least kMinPointsForTree finite points in up to kMaxTreeDim
// dimensions, and brute force otherwise.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "knn/kdtree.h"
#include "knn/knn.h"

namespace geomkit {
namespace {

constexpr int64_t kMinPointsForTree = 64;
// Up to this K the running best list lives on the stack and the output row is written once.
constexpr int64_t kStackK = 64;
constexpr int64_t kMaxTreeDim = 8;

// The best K so far, nearest first, kept in the query's output row. Ties go to the lower
// index, so any visiting order gives the same result as a scan in index order.
template <typename T>
struct TopK {
  T* dist;
  int64_t* idx;
  int64_t K;
  int64_t count = 0;

  bool full() const { return count == K; }
  // The search radius: infinite until K candidates are known.
  T bound() const { return full() ? dist[K - 1] : std::numeric_limits<T>::infinity(); }

  void push(T d, int64_t j) {
    if (full()) {
      if (!(d <= dist[K - 1])) return;  // farther (or NaN): the common case, one comparison
      if (d == dist[K - 1] && j > idx[K - 1]) return;
    }
    int64_t pos = full() ? K - 1 : count++;
    // Shift the larger distances, then (rarely) equal distances with larger indices.
    while (pos > 0 && dist[pos - 1] > d) {
      dist[pos] = dist[pos - 1];
      idx[pos] = idx[pos - 1];
      --pos;
    }
    while (pos > 0 && dist[pos - 1] == d && idx[pos - 1] > j) {
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

template <typename T, int DIM, int NORM>
void tree_query(const KdTree<T>& tree, const T* q, TopK<T>& top) {
  const int64_t D = tree.D;
  visit_leaves_near_first<T, DIM, NORM>(
      tree, q, [&] { return top.bound(); },
      [&](int64_t node) {
        const auto& leaf = tree.nodes[node];
        for (int64_t s = leaf.begin; s < leaf.end; ++s) {
          top.push(point_distance<T, DIM, NORM>(q, tree.xyz.data() + s * D, D), tree.index[s]);
        }
      });
}

// Flat query indices n * P1 + i in the order to search them: per batch element, queries
// grouped by the leaf they fall into (counting sort), so consecutive searches reuse cached
// nodes and points; queries without a tree keep their order.
template <typename T, int DIM, int NORM>
std::vector<int64_t> search_order(const std::vector<KdTree<T>>& trees,
                                  const std::vector<char>& use_tree, const T* p1,
                                  const int64_t* lengths1, int64_t N, int64_t P1, int64_t D) {
  std::vector<int64_t> order(N * P1), leaf(N * P1, 0);
  at::parallel_for(0, N * P1, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t flat = begin; flat < end; ++flat) {
      const int64_t n = flat / P1, i = flat % P1;
      const T* q = p1 + flat * D;
      if (use_tree[n] && i < lengths1[n] && all_finite(q, D)) {
        leaf[flat] = 1 + nearest_leaf<T, DIM, NORM>(trees[n], q);  // 0: no leaf
      }
    }
  });
  for (int64_t n = 0; n < N; ++n) {
    const int64_t buckets = use_tree[n] ? static_cast<int64_t>(trees[n].nodes.size()) + 1 : 1;
    std::vector<int64_t> start(buckets + 1, 0);
    for (int64_t i = 0; i < P1; ++i) ++start[leaf[n * P1 + i] + 1];
    for (int64_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
    for (int64_t i = 0; i < P1; ++i) order[n * P1 + start[leaf[n * P1 + i]]++] = n * P1 + i;
  }
  return order;
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
        build_kdtree(pts, count, D, trees[n]);
        use_tree[n] = 1;
      }
    }
  });
  const auto order = search_order<T, DIM, NORM>(trees, use_tree, p1, lengths1, N, P1, D);
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(K, 1));
  at::parallel_for(0, N * P1, grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t flat = order[k], n = flat / P1, i = flat % P1;
      T stack_dist[kStackK];
      int64_t stack_idx[kStackK];
      const bool on_stack = K <= kStackK;
      TopK<T> top{on_stack ? stack_dist : dists + flat * K, on_stack ? stack_idx : idx + flat * K,
                  K};
      if (i < lengths1[n]) {
        const T* q = p1 + flat * D;
        if (use_tree[n] && all_finite(q, D)) {
          tree_query<T, DIM, NORM>(trees[n], q, top);
        } else {
          brute_force_query<T, DIM, NORM>(q, p2 + n * P2 * D, lengths2[n], D, top);
        }
      }
      // Slots no neighbour filled are zero, as PyTorch3D pads.
      std::fill(top.dist + top.count, top.dist + K, T(0));
      std::fill(top.idx + top.count, top.idx + K, int64_t(0));
      if (on_stack) {
        std::copy(stack_dist, stack_dist + K, dists + flat * K);
        std::copy(stack_idx, stack_idx + K, idx + flat * K);
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
  auto dists = at::empty({N, P1, K}, a.options());
  auto idx = at::empty({N, P1, K}, a.options().dtype(at::kLong));
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
