"""splat_points / splat_points_multiscale / scatter_features: kernels against the scatter_reduce
reference and a brute-force definition, ties, culling, edge cases, gradients, NPBG++'s mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geomkit.ext import geomkit_extension
from geomkit.ops._reference import splat as reference
from geomkit.ops.splat import (
    Splat,
    scale_coordinates,
    scatter_features,
    splat_points,
    splat_points_multiscale,
)
from tests.helpers import assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TINY = float(np.finfo(np.float32).smallest_subnormal)


def random_splat_inputs(n, p, height, width, dtype, device, seed, depth_levels=None):
    """Points over the image plus a 2-pixel margin; depth_levels quantises depths into ties.

    lengths[0] = p, the other lengths random.
    """
    g = torch.Generator().manual_seed(seed)
    span = torch.tensor([width + 4.0, height + 4.0], dtype=torch.float64)
    xy = torch.rand(n, p, 2, generator=g, dtype=torch.float64) * span - 2.0
    if depth_levels is None:
        depth = torch.rand(n, p, generator=g, dtype=torch.float64) * 4.0 - 0.5
    else:
        depth = torch.randint(0, depth_levels, (n, p), generator=g) * 0.25
    lengths = torch.randint(0, p + 1, (n,), generator=g)
    lengths[0] = p
    return xy.to(dtype).to(device), depth.to(dtype).to(device), lengths.to(device)


def brute_force_splat(xy, depth, lengths, height, width, near):
    """The definition, point by point in Python: per pixel the smallest (depth, index)."""
    xy, depth = xy.detach().cpu().double().numpy(), depth.detach().cpu().double().numpy()
    N, P = depth.shape
    index = np.full((N, height, width), -1, dtype=np.int64)
    best = np.full((N, height, width), -1.0)
    for n in range(N):
        for i in range(int(lengths[n])):
            x, y, d = xy[n, i, 0], xy[n, i, 1], depth[n, i]
            if not (math.isfinite(d) and d > near and 0 <= x < width and 0 <= y < height):
                continue
            r, c = math.floor(y), math.floor(x)
            if index[n, r, c] < 0 or d < best[n, r, c]:  # lower index first: ties keep it
                index[n, r, c], best[n, r, c] = i, d
    return index, best


def assert_same_splat(actual, expected, what=""):
    assert torch.equal(actual[0].cpu(), expected[0].cpu()), f"{what} index differs"
    assert torch.equal(actual[1].cpu(), expected[1].cpu()), f"{what} depth differs"


def test_extension_compiled_on_cpu():
    """The suite must exercise the C++ kernel, not silently the reference."""
    ext = geomkit_extension()
    assert ext.has_kernel("splat_points", "cpu"), ext.reason


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "n,p,height,width,levels,near",
    [
        (3, 2000, 24, 31, None, 0.0),
        (3, 2000, 24, 31, 5, 0.25),  # many exact depth ties
        (2, 3000, 5, 7, 3, 0.0),  # dozens of points per pixel
        (1, 100_000, 64, 48, 9, 0.5),  # spans several threads' chunks
        (2, 500, 1, 1, 4, 0.0),
    ],
)
def test_matches_reference(device, dtype, n, p, height, width, levels, near):
    xy, depth, lengths = random_splat_inputs(n, p, height, width, dtype, device, 1, levels)
    result = splat_points(xy, depth, (height, width), lengths, near=near)
    assert isinstance(result, Splat)
    assert result.index.shape == (n, height, width) and result.index.dtype == torch.int64
    assert result.depth.shape == (n, height, width) and result.depth.dtype == dtype
    expected = reference.splat_points(xy, depth, lengths, height, width, near)
    assert_same_splat(result, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_definition_brute_force(dtype):
    """An independent check of the definition (not only kernel == reference)."""
    xy, depth, lengths = random_splat_inputs(2, 1500, 9, 13, dtype, "cpu", 2, depth_levels=6)
    xy[0, :20] = float("nan")
    depth[0, 20:40] = float("inf")
    index, best = brute_force_splat(xy, depth, lengths, 9, 13, near=0.25)
    for result in (
        splat_points(xy, depth, (9, 13), lengths, near=0.25),
        reference.splat_points(xy, depth, lengths, 9, 13, 0.25),
    ):
        assert np.array_equal(result[0].numpy(), index)
        assert_close(result[1], best, what="winner depth")
    assert (index >= 0).mean() > 0.5 and (index < 0).any()


@pytest.mark.parametrize("device", DEVICES)
def test_all_points_in_one_pixel_and_ties(device):
    g = torch.Generator().manual_seed(3)
    xy = torch.full((2, 400, 2), 2.5).to(device)  # every point in pixel (2, 2)
    depth = (torch.randint(1, 6, (2, 400), generator=g) * 1.0).to(device)
    lengths = torch.tensor([400, 250], device=device)
    result = splat_points(xy, depth, (4, 5), lengths)
    for n, count in enumerate((400, 250)):
        d = depth[n, :count].cpu()
        first_min = int(torch.nonzero(d == d.min())[0])  # lowest index among the nearest
        assert int(result.index[n, 2, 2]) == first_min
        assert float(result.depth[n, 2, 2]) == float(d.min())
    others = torch.ones(4, 5, dtype=torch.bool)
    others[2, 2] = False
    assert torch.all(result.index[:, others] == -1) and torch.all(result.depth[:, others] == -1)
    # All equal depths: the lowest index wins.
    ties = splat_points(xy, torch.ones(2, 400, device=device), (4, 5))
    assert ties.index[:, 2, 2].tolist() == [0, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2])
def test_ties_across_cpu_threads(dtype, n):
    """The CPU kernel splits each cloud's points among threads: ties must still go to the
    lowest index, whatever the thread count."""
    xy, depth, lengths = random_splat_inputs(n, 4000, 2, 3, dtype, "cpu", 11, depth_levels=3)
    expected = reference.splat_points(xy, depth, lengths, 2, 3, 0.0)
    threads = torch.get_num_threads()
    try:
        for count in (1, 3, 4):
            torch.set_num_threads(count)
            assert_same_splat(splat_points(xy, depth, (2, 3), lengths), expected, f"{count}")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_culling_bounds_and_non_finite(device, dtype):
    nan, inf = float("nan"), float("inf")
    near = 0.1  # not a float32 value: float32(0.1) > 0.1, so a depth equal to it is kept
    kept_depth = float(torch.tensor(0.1, dtype=dtype))
    cases = [
        # (x, y, depth, expected pixel (row, col) or None)
        (0.5, 0.5, 0.1 if dtype == torch.float64 else 0.09, None),  # depth <= near
        (1.5, 0.5, kept_depth if dtype == torch.float32 else 0.2, (0, 1)),
        (2.5, 0.5, -1.0, None),  # behind the camera
        (3.5, 0.5, inf, None),
        (4.5, 0.5, nan, None),
        (nan, 1.5, 1.0, None),
        (inf, 1.5, 1.0, None),
        (0.5, -inf, 1.0, None),
        (6.0, 1.5, 1.0, None),  # x == W is outside
        (1.5, 4.0, 1.0, None),  # y == H is outside
        (-1e-7, 1.5, 1.0, None),
        (-TINY, 2.5, 1.0, None),  # negative denormal: outside (whatever flush-to-zero does)
        (-0.0, 1.5, 1.0, (1, 0)),  # -0 is 0: inside
        (np.nextafter(np.float32(6), 0), 2.5, 1.0, (2, 5)),
        (TINY, 3.5, 1.0, (3, 0)),
        (2.5, 3.999, TINY, None),  # denormal depth <= near
    ]
    xy = torch.tensor([[[c[0], c[1]] for c in cases]], dtype=dtype, device=device)
    depth = torch.tensor([[c[2] for c in cases]], dtype=dtype, device=device)
    result = splat_points(xy, depth, (4, 6), near=near)
    expected = torch.full((1, 4, 6), -1, dtype=torch.int64)
    for i, case in enumerate(cases):
        if case[3] is not None:
            expected[0, case[3][0], case[3][1]] = i
    assert torch.equal(result.index.cpu(), expected)
    lengths = torch.tensor([len(cases)], device=device)
    assert_same_splat(result, reference.splat_points(xy, depth, lengths, 4, 6, near))
    # With near = 0 a denormal depth is in front of the camera.
    tiny = splat_points(xy[:, -1:], depth[:, -1:], (4, 6))
    assert int(tiny.index[0, 3, 2]) == 0


@pytest.mark.parametrize("device", DEVICES)
def test_points_beyond_lengths_are_ignored(device):
    xy = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [1.5, 0.5]]] * 2, device=device)
    depth = torch.tensor([[3.0, 1.0, 1.0]] * 2, device=device)  # point 1 is nearer
    result = splat_points(xy, depth, (1, 2), torch.tensor([1, 3], device=device))
    assert result.index.cpu().tolist() == [[[0, -1]], [[1, 2]]]
    assert result.depth.cpu().tolist() == [[[3.0, -1.0]], [[1.0, 1.0]]]


@pytest.mark.parametrize("device", DEVICES)
def test_empty_inputs(device):
    for n, p, h, w in ((2, 0, 3, 4), (0, 5, 3, 4), (2, 5, 0, 4), (2, 5, 3, 0)):
        xy = torch.rand(n, p, 2, device=device) * 3
        result = splat_points(xy, torch.ones(n, p, device=device), (h, w))
        assert result.index.shape == (n, h, w) and result.depth.shape == (n, h, w)
        assert torch.all(result.index == -1) and torch.all(result.depth == -1)
    xy = torch.rand(2, 5, 2, device=device)
    none = splat_points(xy, torch.ones(2, 5, device=device), (3, 4), torch.zeros(2).long())
    assert torch.all(none.index == -1)


def test_non_contiguous_and_half_inputs():
    xy, depth, lengths = random_splat_inputs(2, 800, 10, 12, torch.float32, "cpu", 4, 4)
    xy_t = xy.transpose(1, 2).contiguous().transpose(1, 2)
    depth_t = depth.t().contiguous().t()
    assert not xy_t.is_contiguous() and not depth_t.is_contiguous()
    expected = reference.splat_points(xy, depth, lengths, 10, 12, 0.0)
    assert_same_splat(splat_points(xy_t, depth_t, (10, 12), lengths), expected)
    half = splat_points(xy.half(), depth.half(), (10, 12), lengths)
    assert half.depth.dtype == torch.float16
    expected_half = reference.splat_points(
        xy.half().float(), depth.half().float(), lengths, 10, 12, 0.0
    )
    assert torch.equal(half.index, expected_half[0])
    assert torch.equal(half.depth.float(), expected_half[1])


@pytest.mark.gpu
def test_cuda_matches_cpu_kernel():
    for dtype in (torch.float32, torch.float64):
        xy, depth, lengths = random_splat_inputs(3, 50_000, 40, 56, dtype, "cpu", 5, 7)
        cpu = splat_points(xy, depth, (40, 56), lengths, near=0.25)
        cuda = splat_points(xy.cuda(), depth.cuda(), (40, 56), lengths.cuda(), near=0.25)
        assert_same_splat(cuda, cpu, str(dtype))


def test_multiscale_sizes_and_coordinates():
    H, W = 37, 50
    xy, depth, lengths = random_splat_inputs(2, 3000, H, W, torch.float32, "cpu", 6, 5)
    results = splat_points_multiscale(xy, depth, (H, W), lengths=lengths, near=0.25)
    sizes = [(r.index.shape[1], r.index.shape[2]) for r in results]
    assert sizes == [(37, 50), (18, 25), (9, 12), (4, 6), (2, 3)]
    for scale, result in zip((1.0, 0.5, 0.25, 0.125, 0.0625), results, strict=True):
        h, w = int(scale * H), int(scale * W)
        factor = torch.tensor([w / W, h / H], dtype=torch.float32)
        expected = reference.splat_points(xy * factor, depth, lengths, h, w, 0.25)
        assert_same_splat(result, expected, f"scale {scale}")
    # Hand-made: (x, y) = (49.9, 36.9) is the last pixel at every scale; 1/16 of 37 rows is 2.
    corner = splat_points_multiscale(torch.tensor([[[49.9, 36.9]]]), torch.ones(1, 1), (H, W))
    assert [int(r.index[0, -1, -1]) for r in corner] == [0] * 5
    scaled, size = scale_coordinates(torch.tensor([[10.0, 20.0]]), (H, W), 0.25)
    assert size == (9, 12)
    assert_close(scaled, [[10.0 * 12 / 50, 20.0 * 9 / 37]], rtol=1e-6, what="scaled xy")


def npbgpp_scatter(features, index, background):
    """NPBG++'s feature splat, as written there: a per-point pixel id (H*W for losers),
    zeros(N, C+1, H*W+1).scatter_(2, ids, [features; 1]), crop, background where the mask is 0."""
    N, P, C = features.shape
    _, H, W = index.shape
    pixel_of_point = torch.full((N, P), H * W, dtype=torch.int64)
    for n in range(N):
        winners = torch.nonzero(index[n].reshape(-1) >= 0).flatten()
        pixel_of_point[n, index[n].reshape(-1)[winners]] = winners
    descriptors = torch.cat(
        (features.transpose(1, 2), torch.ones(N, 1, P, dtype=features.dtype)), 1
    )
    image = torch.zeros(N, C + 1, H * W + 1, dtype=features.dtype)
    image.scatter_(2, pixel_of_point[:, None, :].expand(-1, C + 1, -1), descriptors)
    image = image[:, :, : H * W].reshape(N, C + 1, H, W)
    return torch.where(image[:, -1:] != 0, image[:, :-1], background[None, :, None, None])


def test_scatter_features_matches_npbgpp_scatter():
    xy, depth, lengths = random_splat_inputs(2, 600, 11, 9, torch.float32, "cpu", 7, 4)
    index = splat_points(xy, depth, (11, 9), lengths).index
    features = torch.randn(2, 600, 5)
    background = torch.randn(5)
    image = scatter_features(features, index, background)
    assert image.shape == (2, 5, 11, 9)
    assert torch.equal(image, npbgpp_scatter(features, index, background))
    zeros_bg = scatter_features(features, index)
    assert torch.all(zeros_bg.permute(0, 2, 3, 1)[index < 0] == 0)
    no_points = scatter_features(torch.zeros(2, 0, 5), torch.full((2, 3, 4), -1), background)
    assert torch.equal(no_points, background[None, :, None, None].expand(2, 5, 3, 4))


def test_scatter_features_gradients():
    g = torch.Generator().manual_seed(8)
    xy, depth, lengths = random_splat_inputs(2, 40, 4, 5, torch.float64, "cpu", 9, 3)
    index = splat_points(xy, depth, (4, 5), lengths).index
    features = torch.randn(2, 40, 3, generator=g, dtype=torch.float64, requires_grad=True)
    background = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f, b: scatter_features(f, index, b), (features, background)
    )
    scatter_features(features, index, background).sum().backward()
    empty = int((index < 0).sum())
    assert 0 < empty < index.numel()
    assert_close(background.grad, [float(empty)] * 3, what="background gradient")
    is_winner = torch.zeros(2, 40, dtype=torch.bool)
    for n in range(2):
        is_winner[n, index[n][index[n] >= 0]] = True
    assert torch.all(features.grad[~is_winner] == 0) and torch.all(features.grad[is_winner] == 1)


def test_splat_depth_gradient_reaches_winners():
    g = torch.Generator().manual_seed(10)
    xy = torch.rand(2, 30, 2, generator=g, dtype=torch.float64) * 3
    # Depths at least 0.01 apart: gradcheck's perturbation cannot change a winner.
    depth = torch.randperm(60, generator=g).reshape(2, 30).double() * 0.01 + 0.5
    depth.requires_grad_(True)
    lengths = torch.tensor([30, 21])
    weights = torch.rand(2, 3, 3, generator=g, dtype=torch.float64)
    (splat_points(xy, depth, (3, 3), lengths).depth * weights).sum().backward()
    grad = depth.grad.clone()
    depth.grad = None
    (reference.splat_points(xy, depth, lengths, 3, 3, 0.0)[1] * weights).sum().backward()
    assert_close(grad, depth.grad, atol=1e-12, what="depth gradient")
    assert int((grad != 0).sum()) == int(
        (splat_points(xy, depth, (3, 3), lengths).index >= 0).sum()
    )
    assert torch.autograd.gradcheck(lambda d: splat_points(xy, d, (3, 3), lengths).depth, (depth,))


def npbgpp_pixels(ndc, height, width):
    """NPBG++'s points_to_pixels (float32, trunc): (N, P, 2) NDC -> (row, col), (-1, -1) out."""
    s = (min(height, width) - 1) / 2
    x_scr = -(s * ndc[..., 0] - (width - 1) / 2)
    y_scr = -(s * ndc[..., 1] - (height - 1) / 2)
    col, row = (x_scr - 1e-6 + 0.5).long(), (y_scr - 1e-6 + 0.5).long()
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return torch.where(inside, row, -1), torch.where(inside, col, -1)


