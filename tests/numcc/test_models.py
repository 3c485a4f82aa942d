"""NU-MCC and MCC models: the authors' checkpoint layouts load strictly, parameter counts are
the reference's, and the decoders' pieces equal direct computations.

The published-size models are only built on the meta device or loaded from fabricated files
(no initialisation); behaviour is checked at reduced widths.
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath

from geomkit.errors import CheckpointError, InputError
from numcc.args import get_args_parser
from numcc.checkpoints import load_model
from numcc.models import MCC, NUMCC
from numcc.models.decoder_anchor import Anchors
from numcc.models.decoder_feature import (
    FAR,
    CrossTransformerBlock,
    nearest_seen,
    pixel_grid,
    seen_pixels,
)
from numcc.models.layers import (
    SIZES,
    positional_encoding,
    preprocess_img,
    shrink_points_beyond_threshold,
    sincos_pos_embed,
)
from numcc.models.mcc import MCCDecoderAttention

from ..helpers import assert_close, assert_raises_naming
from .official_layout import mcc_layout, numcc_layout

TINY = SIZES["tiny"]
NUMCC_MODULES = {
    "encoder": 175_636_992,
    "decoderl1": 26_474_499,
    "decoderl2": 6_598_144,
    "fc_out": 394_497,
}


def default_args(*argv: str) -> argparse.Namespace:
    return get_args_parser().parse_args(list(argv))


def fabricate(layout, path, args: argparse.Namespace, generator: torch.Generator) -> dict:
    """A file laid out as the authors' (random weights of the listed shapes); returns them."""
    model = {
        k: torch.empty(shape).uniform_(-0.03, 0.03, generator=generator) for k, shape in layout
    }
    torch.save({"model": model, "args": args, "epoch": 99, "optimizer": {}, "scaler": {}}, path)
    return model


def tiny_file(tmp_path, model, name="tiny.pth", **args_changes):
    path = tmp_path / name
    saved = argparse.Namespace(**{**vars(default_args()), **args_changes})
    torch.save({"model": model.state_dict(), "args": saved, "epoch": 3}, path)
    return path


def seen_inputs(size=224, valid_share=0.7, xyz_size=112, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(1, 3, size, size, generator=g)
    xyz = torch.randn(1, xyz_size, xyz_size, 3, generator=g)
    valid = torch.rand(1, xyz_size, xyz_size, generator=g) < valid_share
    return images, xyz.masked_fill(~valid[..., None], float("inf")), valid


def queries(n=300, seed=1):
    return torch.rand(1, n, 3, generator=torch.Generator().manual_seed(seed)) * 6 - 3


# --- published layouts ---------------------------------------------------------------


@pytest.fixture(scope="module")
def official_numcc(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "udf-ep99.pth"
    weights = fabricate(numcc_layout(), path, default_args(), torch.Generator().manual_seed(0))
    return path, weights


def test_written_layouts_have_the_reference_sizes():
    for layout, n_keys, n_elements in (
        (numcc_layout(), 469, 209_104_132),
        (mcc_layout(), 419, 202_141_441),
    ):
        assert len(dict(layout)) == len(layout) == n_keys
        assert sum(math.prod(shape) for _, shape in layout) == n_elements


def test_meta_models_have_exactly_the_written_layouts():
    with torch.device("meta"):
        numcc, mcc = NUMCC(default_args()), MCC(default_args())
    for model, layout in ((numcc, numcc_layout()), (mcc, mcc_layout())):
        assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == dict(layout)
    for name, count in NUMCC_MODULES.items():
        assert sum(p.numel() for p in getattr(numcc, name).parameters()) == count, name
    assert sum(p.numel() for p in mcc.parameters()) == 202_141_441


def test_official_numcc_file_loads_strictly_with_its_weights(official_numcc):
    path, weights = official_numcc
    loaded = load_model(path)
    model = loaded.model
    assert isinstance(model, NUMCC) and loaded.args.model == "numcc"
    assert loaded.args.n_groups == 200 and loaded.checkpoint["epoch"] == 99
    state = model.state_dict()
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[k], weights[k]) for k in weights)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    for name, count in NUMCC_MODULES.items():
        assert sum(p.numel() for p in getattr(model, name).parameters()) == count, name
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        "encoder.pos_embed",
        "encoder.xyz_pos_embed.two_d_pos_embed",
        "decoderl1.decoder_pos_embed",
    }


