"""NearestScatterRasterizer (geomkit splatting) against NPBG++'s scatter_reduce algorithm,
and both against rasters worked out by hand."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

from npbgpp.models.rasterizer import NearestScatterRasterizer, ScatterReduceRasterizer

BOTH = (NearestScatterRasterizer, ScatterReduceRasterizer)


def _reference_pixel_coordinates(ndc: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """splat.py's recipe: xy = clamp(x_scr - 1e-6 + 0.5, min=0), NaN outside the NDC bounds."""
    h, w = size
    s = (min(size) - 1) / 2
    x_scr = -(s * ndc[..., 0] + (-(w - 1) / 2))
    y_scr = -(s * ndc[..., 1] + (-(h - 1) / 2))
    return torch.stack((x_scr - 1e-6 + 0.5, y_scr - 1e-6 + 0.5), dim=-1).clamp(min=0)


@pytest.fixture(autouse=True)
def _projection_module(monkeypatch):
    """Until npbgpp.models.projection exists, stand in the reference mapping for it."""
    try:
        importlib.import_module("npbgpp.models.projection")
    except ModuleNotFoundError as error:
        if error.name != "npbgpp.models.projection":
            raise
        stub = types.ModuleType("npbgpp.models.projection")
        stub.npbgpp_pixel_coordinates = _reference_pixel_coordinates
        monkeypatch.setitem(sys.modules, "npbgpp.models.projection", stub)


def _random_scene(seed: int, n: int = 2, p: int = 3000, c: int = 8):
    """Points over and beyond the NDC bounds, depths on a 0.25 grid (many exact ties)."""
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(n, p, 2, generator=g) * 2 - 1) * 1.8
    z = 0.5 + torch.randint(0, 12, (n, p, 1), generator=g) * 0.25
    descriptors = torch.randn(n, p, c, generator=g)
    valid = torch.rand(n, p, generator=g) > 0.1
    return torch.cat((xy, z), dim=2), descriptors, valid


@pytest.mark.parametrize("size", [(37, 53), (64, 48), (16, 16)])
def test_geomkit_and_scatter_reduce_rasters_are_identical(size):
    ndc, descriptors, valid = _random_scene(seed=sum(size))
    outputs = {}
    grads = {}
    for cls in BOTH:
        rasterizer = cls(descriptor_dim=8, learnable_bg=True)
        with torch.no_grad():
            rasterizer.bg_feature.copy_(torch.arange(8.0).view(1, 8, 1, 1) - 3)
        leaf = descriptors.clone().requires_grad_(True)
        rasters = rasterizer(ndc, leaf, size, valid_mask=valid)
        weights = torch.Generator().manual_seed(7)
        loss = sum((r * torch.randn(r.shape, generator=weights)).sum() for r in rasters)
        loss.backward()
        outputs[cls] = rasters
        grads[cls] = (leaf.grad, rasterizer.bg_feature.grad)
    expected_sizes = [(int(s * size[0]), int(s * size[1])) for s in (1, 0.5, 0.25, 0.125, 0.0625)]
    for mine, reference, (h, w) in zip(*outputs.values(), expected_sizes, strict=True):
        assert mine.shape == (2, 9, h, w)
        assert torch.equal(mine, reference)
    drawn = outputs[NearestScatterRasterizer][0][:, 8].detach().sum()
    assert float(drawn) > 100  # not an empty raster
    assert torch.equal(grads[BOTH[0]][0], grads[BOTH[1]][0])
    assert torch.equal(grads[BOTH[0]][1], grads[BOTH[1]][1])


def _hand_scene():
    """Points for a 4x6 image (s = 1.5, x_scr = 2.5 - 1.5 x, y_scr = 1.5 - 1.5 y).

    NDC (0, 0) -> x_scr 2.5, y_scr 1.5 -> NPBG++'s -1e-6 rounds both down: pixel (1, 2).
    """
    ndc = torch.tensor(
        [
            [0.0, 0.0, 2.0],  # 0: pixel (1, 2), farther than 1 and 2
            [0.0, 0.0, 1.5],  # 1: ties with 2 in depth, lower index -> wins (1, 2)
            [0.0, 0.0, 1.5],  # 2
            [0.0, 0.0, 0.9],  # 3: in front of the near plane: culled
            [0.0, 0.0, 1.0],  # 4: on it: culled (z > 1 strict)
            [1.5, 1.0, 3.0],  # 5: corner of the NDC bounds (inclusive): pixel (0, 0)
            [1.6, -1.0, 3.0],  # 6: beyond the long side's bound 1.5 (its pixel (3, 0) exists)
            [-1.5, -1.0, 5.0],  # 7: opposite corner: pixel (3, 5)
        ]
    )[None]
    descriptors = 10.0 + torch.arange(8.0)[:, None] + torch.tensor([0.0, 0.5])
    return ndc, descriptors


