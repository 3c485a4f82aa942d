"""geomkit.sfm.superpoint / superglue: the authors' weight files load strictly (fabricated with
their key names and shapes), SuperPoint's heatmap layout, NMS, border and top-k logic and
descriptor sampling, the attention heads, log-space Sinkhorn against a float64 reference, the
mutual check, and SuperGlue matching a permuted copy of a keypoint set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geomkit.errors import CheckpointError
from geomkit.sfm.superglue import (
    MultiHeadedAttention,
    SuperGlue,
    SuperGlueConfig,
    load_superglue,
    log_optimal_transport,
    mutual_matches,
)
from geomkit.sfm.superpoint import (
    SuperPoint,
    SuperPointConfig,
    heatmap_keypoints,
    load_superpoint,
    sample_descriptors,
)

# --- the authors' layouts (magicleap SuperGluePretrainedNetwork), written out independently ---


def superpoint_shapes() -> dict[str, tuple[int, ...]]:
    convs = {"conv1a": (64, 1, 3), "conv1b": (64, 64, 3), "conv2a": (64, 64, 3),
             "conv2b": (64, 64, 3), "conv3a": (128, 64, 3), "conv3b": (128, 128, 3),
             "conv4a": (128, 128, 3), "conv4b": (128, 128, 3), "convPa": (256, 128, 3),
             "convPb": (65, 256, 1), "convDa": (256, 128, 3), "convDb": (256, 256, 1)}  # fmt: skip
    shapes = {}
    for name, (c_out, c_in, k) in convs.items():
        shapes[f"{name}.weight"] = (c_out, c_in, k, k)
        shapes[f"{name}.bias"] = (c_out,)
    return shapes


def _mlp_shapes(prefix: str, widths: list[int]) -> dict[str, tuple[int, ...]]:
    """Conv1d at 0, 3, 6, ...; BatchNorm1d at 1, 4, ... after all but the last conv."""
    shapes = {}
    for k in range(1, len(widths)):
        conv = f"{prefix}.{3 * (k - 1)}"
        shapes[f"{conv}.weight"] = (widths[k], widths[k - 1], 1)
        shapes[f"{conv}.bias"] = (widths[k],)
        if k < len(widths) - 1:
            bn = f"{prefix}.{3 * (k - 1) + 1}"
            for field in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{bn}.{field}"] = (widths[k],)
            shapes[f"{bn}.num_batches_tracked"] = ()
    return shapes


def superglue_shapes() -> dict[str, tuple[int, ...]]:
    shapes = _mlp_shapes("kenc.encoder", [3, 32, 64, 128, 256, 256])
    for layer in range(18):
        attn = f"gnn.layers.{layer}.attn"
        for conv in ("merge", "proj.0", "proj.1", "proj.2"):
            shapes[f"{attn}.{conv}.weight"] = (256, 256, 1)
            shapes[f"{attn}.{conv}.bias"] = (256,)
        shapes.update(_mlp_shapes(f"gnn.layers.{layer}.mlp", [512, 512, 256]))
    shapes["final_proj.weight"] = (256, 256, 1)
    shapes["final_proj.bias"] = (256,)
    shapes["bin_score"] = ()
    return shapes


def fabricate(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Small random weights (unit BatchNorm statistics) of the given layout."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.ones(shape)
        elif key.endswith("running_mean"):
            state[key] = torch.zeros(shape)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    return state


def write_official_weights(folder: Path) -> Path:
    """superpoint_v1.pth, superglue_outdoor.pth and superglue_indoor.pth in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(fabricate(superpoint_shapes(), 1), folder / "superpoint_v1.pth")
    for seed, kind in enumerate(("outdoor", "indoor"), start=2):
        torch.save(fabricate(superglue_shapes(), seed), folder / f"superglue_{kind}.pth")
    return folder


# --- loading ----------------------------------------------------------------------------------


def test_official_layouts_load_strictly(tmp_path):
    assert len(superpoint_shapes()) == 24 and len(superglue_shapes()) == 339
    folder = write_official_weights(tmp_path / "w")
    sp, sg = load_superpoint(folder), load_superglue(folder, "outdoor")
    assert not sp.training and not sg.training
    saved = torch.load(folder / "superglue_outdoor.pth", weights_only=True)
    assert torch.equal(
        sg.gnn.layers[17].attn.proj[2].weight, saved["gnn.layers.17.attn.proj.2.weight"]
    )
    assert torch.equal(sp.convDb.bias, torch.load(folder / "superpoint_v1.pth")["convDb.bias"])
    indoor = load_superglue(folder, "indoor")
    assert not torch.equal(indoor.bin_score, sg.bin_score)

    # Files from older PyTorch lack BatchNorm's counters only; they still load.
    older = {k: v for k, v in saved.items() if not k.endswith("num_batches_tracked")}
    torch.save(older, folder / "superglue_outdoor.pth")
    assert torch.equal(load_superglue(folder).final_proj.bias, saved["final_proj.bias"])