def test_official_mcc_file_loads_strictly(tmp_path):
    path = tmp_path / "co3dv2_all_categories.pth"
    weights = fabricate(mcc_layout(), path, default_args(), torch.Generator().manual_seed(1))
    loaded = load_model(path)
    assert isinstance(loaded.model, MCC) and loaded.args.model == "mcc"
    assert not loaded.args.regress_color
    state = loaded.model.state_dict()
    assert state.keys() == weights.keys()
    assert torch.equal(state["decoder_pred.weight"], weights["decoder_pred.weight"])
    assert sum(p.numel() for p in loaded.model.parameters()) == 202_141_441


def test_layer_norm_eps_and_drop_path_as_the_originals():
    with torch.device("meta"):
        numcc, mcc = NUMCC(default_args()), MCC(default_args())

    def eps(module):
        return {m.eps for m in module.modules() if isinstance(m, torch.nn.LayerNorm)}

    assert eps(numcc.encoder.xyz_pos_embed) == {1e-6}
    assert eps(numcc.encoder.blocks) | eps(numcc.encoder.blocks_xyz) == {1e-5}
    assert eps(numcc.decoderl1) == {1e-5}
    assert eps(mcc) == {1e-6}
    drops = {
        m.drop_prob for model in (numcc, mcc) for m in model.modules() if isinstance(m, DropPath)
    }
    assert drops == {0.1}
    assert not any(isinstance(m, DropPath) for m in numcc.encoder.xyz_pos_embed.modules())


@pytest.mark.slow
def test_published_size_numcc_runs(official_numcc):
    model = load_model(official_numcc[0]).model.eval()
    with torch.no_grad():
        out, anchors = model(*seen_inputs()[:2], queries(50), seen_inputs()[2])
    assert out.shape == (1, 50, 769) and anchors.shape == (1, 200, 3)
    assert out.isfinite().all()


# --- checkpoints: what the weights fix, and bad files --------------------------------


def test_anchor_count_and_no_fine_come_from_the_weights(tmp_path):
    hypersim = NUMCC(default_args("--n_groups", "550"), TINY)
    path = tiny_file(tmp_path, hypersim, n_groups=550)
    loaded = load_model(path, default_args("--nneigh", "12"), TINY)  # the run says 200
    assert loaded.model.decoderl1.init_embedding.num_embeddings == 550
    assert loaded.args.n_groups == 550 and loaded.model.decoderl2.ct1.nneigh == 12
    no_fine = NUMCC(default_args("--no_fine", "1"), TINY)
    assert not any("fc_s" in k or "w_kc" in k for k in no_fine.state_dict())
    loaded = load_model(tiny_file(tmp_path, no_fine, "no_fine.pth"), sizes=TINY)
    assert loaded.args.no_fine == 1 and not loaded.model.decoderl2.fine


def test_without_run_args_the_files_own_args_are_used(tmp_path):
    path = tiny_file(tmp_path, NUMCC(default_args(), TINY), nn_seen=12, geo="occ")
    loaded = load_model(path, sizes=TINY)
    assert loaded.args.nn_seen == 12 and loaded.args.geo == "occ"
    assert loaded.model.decoderl2.nn_seen == 12


def test_mcc_colour_head_kind_comes_from_the_weights(tmp_path):
    regress = MCC(default_args("--regress_color"), TINY)
    assert regress.decoder_pred.out_features == 4
    loaded = load_model(tiny_file(tmp_path, regress), sizes=TINY)
    assert loaded.args.regress_color and loaded.model.decoder_pred.out_features == 4


