// Ball query on the CPU (OpenMP through at::parallel_for).
//
// The result is defined by a scan of p2 in index order that stops at K points inside the ball.
// For clouds of at least kMinPointsForTree finite points in up to kMaxTreeDim dimensions, a query
// scans in index order while that promises to finish sooner than a tree search (when the ball
// holds a large share of the cloud), then, if it has not found K points, searches the kd-tree
// of knn/kdtree.h for the in-ball points beyond the scanned ones, keeping the lowest indices:
// the same points as the full scan.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "ball_query/ball_query.h"
#include "knn/kdtree.h"

namespace geomkit {
namespace {

constexpr int64_t kMinPointsForTree = 256;
constexpr int64_t kMaxTreeDim = 8;
// The index-order scan runs in chunks of kScanChunk points. After each, it estimates from the
// share of scanned points inside the ball how many more points it needs, and how many the tree
// search would visit: the in-ball points (kTreeCostPerPoint each) plus kTreeOverhead.
constexpr int64_t kScanChunk = 128;
constexpr double kTreeCostPerPoint = 2.0;
constexpr double kTreeOverhead = 512.0;

// Squared Euclidean distance summed coordinate by coordinate (as the reference); DIM is the
// dimension when known at compile time (0: use D).
template <typename T, int DIM>
inline T squared_distance(const T* a, const T* b, int64_t D) {
  const int64_t dims = DIM > 0 ? DIM : D;
  T acc = 0;
  for (int64_t d = 0; d < dims; ++d) {
    const T diff = a[d] - b[d];
    acc += diff * diff;
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

// One query's output row, filled in index order up to K entries.
template <typename T>
struct Row {
  T* dists;
  int64_t* idx;
  int64_t K;
  int64_t count = 0;

  bool full() const { return count == K; }
  void append(int64_t j, T d) {
    dists[count] = d;
    idx[count] = j;
    ++count;
  }
};

// In-ball points of pts[begin, end) in index order, until the row is full.
template <typename T, int DIM>
void scan(const T* q, const T* pts, int64_t begin, int64_t end, int64_t D, T radius2,
          Row<T>& row) {
  for (int64_t j = begin; j < end && !row.full(); ++j) {
    const T d = squared_distance<T, DIM>(q, pts + j * D, D);
    if (d < radius2) row.append(j, d);
  }
}

// Scans pts[0, count) in index order while that is expected to cost less than the tree search;
// returns how many points it scanned (all of them, or fewer once the row is full).
template <typename T, int DIM>
int64_t scan_while_cheaper(const T* q, const T* pts, int64_t count, int64_t D, T radius2,
                           Row<T>& row) {
  int64_t scanned = 0;
  while (scanned < count && !row.full()) {
    const int64_t stop = std::min(count, scanned + kScanChunk);
    scan<T, DIM>(q, pts, scanned, stop, D, radius2, row);
    scanned = stop;
    const double found = static_cast<double>(row.count);
    const double share = std::max(found, 1.0) / static_cast<double>(scanned);
    const double scan_cost = static_cast<double>(row.K - row.count) / share;
    const double tree_cost = kTreeCostPerPoint * share * static_cast<double>(count) + kTreeOverhead;
    if (scan_cost > tree_cost) break;
  }
  return scanned;
}

// The `capacity` lowest indices among the points offered: a max-heap on the index.
template <typename T>
class LowestIndices {
 public:
  void reset(int64_t capacity) {
    capacity_ = capacity;
    heap_.clear();
  }
  // True when index j cannot enter (the heap is full of lower indices).
  bool rejects(int64_t j) const {
    return static_cast<int64_t>(heap_.size()) == capacity_ && j > heap_.front().first;
  }
  void offer(int64_t j, T d) {
    if (rejects(j)) return;
    if (static_cast<int64_t>(heap_.size()) == capacity_) {
      std::pop_heap(heap_.begin(), heap_.end(), by_index);
      heap_.back() = {j, d};
    } else {
      heap_.emplace_back(j, d);
    }
    std::push_heap(heap_.begin(), heap_.end(), by_index);
  }
  // Appends the kept points to the row in index order.
  void drain_into(Row<T>& row) {
    std::sort_heap(heap_.begin(), heap_.end(), by_index);
    for (const auto& [j, d] : heap_) row.append(j, d);
    heap_.clear();
  }

 private:
  static bool by_index(const std::pair<int64_t, T>& a, const std::pair<int64_t, T>& b) {
    return a.first < b.first;
  }
  int64_t capacity_ = 0;
  std::vector<std::pair<int64_t, T>> heap_;
};

// Offers every in-ball point with index >= first_index to `best`.
template <typename T, int DIM>
void tree_query(const KdTree<T>& tree, const T* q, T radius2, int64_t first_index,
                LowestIndices<T>& best) {
  const int64_t D = tree.D;
  visit_leaves_near_first<T, DIM, 2>(
      tree, q, [&] { return radius2; },
      [&](int64_t node) {
        const auto& leaf = tree.nodes[node];
        for (int64_t s = leaf.begin; s < leaf.end; ++s) {
          const int64_t j = tree.index[s];
          if (j < first_index || best.rejects(j)) continue;
          const T d = squared_distance<T, DIM>(q, tree.xyz.data() + s * D, D);
          if (d < radius2) best.offer(j, d);
        }
      });
}

template <typename T, int DIM>
void ball_query_cpu(const T* p1, const T* p2, const int64_t* lengths1, const int64_t* lengths2,
                    int64_t N, int64_t P1, int64_t P2, int64_t D, int64_t K, T radius2,
                    T* dists, int64_t* idx) {
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
  at::parallel_for(0, N * P1, 64, [&](int64_t begin, int64_t end) {
    LowestIndices<T> best;
    for (int64_t flat = begin; flat < end; ++flat) {
      const int64_t n = flat / P1, i = flat % P1;
      if (i >= lengths1[n]) continue;
      const T* q = p1 + flat * D;
      const T* pts = p2 + n * P2 * D;
      const int64_t count = lengths2[n];
      Row<T> row{dists + flat * K, idx + flat * K, K};
      if (!use_tree[n] || !all_finite(q, D)) {
        scan<T, DIM>(q, pts, 0, count, D, radius2, row);
        continue;
      }
      const int64_t scanned = scan_while_cheaper<T, DIM>(q, pts, count, D, radius2, row);
      if (row.full() || scanned == count) continue;
      best.reset(K - row.count);
      tree_query<T, DIM>(trees[n], q, radius2, scanned, best);
      best.drain_into(row);
    }
  });
}

void check_inputs(const at::Tensor& p1, const at::Tensor& p2, const at::Tensor& lengths1,
                  const at::Tensor& lengths2, int64_t K) {
  TORCH_CHECK(p1.dim() == 3 && p2.dim() == 3, "ball_query: p1 and p2 must be (N, P, D)");
  TORCH_CHECK(p1.size(0) == p2.size(0) && p1.size(2) == p2.size(2),
              "ball_query: p1 and p2 must agree in N and D");
  TORCH_CHECK(p1.scalar_type() == p2.scalar_type(), "ball_query: p1 and p2 dtypes differ");
  TORCH_CHECK(lengths1.scalar_type() == at::kLong && lengths2.scalar_type() == at::kLong,
              "ball_query: lengths must be int64");
  TORCH_CHECK(lengths1.numel() == p1.size(0) && lengths2.numel() == p2.size(0),
              "ball_query: lengths must have N entries");
  TORCH_CHECK(K >= 1, "ball_query: K must be >= 1");
}

std::tuple<at::Tensor, at::Tensor> ball_query_cpu_op(const at::Tensor& p1, const at::Tensor& p2,
                                                     const at::Tensor& lengths1,
                                                     const at::Tensor& lengths2, int64_t K,
                                                     double radius) {
  check_inputs(p1, p2, lengths1, lengths2, K);
  const auto a = p1.contiguous(), b = p2.contiguous();
  const auto l1 = lengths1.contiguous(), l2 = lengths2.contiguous();
  const int64_t N = a.size(0), P1 = a.size(1), P2 = b.size(1), D = a.size(2);
  auto dists = at::zeros({N, P1, K}, a.options());
  auto idx = at::full({N, P1, K}, -1, a.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "ball_query_cpu", [&] {
    const scalar_t r = static_cast<scalar_t>(radius);
    const auto run = [&](auto dim) {
      ball_query_cpu<scalar_t, decltype(dim)::value>(
          a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), l1.data_ptr<int64_t>(),
          l2.data_ptr<int64_t>(), N, P1, P2, D, K, r * r, dists.data_ptr<scalar_t>(),
          idx.data_ptr<int64_t>());
    };
    if (D == 3) {
      run(std::integral_constant<int, 3>{});
    } else {
      run(std::integral_constant<int, 0>{});
    }
  });
  return {dists, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(geomkit, CPU, m) { m.impl("ball_query", &ball_query_cpu_op); }

}  // namespace geomkit
