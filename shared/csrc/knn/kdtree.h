// A kd-tree over one point cloud for exact neighbour searches on the CPU.
//
// Build: split each node along the widest axis of its region (the parent's region cut at the
// parent's split) around an approximate median, until at most kKdLeafSize points remain or
// kKdMaxDepth is reached. Each node keeps the TIGHT bounding box of its points, filled bottom
// up. Any split is correct because searches prune with these boxes: the distance from a query
// to a box never exceeds its distance to a point inside, also in floating point (rounding is
// monotone), so skipping a box farther than the current bound never loses a point.
//
// Memory: the two children of a node are adjacent nodes (right = left + 1), so both child
// boxes are read together; point coordinates are copied in leaf order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace geomkit {

constexpr int64_t kKdLeafSize = 32;
constexpr int kKdMaxDepth = 64;
constexpr int kKdPivotSamples = 31;

template <typename T>
struct KdTree {
  struct Node {
    int64_t begin, end;  // slots of the node's points
    int64_t left;        // first child (the second is left + 1); -1 for a leaf
  };
  int64_t D = 0;
  std::vector<Node> nodes;
  std::vector<T> boxes;        // per node: D lower bounds, then D upper bounds
  std::vector<int64_t> index;  // slot -> index of the point in the input
  std::vector<T> xyz;          // slot -> its D coordinates

  const T* lo(int64_t node) const { return boxes.data() + node * 2 * D; }
  const T* hi(int64_t node) const { return boxes.data() + node * 2 * D + D; }
};

namespace kdtree_detail {

template <typename T>
void tight_box(KdTree<T>& tree, int64_t node) {
  const int64_t D = tree.D;
  T* lo = tree.boxes.data() + node * 2 * D;
  T* hi = lo + D;
  const auto& nd = tree.nodes[node];
  std::copy(&tree.xyz[nd.begin * D], &tree.xyz[nd.begin * D] + D, lo);
  std::copy(&tree.xyz[nd.begin * D], &tree.xyz[nd.begin * D] + D, hi);
  for (int64_t s = nd.begin + 1; s < nd.end; ++s) {
    for (int64_t d = 0; d < D; ++d) {
      lo[d] = std::min(lo[d], tree.xyz[s * D + d]);
      hi[d] = std::max(hi[d], tree.xyz[s * D + d]);
    }
  }
}

// Partitions slots [first, last) by coordinate `axis` around the median of kKdPivotSamples
// evenly spread samples, in one three-way pass that moves coordinates and indices together;
// returns a split slot with both sides non-empty, as near the middle as the partition allows.
template <typename T>
int64_t partition_near_median(KdTree<T>& tree, int64_t first, int64_t last, int64_t axis) {
  const int64_t D = tree.D, count = last - first, mid = first + count / 2;
  T* xyz = tree.xyz.data();
  const auto key = [&](int64_t slot) { return xyz[slot * D + axis]; };
  T samples[kKdPivotSamples];
  for (int k = 0; k < kKdPivotSamples; ++k) {
    samples[k] = key(first + (count - 1) * k / (kKdPivotSamples - 1));
  }
  std::nth_element(samples, samples + kKdPivotSamples / 2, samples + kKdPivotSamples);
  const T pivot = samples[kKdPivotSamples / 2];
  int64_t below = first, scan = first, above = last;
  while (scan < above) {
    const T v = key(scan);
    int64_t target = -1;
    if (v < pivot) {
      target = below++;
    } else if (pivot < v) {
      target = --above;
    }
    if (target < 0 || target == scan) {
      ++scan;
      continue;
    }
    std::swap(tree.index[target], tree.index[scan]);
    std::swap_ranges(xyz + target * D, xyz + target * D + D, xyz + scan * D);
    if (target < scan) ++scan;  // what came to `scan` is from the run equal to the pivot
  }
  if (mid < below) return below;
  if (mid >= above) return above;
  return mid;  // inside the run equal to the pivot
}

template <typename T>
void build_node(KdTree<T>& tree, int64_t node, std::vector<T>& region, int depth) {
  const int64_t D = tree.D, first = tree.nodes[node].begin, last = tree.nodes[node].end;
  if (last - first <= kKdLeafSize || depth >= kKdMaxDepth) {
    tight_box(tree, node);
    return;
  }
  int64_t axis = 0;
  for (int64_t d = 1; d < D; ++d) {
    if (region[D + d] - region[d] > region[D + axis] - region[axis]) axis = d;
  }
  const int64_t split_slot = partition_near_median(tree, first, last, axis);
  const T split = tree.xyz[split_slot * D + axis];
  const int64_t left = static_cast<int64_t>(tree.nodes.size());
  tree.nodes[node].left = left;
  tree.nodes.push_back({first, split_slot, -1});
  tree.nodes.push_back({split_slot, last, -1});
  tree.boxes.resize(tree.nodes.size() * 2 * D);
  const T saved_hi = region[D + axis];
  region[D + axis] = split;
  build_node(tree, left, region, depth + 1);
  region[D + axis] = saved_hi;
  const T saved_lo = region[axis];
  region[axis] = split;
  build_node(tree, left + 1, region, depth + 1);
  region[axis] = saved_lo;
  T* box = tree.boxes.data() + node * 2 * D;
  const T* a = tree.boxes.data() + left * 2 * D;
  const T* b = a + 2 * D;
  for (int64_t d = 0; d < D; ++d) {
    box[d] = std::min(a[d], b[d]);
    box[D + d] = std::max(a[D + d], b[D + d]);
  }
}

}  // namespace kdtree_detail