def test_bad_checkpoints_are_one_line_errors_naming_file_and_keys(tmp_path):
    state = NUMCC(default_args(), TINY).state_dict()
    missing = dict(state)
    del missing["decoderl2.fc_p.bias"]
    path = tmp_path / "missing.pth"
    torch.save({"model": missing}, path)
    message = assert_raises_naming(
        CheckpointError, lambda: load_model(path, sizes=TINY), str(path), "decoderl2.fc_p.bias"
    )
    assert "\n" not in message
    wrong = dict(state, **{"fc_out.1.weight": torch.zeros(769, 7)})
    torch.save({"model": wrong}, path)
    assert_raises_naming(
        CheckpointError, lambda: load_model(path, sizes=TINY), "fc_out.1.weight (769, 7)"
    )
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, path)
    assert_raises_naming(CheckpointError, lambda: load_model(path), str(path), "neither")
    torch.save({"epoch": 3, "args": default_args()}, path)
    assert_raises_naming(CheckpointError, lambda: load_model(path), "no 'model' entry")


# --- forward passes at reduced widths -----------------------------------------------------


def test_numcc_forward_and_chunked_decoding_agree():
    model = NUMCC(default_args(), TINY).eval()
    images, xyz, valid = seen_inputs(size=800)
    q = queries()
    with torch.no_grad():
        out, anchors_xyz = model(images, xyz, q, valid)
        encoding = model.encode(images, xyz, valid)
        chunks = torch.cat([model.decode(encoding, part) for part in q.split(120, dim=1)], 1)
    assert out.shape == (1, 300, 769) and anchors_xyz.shape == (1, 200, 3)
    assert out.isfinite().all()
    assert encoding.fine_rgb.shape == (1, 3, 112, 112)
    assert_close(chunks, out, atol=1e-5, what="chunked decoding")


def test_numcc_repulsive_udf_gradient_is_finite_at_the_origin():
    model = NUMCC(default_args(), TINY).eval()
    encoding = model.encode(*seen_inputs())
    points = torch.zeros(1, 1, 3, requires_grad=True)
    model.decode(encoding, points)[..., 0].sum().backward()
    assert points.grad.isfinite().all()


def test_high_resolution_pixels_fixed_and_original():
    images, xyz, valid = seen_inputs(size=800)
    _, xyz_hr, valid_hr = seen_inputs(size=800, xyz_size=224, seed=5)
    fixed = NUMCC(default_args("--hr"), TINY).eval()
    original = NUMCC(argparse.Namespace(**vars(default_args("--hr")), hr_index="original"), TINY)
    original.load_state_dict(fixed.state_dict())
    with torch.no_grad():
        enc = fixed.encode(images, xyz, valid, xyz_hr, valid_hr)
        enc_original = original.eval().encode(images, xyz, valid, xyz_hr, valid_hr)
        out = fixed.decode(enc, queries())
    assert enc.fine_rgb.shape == (1, 3, 224, 224) and out.isfinite().all()
    assert (enc.seen.index_width, enc.seen.grid_size) == (224, 224)
    assert enc_original.fine_rgb.shape == (1, 3, 112, 112)
    assert (enc_original.seen.index_width, enc_original.seen.grid_size) == (112, 112)


def test_mcc_forward_and_query_independence():
    model = MCC(default_args(), TINY).eval()
    images, xyz, valid = seen_inputs()
    q = queries()
    with torch.no_grad():
        pred = model(images, xyz, q, valid)
        latent = model.encode(images, xyz, valid)
        chunks = torch.cat([model.decode(latent, part) for part in q.split(7, dim=1)], 1)
    assert pred.shape == (1, 300, 769) and pred.isfinite().all()
    assert_close(chunks, pred, atol=1e-5, what="each query sees only the latents and itself")