def test_wrong_keys_and_missing_files_are_named(tmp_path):
    folder = write_official_weights(tmp_path / "w")
    state = torch.load(folder / "superpoint_v1.pth", weights_only=True)
    state["convPb.b"] = state.pop("convPb.bias")
    torch.save(state, folder / "superpoint_v1.pth")
    with pytest.raises(CheckpointError, match=r"missing: convPb\.bias.*unexpected: convPb\.b\b"):
        load_superpoint(folder)
    (folder / "superglue_outdoor.pth").unlink()
    with pytest.raises(CheckpointError, match="superglue_outdoor.pth not found"):
        load_superglue(folder, "outdoor")


# --- SuperPoint -------------------------------------------------------------------------------


def test_heatmap_layout_puts_each_cell_channel_at_its_pixel():
    """Channel r*8+c of the detector head is pixel (row r, column c) of every 8x8 cell."""
    model = SuperPoint()
    with torch.no_grad():
        model.convPb.weight.zero_()
        model.convPb.bias.fill_(-10.0)
        model.convPb.bias[3 * 8 + 5] = 10.0
    heat, dense = model.dense(torch.rand(1, 1, 32, 48))
    assert heat.shape == (1, 32, 48) and dense.shape == (1, 256, 4, 6)
    rows, cols = torch.nonzero(heat[0] > 0.5).T
    assert len(rows) == 4 * 6
    assert (rows % 8 == 3).all() and (cols % 8 == 5).all()
    torch.testing.assert_close(dense.norm(dim=1), torch.ones(1, 4, 6))


def test_nms_border_threshold_and_top_k_on_a_given_heatmap():
    heat = torch.zeros(40, 50)
    peaks = {(10, 10): 0.9, (20, 30): 0.8, (30, 12): 0.7, (2, 25): 0.95, (20, 44): 0.6}
    for (r, c), value in peaks.items():
        heat[r, c] = value
    heat[11, 12] = 0.85  # within radius 4 of (10, 10): suppressed
    heat[20, 36] = 0.5  # 6 px from (20, 30): a peak of its own
    heat[33, 40] = 0.002  # below the threshold
    # A chain: (34, 28) hides (34, 32) until (34, 24) suppresses it; the second NMS round
    # re-admits (34, 32).
    heat[34, 24], heat[34, 28], heat[34, 32] = 0.65, 0.62, 0.55
    config = SuperPointConfig(nms_radius=4, keypoint_threshold=0.003, remove_borders=4)
    xy, scores = heatmap_keypoints(heat, config)
    found = {(int(y), int(x)): float(s) for (x, y), s in zip(xy, scores, strict=True)}
    assert found == pytest.approx({(10, 10): 0.9, (20, 30): 0.8, (30, 12): 0.7, (20, 44): 0.6,
                                   (20, 36): 0.5, (34, 24): 0.65, (34, 32): 0.55})  # fmt: skip
    config.max_keypoints = 2
    xy, scores = heatmap_keypoints(heat, config)
    assert xy.tolist() == [[10.0, 10.0], [30.0, 20.0]] and scores.tolist() == pytest.approx(
        [0.9, 0.8]
    )


def test_descriptor_sampling_uses_the_original_coordinates():
    """The original maps pixel 3.5 to the first cell and pixel 8w - 1 (not the last cell's
    centre, 8w - 4.5) to the last, linearly in x and y alike: a map holding the pixel each cell
    stands for, sampled at a keypoint, gives the keypoint's own direction."""
    h, w = 5, 7
    cy, cx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    px = 3.5 + cx * (8 * w - 4.5) / (w - 1)
    py = 3.5 + cy * (8 * h - 4.5) / (h - 1)
    dense = torch.stack([px, py]).float()
    keypoints = torch.tensor([[3.5, 3.5], [10.0, 20.0], [40.2, 33.9], [55.0, 39.0]])
    sampled = sample_descriptors(keypoints, dense)
    torch.testing.assert_close(sampled.T, F.normalize(keypoints, dim=1))


def test_superpoint_returns_unit_descriptors_inside_the_borders():
    torch.manual_seed(0)
    model = SuperPoint(SuperPointConfig(keypoint_threshold=0.003, max_keypoints=50)).eval()
    image = torch.rand(1, 1, 64, 80)
    (out,) = model(image)
    k = len(out["keypoints"])
    assert 0 < k <= 50 and out["descriptors"].shape == (256, k) and out["scores"].shape == (k,)
    torch.testing.assert_close(out["descriptors"].norm(dim=0), torch.ones(k))
    x, y = out["keypoints"].T
    assert (x >= 4).all() and (x < 76).all() and (y >= 4).all() and (y < 60).all()
    assert (out["scores"] > 0.003).all()


# --- SuperGlue --------------------------------------------------------------------------------