// Builds the tree over pts (n, D), n >= 1, all coordinates finite.
template <typename T>
void build_kdtree(const T* pts, int64_t n, int64_t D, KdTree<T>& tree) {
  tree.D = D;
  tree.index.resize(n);
  for (int64_t j = 0; j < n; ++j) tree.index[j] = j;
  tree.xyz.assign(pts, pts + n * D);
  tree.nodes.reserve(2 * (n / kKdLeafSize + 1) + 1);
  tree.nodes.assign(1, {0, n, -1});
  tree.boxes.resize(2 * D);
  std::vector<T> region(2 * D);  // the root's region: the points' bounding box
  for (int64_t d = 0; d < D; ++d) {
    region[d] = region[D + d] = pts[d];
    for (int64_t j = 1; j < n; ++j) {
      region[d] = std::min(region[d], pts[j * D + d]);
      region[D + d] = std::max(region[D + d], pts[j * D + d]);
    }
  }
  kdtree_detail::build_node(tree, 0, region, 0);
}

// Distance from q to a node's box: squared Euclidean (NORM 2) or Manhattan (NORM 1). DIM is
// the dimension when known at compile time (0: tree.D).
template <typename T, int DIM, int NORM>
inline T box_distance(const KdTree<T>& tree, int64_t node, const T* q) {
  const int64_t dims = DIM > 0 ? DIM : tree.D;
  const T* lo = tree.boxes.data() + node * 2 * dims;
  const T* hi = lo + dims;
  T acc = 0;
  for (int64_t d = 0; d < dims; ++d) {
    const T gap = q[d] < lo[d] ? lo[d] - q[d] : (q[d] > hi[d] ? q[d] - hi[d] : T(0));
    acc += NORM == 2 ? gap * gap : gap;
  }
  return acc;
}

// The leaf reached by always stepping into the nearer child box.
template <typename T, int DIM, int NORM>
int64_t nearest_leaf(const KdTree<T>& tree, const T* q) {
  int64_t node = 0;
  while (tree.nodes[node].left >= 0) {
    const int64_t left = tree.nodes[node].left;
    const bool go_left =
        box_distance<T, DIM, NORM>(tree, left, q) <= box_distance<T, DIM, NORM>(tree, left + 1, q);
    node = go_left ? left : left + 1;
  }
  return node;
}

// Calls visit_leaf(node) for every leaf whose box lies within bound() of q, nearer leaves
// first (depth first, nearer child first). bound() is re-read as it may shrink during the
// search (K nearest) or stay fixed (radius search).
template <typename T, int DIM, int NORM, typename Bound, typename VisitLeaf>
void visit_leaves_near_first(const KdTree<T>& tree, const T* q, Bound bound,
                             VisitLeaf visit_leaf) {
  struct Entry {
    int64_t node;
    T distance;
  };
  Entry stack[kKdMaxDepth + 2];  // holds at most one pending sibling per level
  int depth = 0;
  stack[depth++] = {0, box_distance<T, DIM, NORM>(tree, 0, q)};
  while (depth > 0) {
    const Entry e = stack[--depth];
    if (e.distance > bound()) continue;
    int64_t node = e.node;
    while (tree.nodes[node].left >= 0) {
      const int64_t left = tree.nodes[node].left;
      const T to_left = box_distance<T, DIM, NORM>(tree, left, q);
      const T to_right = box_distance<T, DIM, NORM>(tree, left + 1, q);
      const bool left_first = to_left <= to_right;
      const T near_distance = left_first ? to_left : to_right;
      const T far_distance = left_first ? to_right : to_left;
      if (!(far_distance > bound())) stack[depth++] = {left_first ? left + 1 : left, far_distance};
      if (near_distance > bound()) break;
      node = left_first ? left : left + 1;
    }
    if (tree.nodes[node].left < 0) visit_leaf(node);  // else the walk stopped early
  }
}

}  // namespace geomkit