def test_mcc_attention_equals_the_masked_dense_attention():
    torch.manual_seed(2)
    attn = MCCDecoderAttention(16, 4)
    x, n_queries = torch.randn(2, 11, 16), 5
    qkv = attn.qkv(x).reshape(2, 11, 3, 4, 4).permute(2, 0, 3, 1, 4)
    scores = qkv[0] @ qkv[1].transpose(-2, -1) / 2.0  # head_dim 4
    mask = torch.zeros(11, 11)
    mask[:, -n_queries:] = float("-inf")
    mask[range(6, 11), range(6, 11)] = 0.0
    dense = (scores + mask).softmax(-1) @ qkv[2]
    expected = attn.proj(dense.transpose(1, 2).reshape(2, 11, 16))
    assert_close(attn(x, n_queries), expected, atol=1e-5, what="MCC attention")


def test_mcc_loss_terms():
    torch.manual_seed(3)
    pred = torch.randn(1, 4, 769)
    occupy = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    rgb = torch.rand(1, 4, 3)
    occ, colour = MCC.forward_loss(pred, occupy, rgb)
    assert_close(occ, F.binary_cross_entropy_with_logits(pred[..., 0], occupy), atol=1e-6)
    target = torch.round(rgb[0, [0, 2]] * 255).long().reshape(-1)
    expected = F.cross_entropy(pred[0, [0, 2], 1:].reshape(-1, 256), target) * 0.01
    assert_close(colour, expected, atol=1e-6)
    assert MCC.forward_loss(pred, torch.zeros(1, 4), rgb)[1] == 0


# --- decoder pieces against direct computations --------------------------------------------


@pytest.mark.parametrize("valid_share", [0.5, 0.0004])  # 0.0004: fewer than k valid pixels
def test_nearest_seen_pixels_equal_brute_force(valid_share):
    _, xyz, valid = seen_inputs(valid_share=valid_share, xyz_size=40, seed=7)
    q = queries(200, seed=8)
    pixel, near = nearest_seen(q, seen_pixels(xyz, valid), k=4)
    flat = torch.where(valid.reshape(1, -1, 1), xyz.reshape(1, -1, 3), FAR)
    dists = ((q[:, :, None] - flat[:, None]) ** 2).sum(-1)
    expected = dists.sort(dim=-1, stable=True).indices[..., :4]
    assert valid.sum() < 4 or valid_share > 0.1
    assert torch.equal(pixel, expected)
    assert torch.equal(near, flat[0][expected])


def test_pixel_grid_is_the_original_formula():
    pixel = torch.tensor([0, 111, 112, 12543, 5 * 112 + 7])
    row, col = pixel // 112, pixel % 112
    expected = (torch.stack([col, row], -1) / 112 - 0.5) * 2
    assert_close(pixel_grid(pixel, 112, 112), expected, atol=1e-7)
    hr = torch.tensor([224 * 200 + 100])
    assert_close(
        pixel_grid(hr, 224, 224), torch.tensor([[100 / 112 - 1, 200 / 112 - 1]]), atol=1e-6
    )
    # The original's --hr reading: the 224-map index split by 112 lands elsewhere.
    assert_close(
        pixel_grid(hr, 112, 112),
        torch.tensor([[(100 / 112 - 0.5) * 2, (400 / 112 - 0.5) * 2]]),
        atol=1e-6,
    )


def test_positional_encoding_equals_the_nerf_formula():
    p = torch.randn(2, 5, 3, dtype=torch.float64) * 3
    parts = []
    for k in range(10):
        f = 2.0**k * math.pi
        parts += [torch.sin(f * p / 3), torch.cos(f * p / 3)]
    assert_close(positional_encoding(p), torch.cat(parts, dim=-1), atol=1e-9)