def test_attention_heads_interleave_channels():
    """Head h uses channels h, h + H, h + 2H, ... (the original's view(B, D/H, H, N))."""
    torch.manual_seed(1)
    attn = MultiHeadedAttention(4, 24).eval()
    x, source = torch.randn(1, 24, 5), torch.randn(1, 24, 7)
    q, k, v = (p(t) for p, t in zip(attn.proj, (x, source, source), strict=True))
    heads = [
        F.scaled_dot_product_attention(*(t[0, h::4].T[None] for t in (q, k, v)))[0].T
        for h in range(4)
    ]
    expected = attn.merge(torch.stack(heads, dim=1).reshape(1, 24, 5))
    torch.testing.assert_close(attn(x, source, source), expected)


def sinkhorn_reference(scores: np.ndarray, alpha: float, iters: int) -> np.ndarray:
    """Log assignment by Sinkhorn in probability space, float64."""
    m, n = scores.shape
    couplings = np.full((m + 1, n + 1), alpha)
    couplings[:m, :n] = scores
    kernel = np.exp(couplings)
    mu = np.r_[np.ones(m), n] / (m + n)
    nu = np.r_[np.ones(n), m] / (m + n)
    u, v = np.ones(m + 1), np.ones(n + 1)
    for _ in range(iters):
        u = mu / (kernel @ v)
        v = nu / (kernel.T @ u)
    return np.log(u[:, None] * kernel * v[None] * (m + n))


def test_log_optimal_transport_matches_a_float64_reference():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 6, 9))
    out = log_optimal_transport(
        torch.from_numpy(scores), torch.tensor(0.7, dtype=torch.float64), 20
    )
    for b in range(2):
        np.testing.assert_allclose(
            out[b].numpy(), sinkhorn_reference(scores[b], 0.7, 20), atol=1e-10
        )
    plan = out.exp().numpy()
    np.testing.assert_allclose(plan.sum(1)[:, :-1], 1.0, atol=1e-10)  # columns: exact
    np.testing.assert_allclose(plan.sum(1)[:, -1], 6.0, atol=1e-10)
    converged = log_optimal_transport(torch.from_numpy(scores), torch.tensor(0.7).double(), 500)
    np.testing.assert_allclose(converged.exp().sum(2)[:, :-1].numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(converged.exp().sum(2)[:, -1].numpy(), 9.0, atol=1e-6)


def test_mutual_matches_are_mutual_and_above_threshold():
    rng = np.random.default_rng(0)  # 6 mutual pairs, 5 of them above the threshold
    log_p = torch.from_numpy(np.log(rng.dirichlet(np.ones(12) * 0.5, size=(1, 10)))).float()
    matches0, matches1, scores0, _ = mutual_matches(log_p, 0.2)
    inner = log_p[0, :-1, :-1].exp().numpy()
    expected = [
        j if inner[i].argmax() == j and inner[:, j].argmax() == i and inner[i, j] > 0.2 else -1
        for i, j in enumerate(inner.argmax(1))
    ]
    assert matches0[0].tolist() == expected and (np.array(expected) >= 0).sum() == 5
    for i, j in enumerate(matches0[0].tolist()):
        if j >= 0:
            assert matches1[0, j] == i and scores0[0, i] > 0.2


def test_superglue_matches_a_permuted_copy_and_bins_the_stranger():
    """GNN and encoder updates zeroed, a scaled identity projection: SuperGlue must pair each
    keypoint with its copy and send a keypoint with an unrelated descriptor to the dustbin."""
    torch.manual_seed(3)
    model = SuperGlue(SuperGlueConfig(sinkhorn_iterations=20, match_threshold=0.1)).eval()
    with torch.no_grad():
        for layer in model.gnn.layers:
            layer.mlp[-1].weight.zero_()
            layer.mlp[-1].bias.zero_()
        model.kenc.encoder[-1].weight.zero_()
        model.kenc.encoder[-1].bias.zero_()
        model.final_proj.weight.copy_(8.0 * torch.eye(256)[..., None])
        model.final_proj.bias.zero_()
        model.bin_score.fill_(2.0)
    desc = F.normalize(torch.randn(1, 256, 30), dim=1)
    kpts = torch.rand(1, 30, 2) * 100
    perm = torch.randperm(30)
    stranger = F.normalize(torch.randn(1, 256, 1), dim=1)
    data = {
        "keypoints0": torch.cat([kpts, torch.rand(1, 1, 2)], 1),
        "scores0": torch.rand(1, 31),
        "descriptors0": torch.cat([desc, stranger], 2),
        "keypoints1": kpts[:, perm],
        "scores1": torch.rand(1, 30),
        "descriptors1": desc[:, :, perm],
    }
    out = model(data, ((100, 120), (100, 120)))
    assert out["matches0"][0, :30].tolist() == torch.argsort(perm).tolist()
    assert out["matches0"][0, 30] == -1
    assert out["matches1"][0].tolist() == perm.tolist()
    empty = dict(data, keypoints1=torch.zeros(1, 0, 2))
    assert model(empty, ((100, 120), (100, 120)))["matches0"].tolist() == [[-1] * 31]