def npbgpp_to_splat_xy(ndc, height, width, full_size):
    """The mapping documented in geomkit.ops.splat: NPBG++'s x_scr - 1e-6 + 0.5, clamped at 0,
    NaN where NPBG++'s NDC bounds test (at the full size) rejects the point."""
    s = (min(height, width) - 1) / 2
    x_scr = -(s * ndc[..., 0] - (width - 1) / 2)
    y_scr = -(s * ndc[..., 1] - (height - 1) / 2)
    xy = torch.stack((x_scr - 1e-6 + 0.5, y_scr - 1e-6 + 0.5), -1).clamp(min=0)
    H, W = full_size
    bound_x, bound_y = max(W / H, 1.0), max(H / W, 1.0)
    inside = (ndc[..., 0].abs() <= bound_x) & (ndc[..., 1].abs() <= bound_y)
    return torch.where(inside[..., None], xy, float("nan"))


def test_npbgpp_pixel_mapping():
    H, W = 4, 6  # s = 1.5; NDC bounds |x| <= 1.5, |y| <= 1
    ndc = torch.tensor(
        [
            [1.0, 1.0],  # x_scr 1, y_scr 0
            [0.0, 0.0],  # x_scr 2.5: on the edge of cols 2 and 3, NPBG++ picks 2; y_scr 1.5 -> 1
            [1.5, -1.0],  # long-side bound: x_scr 0.25 -> col 0; y_scr 3
            [-1.5, 1.0 / 3.0],  # x_scr 4.75 -> col 5; y_scr 1.0 -> row 1
            [-1.0, -1.0 / 3.0],  # x_scr 4, y_scr 2
            [1.6, 0.0],  # outside NPBG++'s bounds
        ],
        dtype=torch.float32,
    )[None]
    hand_derived = [(0, 1), (1, 2), (3, 0), (1, 5), (2, 4), (-1, -1)]
    rows, cols = npbgpp_pixels(ndc, H, W)
    in_bounds = torch.tensor([True] * 5 + [False])
    npbgpp = [
        (int(r), int(c)) if ok else (-1, -1)
        for r, c, ok in zip(rows[0], cols[0], in_bounds, strict=True)
    ]
    assert npbgpp == hand_derived
    xy = npbgpp_to_splat_xy(ndc, H, W, (H, W))
    result = splat_points(xy, torch.full((1, 6), 2.0), (H, W), near=1.0)
    for i, (r, c) in enumerate(hand_derived):
        if r >= 0:
            assert int(result.index[0, r, c]) == i, f"point {i}"
    assert int((result.index >= 0).sum()) == 5
    # NPBG++'s near plane z > 1: depth 1 is culled.
    assert torch.all(splat_points(xy, torch.ones(1, 6), (H, W), near=1.0).index == -1)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: splat_points(torch.zeros(4, 2), torch.zeros(4), (2, 2)), "xy must be a"),
        (lambda: splat_points(torch.zeros(1, 4, 3), torch.zeros(1, 4), (2, 2)), "xy must be a"),
        (lambda: splat_points(torch.zeros(1, 4, 2).long(), torch.zeros(1, 4), (2, 2)), "floating"),
        (lambda: splat_points(torch.zeros(1, 4, 2), torch.zeros(1, 3), (2, 2)), "depth must be"),
        (lambda: splat_points(torch.zeros(1, 4, 2), torch.zeros(1, 4).double(), (2, 2)), "share"),
        (lambda: splat_points(torch.zeros(1, 4, 2), torch.zeros(1, 4), (2,)), "image_size"),
        (lambda: splat_points(torch.zeros(1, 4, 2), torch.zeros(1, 4), (2, -1)), "image_size"),
        (lambda: splat_points(torch.zeros(1, 4, 2), torch.zeros(1, 4), (2.0, 2)), "image_size"),
        (lambda: splat_points(torch.zeros(1, 4, 2), torch.zeros(1, 4), (2, 2), near=-1), "near"),
        (
            lambda: splat_points(torch.zeros(1, 4, 2), torch.zeros(1, 4), (2, 2), near=math.nan),
            "near",
        ),
        (
            lambda: splat_points(
                torch.zeros(1, 4, 2), torch.zeros(1, 4), (2, 2), torch.tensor([5])
            ),
            r"lengths must lie in \[0, 4\]",
        ),
        (
            lambda: splat_points(
                torch.zeros(1, 4, 2), torch.zeros(1, 4), (2, 2), torch.tensor([1.0])
            ),
            "lengths must be an integer",
        ),
        (
            lambda: splat_points_multiscale(
                torch.zeros(1, 4, 2), torch.zeros(1, 4), (2, 2), scales=(1.0, 0)
            ),
            "scales must be",
        ),
        (
            lambda: scatter_features(torch.zeros(1, 4), torch.zeros(1, 2, 2).long()),
            "features must be",
        ),
        (
            lambda: scatter_features(torch.zeros(1, 4, 3), torch.zeros(2, 2, 2).long()),
            "index must be",
        ),
        (lambda: scatter_features(torch.zeros(1, 4, 3), torch.zeros(1, 2, 2)), "index must be"),
        (
            lambda: scatter_features(torch.zeros(1, 4, 3), torch.full((1, 2, 2), 4)),
            r"index must lie in \[-1, 3\]",
        ),
        (
            lambda: scatter_features(
                torch.zeros(1, 4, 3), torch.zeros(1, 2, 2).long(), torch.zeros(2)
            ),
            r"background must be a \(3,\) tensor",
        ),
    ],
)
def test_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