def test_vector_attention_equals_a_direct_computation():
    torch.manual_seed(4)
    ct1 = CrossTransformerBlock(12, 8, nneigh=3).double()
    B, Q, M, S = 2, 6, 10, 2
    anchors = Anchors(torch.randn(B, M, 3), torch.randn(B, M, 12), torch.randn(B, 12))
    anchors = Anchors(*(t.double() for t in anchors))
    q = torch.randn(B, Q, 3, dtype=torch.float64)
    pix_feats, pix_xyz = torch.randn(B, Q, S, 12).double(), torch.randn(B, Q, S, 3).double()
    out = ct1(q, anchors, pix_feats, pix_xyz)

    xyz, feats, glob = anchors
    idx = ((q[:, :, None] - xyz[:, None]) ** 2).sum(-1).argsort(-1)[..., :3]
    gathered = torch.stack([feats[b][idx[b]] for b in range(B)])  # (B, Q, 3, 12)
    near = torch.stack([xyz[b][idx[b]] for b in range(B)])
    W = {
        n: getattr(ct1, n).weight
        for n in ("w_qs", "w_ks", "w_vs", "w_kc", "w_vc", "w_k_global", "w_v_global")
    }
    k = torch.cat(
        [
            torch.einsum("bqnd,ed->bqne", gathered, W["w_ks"]),
            torch.einsum("bqnd,ed->bqne", pix_feats, W["w_kc"]),
            torch.einsum("bd,ed->be", glob, W["w_k_global"])[:, None, None].expand(B, Q, 1, 8),
        ],
        2,
    )
    v = torch.cat(
        [
            torch.einsum("bqnd,ed->bqne", gathered, W["w_vs"]),
            torch.einsum("bqnd,ed->bqne", pix_feats, W["w_vc"]),
            torch.einsum("bd,ed->be", glob, W["w_v_global"])[:, None, None].expand(B, Q, 1, 8),
        ],
        2,
    )
    delta = ct1.fc_delta(q[:, :, None] - torch.cat([near, pix_xyz], 2))
    delta = torch.cat([delta, torch.zeros(B, Q, 1, 8, dtype=torch.float64)], 2)
    query = torch.einsum("bd,ed->be", glob, W["w_qs"])[:, None, None]
    weights = torch.softmax(ct1.fc_gamma(query - k + delta), dim=2)
    expected = torch.einsum("bqnf,bqnf->bqf", weights, v + delta)
    assert_close(out, expected, atol=1e-10, what="vector attention")


# --- input handling -------------------------------------------------------------------------


def test_preprocessing_resizes_800_px_and_normalises():
    images = torch.rand(1, 3, 800, 800)
    resized = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    assert_close(preprocess_img(images), (resized - mean) / std, atol=1e-5)
    assert_raises_naming(InputError, lambda: preprocess_img(torch.rand(1, 3, 500, 500)), "500 px")


def test_shrink_beyond_threshold():
    xyz = torch.tensor([[3.0, 0.0, 0.0], [0.0, 20.0, 0.0], [float("inf"), 0.0, 0.0]])
    out = shrink_points_beyond_threshold(xyz, 10.0)
    assert_close(out[:2], torch.tensor([[3.0, 0.0, 0.0], [0.0, 15.0, 0.0]]), atol=1e-6)
    assert out[2, 0] == float("inf")


def test_sincos_embedding_layout():
    emb = sincos_pos_embed(8, 3)  # 2 frequencies per axis: [sin c, sin c/100, cos c, cos c/100]
    assert emb.shape == (10, 8) and not emb[0].any()
    row, col = 2, 1
    w = torch.tensor([1.0, 0.01])
    expected = torch.cat([(col * w).sin(), (col * w).cos(), (row * w).sin(), (row * w).cos()])
    assert_close(emb[1 + row * 3 + col], expected, atol=1e-6)


def test_reset_geo_restarts_the_distance_output_only():
    model = NUMCC(default_args(), TINY)
    before = model.fc_out[1].weight.detach().clone()
    model.reset_geometry_head()
    head = model.fc_out[1].requires_grad_(False)
    assert head.bias[0] == torch.tensor(0.001) and 0 <= float(head.weight[0].min())
    assert float(head.weight[0].max()) < 1e-4
    assert torch.equal(head.weight[1:], before[1:])