@pytest.mark.parametrize("cls", BOTH)
def test_hand_made_ties_near_plane_and_bounds(cls):
    ndc, descriptors = _hand_scene()
    rasterizer = cls(descriptor_dim=2, scales=(1.0, 0.5))
    with torch.no_grad():
        rasterizer.bg_feature.fill_(-1.0)
    full, half = rasterizer(ndc, descriptors, (4, 6))

    expected = torch.full((1, 3, 4, 6), -1.0)
    expected[:, 2] = 0.0
    for (row, col), point in {(1, 2): 1, (0, 0): 5, (3, 5): 7}.items():
        expected[0, :2, row, col] = descriptors[point]
        expected[0, 2, row, col] = 1.0
    assert torch.equal(full, expected)

    # 2x3 (s = 0.5, x_scr = 1 - 0.5 x, y_scr = 0.5 - 0.5 y): points 0-2 -> (0, 1), 5 -> (0, 0),
    # 7 -> (1, 2).
    expected = torch.full((1, 3, 2, 3), -1.0)
    expected[:, 2] = 0.0
    for (row, col), point in {(0, 1): 1, (0, 0): 5, (1, 2): 7}.items():
        expected[0, :2, row, col] = descriptors[point]
        expected[0, 2, row, col] = 1.0
    assert torch.equal(half, expected)


@pytest.mark.parametrize("cls", BOTH)
def test_bounds_are_the_full_images_at_every_scale(cls):
    """100x157 has long-side bound 1.57; its 1/16 raster 6x9 would have 1.5. NPBG++ tests the
    full image's bounds once: x = -1.55 is drawn at 1/16 (x_scr = 4 + 2.5 * 1.55 -> col 8)."""
    ndc = torch.tensor([[[-1.55, 0.0, 2.0], [1.58, 0.0, 2.0]]])
    rasters = cls(descriptor_dim=1)(ndc, torch.tensor([[4.0], [9.0]]), (100, 157))
    coarse = rasters[-1]
    assert coarse.shape == (1, 2, 6, 9)
    assert coarse[0, 1].nonzero().tolist() == [[2, 8]]
    assert float(coarse[0, 0, 2, 8]) == 4.0
    assert all(int(r[0, 1].sum()) == 1 for r in rasters)  # the point beyond 1.57 never drawn


@pytest.mark.parametrize("cls", BOTH)
def test_gradient_reaches_winners_and_background_only(cls):
    ndc, descriptors = _hand_scene()
    rasterizer = cls(descriptor_dim=2, learnable_bg=True)
    leaf = descriptors.clone().requires_grad_(True)
    rasters = rasterizer(ndc, leaf, (4, 6))
    sum(r[:, :2].sum() for r in rasters).backward()
    # Pixels won per point over the 5 scales (4x6, 2x3, 1x1, 0x0, 0x0).
    won = torch.zeros(8)
    for r in rasters:
        for row, col in r[0, 2].nonzero().tolist():
            hits = (r[0, :2, row, col] == descriptors).all(dim=1).nonzero()
            won[int(hits[0])] += 1
    assert won.tolist() == [0, 3, 0, 0, 0, 2, 0, 2]
    assert torch.equal(leaf.grad, won[:, None].expand(8, 2))
    empty = sum(float((r[0, 2] == 0).sum()) for r in rasters)
    assert empty == (24 - 3) + (6 - 3) + 0
    assert torch.equal(rasterizer.bg_feature.grad, torch.full((1, 2, 1, 1), empty))


def test_bg_feature_key_buffer_or_parameter():
    fixed = NearestScatterRasterizer()
    learnable = NearestScatterRasterizer(learnable_bg=True)
    for module in (fixed, learnable):
        assert list(module.state_dict()) == ["bg_feature"]
        assert module.state_dict()["bg_feature"].shape == (1, 8, 1, 1)
        assert not bool(module.state_dict()["bg_feature"].any())
    assert [n for n, _ in fixed.named_parameters()] == []
    assert [n for n, _ in learnable.named_parameters()] == ["bg_feature"]
    fixed.load_state_dict(learnable.state_dict(), strict=True)


def test_shared_descriptors_and_authors_config_keys():
    ndc, descriptors, _ = _random_scene(seed=3, n=2, p=500, c=8)
    rasterizer = NearestScatterRasterizer.from_config(
        descriptor_dim=8,
        cat_mask=True,
        scales=[1.0, 0.5, 0.25, 0.125, 0.0625],
        ss_scale=[1, 1, 1, 1, 1],
        invert_mask_values=False,
        learnable=False,
    )
    assert rasterizer.scales == (1.0, 0.5, 0.25, 0.125, 0.0625) and rasterizer.near == 1.0
    assert isinstance(rasterizer.bg_feature, torch.Tensor)
    assert not isinstance(rasterizer.bg_feature, torch.nn.Parameter)
    shared = rasterizer(ndc, descriptors[0], (20, 30))
    per_batch = rasterizer(ndc, descriptors[0].expand(2, -1, -1), (20, 30))
    assert all(torch.equal(a, b) for a, b in zip(shared, per_batch, strict=True))
    with pytest.raises(ValueError, match="ss_scale"):
        NearestScatterRasterizer.from_config(ss_scale=[2, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"descriptors must be \(2, 500, 8\)"):
        rasterizer(ndc, descriptors[..., :3], (20, 30))
