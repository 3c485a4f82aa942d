"""The whole CoCo-INR model: the authors' parameter counts and one stored codebook, loading the
authors' checkpoint layout strictly, the codebook file, latents computed once per step, VolSDF's
and NeRF++'s rendering formulas, the eikonal bug flag, and plain VolSDF without attention."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging

import numpy as np
import pytest
import torch

from cocoinr.checkpoints import checkpoint_path, load_codebook, load_kind, load_model, save_all
from cocoinr.config import load_conf
from cocoinr.models.volsdf import NETWORKS, CocoVolSDF, inverted_sphere_points
from cocoinr.training import VolSDFLoss
from geomkit.errors import CheckpointError, InputError

from ..helpers import assert_close, assert_raises_naming

# Reference section 2: trainable parameters of the authors' model, in all and per network.
REFERENCE_TOTAL = 6_159_741
REFERENCE = {
    "implicit_network": 1_496_170,
    "rendering_network": 1_614_485,
    "bg_implicit_network": 1_552_489,
    "bg_rendering_network": 1_496_596,
    "density": 1,
}
CODEBOOK_ATTENTION = 1_121_792  # reference section 2: each network's CodebookAttention
# The width of each network's coordinate-attention queries (reference section 2): PE(xyz, 6)
# = 3 + 3*2*6; idr [xyz 3, PE(view, 4) 27, gradient 3, feature 256]; PE(4-D, 10) = 4 + 4*2*10;
# nerf [PE(view, 4) 27, feature 256].
QUERY_WIDTH = {
    "implicit_network": 3 + 3 * 2 * 6,
    "rendering_network": 3 + (3 + 3 * 2 * 4) + 3 + 256,
    "bg_implicit_network": 4 + 4 * 2 * 10,
    "bg_rendering_network": (3 + 3 * 2 * 4) + 256,
}
DEAD_LEAVES = (
    *("norm.weight", "norm.bias", "norm_context.weight", "norm_context.bias"),
    *("fn.to_q.weight", "fn.to_kv.weight", "fn.to_out.weight", "fn.to_out.bias"),
)


def dead_cross_attn_size(query: int, latent: int = 128, heads: int = 4, dim_head: int = 32) -> int:
    """Parameters of the original's unused ``coordinate_attn.cross_attn``:
    PreNorm(Attention(query, latent, heads x dim_head), context_dim=latent)."""
    inner = heads * dim_head
    norms = 2 * query + 2 * latent  # LayerNorm(query) and LayerNorm(latent), weight and bias
    return norms + query * inner + latent * 2 * inner + inner * query + query


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@functools.cache
def _small_conf() -> dict:
    return load_conf("small.conf")["model"]


def small_model(seed: int = 0) -> CocoVolSDF:
    """small.conf's model with a codebook of 64 random codes."""
    torch.manual_seed(seed)
    return CocoVolSDF(copy.deepcopy(_small_conf()), torch.randn(64, 256))


def connect_attention(model: CocoVolSDF, scale: float = 0.02) -> None:
    """Geometric init leaves the SDF network's attention columns at zero; make them count."""
    with torch.no_grad():
        v = model.implicit_network.mlp[0].parametrizations.weight.original1
        v.add_(scale * torch.randn_like(v))


def rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras inside the radius-3 sphere, looking roughly at the centre."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 2.0
    target = 0.3 * torch.randn(n, 3, generator=g)
    return origins, torch.nn.functional.normalize(target - origins, dim=-1)


# -- sizes and keys -------------------------------------------------------------------------------


def test_dtu_model_has_the_authors_parameters_less_the_dead_modules():
    dead = {name: dead_cross_attn_size(q) for name, q in QUERY_WIDTH.items()}
    # The per-network dead counts (the SDF and colour ones also in test_implicit/test_rendering).
    assert dead == {"implicit_network": 43_125, "rendering_network": 107_875,
                    "bg_implicit_network": 54_780, "bg_rendering_network": 106_321}  # fmt: skip
    model = CocoVolSDF(load_conf("dtu.conf")["model"], torch.randn(16384, 256))
    for name in NETWORKS:
        network = getattr(model, name)
        assert trainable(network) + dead[name] == REFERENCE[name], name
        assert trainable(network.codebook_attn) == CODEBOOK_ATTENTION, name
        norm = network.coordinate_attn.cross_attend_blocks[0][0].norm
        assert norm.normalized_shape == (QUERY_WIDTH[name],), name
    assert trainable(model.density) == REFERENCE["density"]
    assert sum(REFERENCE.values()) == REFERENCE_TOTAL
    assert trainable(model) == REFERENCE_TOTAL - sum(dead.values()) == 5_847_640
    # The frozen codebook is one buffer, not a parameter, and not one copy per network.
    state = model.state_dict()
    assert [k for k in state if k.rsplit(".", 1)[-1] == "codebook"] == ["codebook"]
    assert state["codebook"].shape == (16384, 256)
    assert not any(p is model.codebook for p in model.parameters())
    assert not any(".cross_attn." in k for k in state)


# -- the authors' checkpoint layout -------------------------------------------------------------


def authors_state_dict(model: CocoVolSDF) -> dict[str, torch.Tensor]:
    """Our state dict in the authors' layout: the codebook once per network, legacy weight-norm
    keys, and the dead ``coordinate_attn.cross_attn`` modules (shaped as the first block's)."""
    legacy = {"parametrizations.weight.original0": "weight_g",
              "parametrizations.weight.original1": "weight_v"}  # fmt: skip
    authors = {}
    for key, value in model.state_dict().items():
        if key == "codebook":
            continue
        for new, old in legacy.items():
            if key.endswith(new):
                key = key[: -len(new)] + old
        authors[key] = value.clone()
    for name in NETWORKS:
        authors[f"{name}.codebook"] = model.codebook.clone()
        block = getattr(model, name).coordinate_attn.cross_attend_blocks[0][0].state_dict()
        for leaf in DEAD_LEAVES:
            authors[f"{name}.coordinate_attn.cross_attn.{leaf}"] = torch.randn_like(block[leaf])
    return authors


def save_authors(folder, state, epoch: int = 7):
    path = folder / "ModelParameters" / "latest.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "model_state_dict": state}, path)
    return path


def test_authors_layout_has_the_shapes_of_the_reference():
    state = authors_state_dict(small_model())
    assert "implicit_network.mlp.0.weight_g" in state
    assert "bg_implicit_network.mlp.0.weight" in state  # no weight norm in the background
    assert not any("parametrizations" in k for k in state)
    query, latent = QUERY_WIDTH["implicit_network"], 64  # small.conf: latent_dim 64
    dead = "implicit_network.coordinate_attn.cross_attn"
    assert state[f"{dead}.fn.to_q.weight"].shape == (2 * 32, query)  # 2 heads x 32
    assert state[f"{dead}.fn.to_kv.weight"].shape == (2 * 64, latent)
    assert state[f"{dead}.fn.to_out.weight"].shape == (query, 2 * 32)
    assert state[f"{dead}.norm_context.weight"].shape == (latent,)


def test_authors_checkpoint_loads_strictly_and_names_the_dead_keys(tmp_path, caplog):
    source = small_model(seed=1)
    path = save_authors(tmp_path, authors_state_dict(source))
    target = small_model(seed=2)  # other weights and another codebook
    assert not torch.equal(target.codebook, source.codebook)
    logger = logging.getLogger("cocoinr.checkpoints")
    logger.addHandler(caplog.handler)  # whether or not a parent logger propagates
    try:
        with caplog.at_level(logging.INFO, logger="cocoinr.checkpoints"):
            assert load_model(target, path) == 7
    finally:
        logger.removeHandler(caplog.handler)
    expected = source.state_dict()
    loaded = target.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    messages = [r.getMessage() for r in caplog.records if r.name == "cocoinr.checkpoints"]
    for name in NETWORKS:
        assert any(f"{name}.coordinate_attn.cross_attn" in m for m in messages), (name, messages)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ("missing", "density.beta"),
        ("missing", "bg_rendering_network.color_mlp.0.bias"),
        ("extra", "implicit_network.mlp.9.weight"),
        ("extra", "rendering_network.coordinate_attn.cross_attend_blocks.7.0.norm.weight"),
    ],
)
def test_authors_checkpoint_with_a_missing_or_unknown_key_is_refused(tmp_path, change, fragment):
    state = authors_state_dict(small_model())
    if change == "missing":
        del state[fragment]
    else:
        state[fragment] = torch.zeros(3)
    path = save_authors(tmp_path, state)
    assert_raises_naming(CheckpointError, lambda: load_model(small_model(seed=1), path), fragment)


def test_authors_checkpoint_with_different_codebooks_is_refused(tmp_path):
    state = authors_state_dict(small_model())
    state["bg_implicit_network.codebook"] = state["bg_implicit_network.codebook"] + 1e-3
    path = save_authors(tmp_path, state)
    with pytest.raises(CheckpointError, match="codebook"):
        load_model(small_model(seed=1), path)


def test_authors_checkpoint_missing_one_codebook_copy_is_refused(tmp_path):
    state = authors_state_dict(small_model())
    del state["rendering_network.codebook"]
    path = save_authors(tmp_path, state)
    with pytest.raises(CheckpointError, match="rendering_network.codebook"):
        load_model(small_model(seed=1), path)


def test_our_checkpoints_round_trip(tmp_path):
    source = small_model(seed=1)
    optimizer = torch.optim.Adam(source.parameters(), lr=1e-3)
    states = {"model": source.state_dict(), "optimizer": optimizer.state_dict(),
              "scheduler": {"last_epoch": 3}, "training": {"step": 12, "seed": 0}}  # fmt: skip
    save_all(tmp_path, 3, states)
    for name in (3, "latest"):
        for kind in ("model", "optimizer", "scheduler", "training"):
            assert checkpoint_path(tmp_path, kind, name).is_file(), (kind, name)
    target = small_model(seed=2)
    assert load_model(target, checkpoint_path(tmp_path, "model", "latest")) == 3
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    epoch, training = load_kind(tmp_path, "training")
    assert epoch == 3 and training == {"step": 12, "seed": 0}
    with pytest.raises(CheckpointError):
        load_kind(tmp_path, "model", "999")


# -- the codebook file ----------------------------------------------------------------------------


class NotATensor:
    """Something a weights_only load must refuse."""

    def __init__(self):
        self.value = 3


def test_load_codebook_reads_the_vqgan_key(tmp_path):
    codes = torch.randn(32, 8)
    path = tmp_path / "last.ckpt"
    state = {"quantize.embedding.weight": codes, "encoder.conv_in.weight": torch.randn(4, 3)}
    torch.save({"state_dict": state, "global_step": 5}, path)
    loaded = load_codebook(path)
    assert loaded.dtype == torch.float32 and torch.equal(loaded, codes)


def test_load_codebook_errors(tmp_path):
    missing = tmp_path / "ckpts" / "model_16384x256_codebook.ckpt"
    assert_raises_naming(InputError, lambda: load_codebook(missing), str(missing), "VQGAN")
    without = tmp_path / "without.ckpt"
    torch.save({"state_dict": {"encoder.x": torch.zeros(2)}}, without)
    assert_raises_naming(InputError, lambda: load_codebook(without), str(without),
                         "quantize.embedding.weight")  # fmt: skip
    flat = tmp_path / "flat.ckpt"  # the key at the top level, not under state_dict
    torch.save({"quantize.embedding.weight": torch.zeros(4, 2)}, flat)
    assert_raises_naming(InputError, lambda: load_codebook(flat), "state_dict")
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {"quantize.embedding.weight": torch.zeros(4, 2)},
                "config": NotATensor()}, pickled)  # fmt: skip
    assert_raises_naming(CheckpointError, lambda: load_codebook(pickled), str(pickled),
                         "NotATensor")  # fmt: skip


# -- latents once per step ----------------------------------------------------------------------


@contextlib.contextmanager
def latents_on_every_call(model: CocoVolSDF):
    """Every sub-network's forward recomputes its own latents from the codebook, ignoring the
    latents it is given (which must be the model's, passed as the last positional argument)."""
    calls = dict.fromkeys(NETWORKS, 0)
    for name in NETWORKS:
        network = getattr(model, name)

        def forward(*args, _network=network, _original=network.forward, _name=name):
            assert len(args) >= 2 and args[-1] is SENTINEL[_name], _name
            calls[_name] += 1
            return _original(*args[:-1], _network.latents(model.codebook))

        network.forward = forward
    try:
        yield calls
    finally:
        for name in NETWORKS:
            del getattr(model, name).forward


SENTINEL = {name: torch.zeros(()) for name in NETWORKS}  # stands for "the given latents"


def test_latents_once_per_step_equal_latents_on_every_call():
    model = small_model()
    connect_attention(model)
    origins, directions = rays(4)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        once = model(origins, directions, model.latents())
        with latents_on_every_call(model) as calls:
            torch.manual_seed(3)
            every = model(origins, directions, SENTINEL)
    assert all(n >= 1 for n in calls.values()) and calls["implicit_network"] > 1, calls
    for key in ("rgb_values", "normal_map", "opacity"):
        assert_close(every[key], once[key], atol=1e-5, what=f"eval {key}")

    model.train()
    loss_fn = VolSDFLoss()
    rgb_gt = torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(4)
    once = model(origins, directions, model.latents())
    loss_fn(once, rgb_gt)["loss"].backward()
    grads_once = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads_once.keys() == {n for n, _ in model.named_parameters()}
    latents_grad = grads_once["implicit_network.codebook_attn.latents"]
    assert latents_grad.abs().max() > 0  # the SDF's attention branch is part of the test
    model.zero_grad(set_to_none=True)
    with latents_on_every_call(model):
        torch.manual_seed(4)
        every = model(origins, directions, SENTINEL)
    loss_fn(every, rgb_gt)["loss"].backward()
    assert_close(every["rgb_values"], once["rgb_values"], atol=1e-5, what="train rgb")
    assert_close(every["grad_theta"], once["grad_theta"], atol=1e-5, what="train grad_theta")
    for name, parameter in model.named_parameters():
        expected = grads_once[name]
        scale = expected.abs().max().item()
        assert_close(parameter.grad, expected, atol=1e-4 * scale, rtol=1e-4, what=name)


# -- rendering formulas -------------------------------------------------------------------------


def volsdf_weights_numpy(z, z_max, sdf, beta):
    """VolSDF's quadrature written out: sigma = Psi_beta(-sdf) / beta (Laplace CDF)."""
    cdf = np.where(sdf > 0, 0.5 * np.exp(-sdf / beta), 1.0 - 0.5 * np.exp(sdf / beta))
    sigma = cdf / beta
    delta = np.concatenate([z[:, 1:] - z[:, :-1], (z_max - z[:, -1])[:, None]], axis=1)
    energy = sigma * delta
    weights = np.zeros_like(z)
    for i in range(z.shape[1]):
        weights[:, i] = (1 - np.exp(-energy[:, i])) * np.exp(-energy[:, :i].sum(axis=1))
    return weights, np.exp(-energy.sum(axis=1))


def test_foreground_weights_are_volsdfs_formula():
    model = small_model()
    with torch.no_grad():
        model.density.beta.fill_(-0.2)  # beta = |beta| + 1e-4
    g = torch.Generator().manual_seed(0)
    z = torch.sort(torch.rand(5, 40, generator=g) * 4.0, dim=-1).values.double()
    z_max = z[:, -1] + torch.rand(5, generator=g).double()
    sdf = (torch.rand(5, 40, generator=g) * 1.6 - 0.8).double()
    with torch.no_grad():
        weights, left = model._foreground_weights(z, z_max, sdf)
    beta = 0.2 + 1e-4
    expected, expected_left = volsdf_weights_numpy(z.numpy(), z_max.numpy(), sdf.numpy(), beta)
    assert_close(weights, expected, atol=1e-6, rtol=1e-5, what="weights")
    assert_close(left, expected_left, atol=1e-6, rtol=1e-5, what="background transmittance")
    assert_close(weights.sum(-1) + left, np.ones(5), atol=1e-6, what="weights + leftover")
    assert (expected.max(axis=1) > 0.05).all()  # the inputs are not trivially transparent


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_inverted_sphere_points_are_nerfplusplus_parametrisation(dtype, atol):
    radius = 3.0
    g = torch.Generator().manual_seed(0)
    n, m = 50, 9
    origins = torch.randn(n, 3, generator=g, dtype=torch.float64)
    origins = origins / origins.norm(dim=-1, keepdim=True) * 2.5 * torch.rand(n, 1, generator=g)
    origins[0] = 0.0  # the centre: the direction itself
    directions = torch.randn(n, 3, generator=g, dtype=torch.float64)
    directions[1] = -origins[1]  # through the centre
    directions = directions / directions.norm(dim=-1, keepdim=True)
    inverse = torch.linspace(1e-3, 1 / radius, m, dtype=torch.float64).expand(n, m).clone()
    inverse[:, 0] = 1 / radius  # on the sphere
    o = origins[:, None].expand(n, m, 3)
    d = directions[:, None].expand(n, m, 3)
    out = inverted_sphere_points(o.to(dtype), d.to(dtype), inverse.to(dtype), radius)
    # Independently: t with |o + t d| = 1 / inverse depth (the exit), its point, normalised.
    b = (o * d).sum(-1)
    t = -b + torch.sqrt(b**2 - (o**2).sum(-1) + 1 / inverse**2)
    point = o + t[..., None] * d
    assert_close(point.norm(dim=-1), 1 / inverse, rtol=1e-12, what="the point's radius")
    expected = point / point.norm(dim=-1, keepdim=True)
    assert out.shape == (n, m, 4) and out.dtype == dtype
    assert_close(out[..., :3], expected, atol=atol, what="unit direction of the point")
    assert_close(out[..., 3], inverse, atol=0.0, rtol=1e-7, what="inverse depth")


# -- the eikonal bug flag ---------------------------------------------------------------------


def eikonal_points(model: CocoVolSDF, origins, directions, monkeypatch):
    recorded = {}
    original_gradient = model.implicit_network.gradient
    original_sampler = model.ray_sampler.get_z_vals

    def gradient(points, latents=None):
        recorded["points"] = points.detach().clone()
        return original_gradient(points, latents)

    def get_z_vals(*args, **kwargs):
        recorded["sampled"] = original_sampler(*args, **kwargs)
        return recorded["sampled"]

    with monkeypatch.context() as patch:
        patch.setattr(model.implicit_network, "gradient", gradient)
        patch.setattr(model.ray_sampler, "get_z_vals", get_z_vals)
        torch.manual_seed(5)
        model(origins, directions, model.latents())
    return recorded["points"], recorded["sampled"].z_samples_eik.detach()


def test_original_eikonal_bug_moves_the_near_surface_points(monkeypatch):
    model = small_model()
    model.train()
    origins, directions = rays(4)
    model.original_eikonal_bug = False
    fixed, z_fixed = eikonal_points(model, origins, directions, monkeypatch)
    model.original_eikonal_bug = True
    buggy, z_buggy = eikonal_points(model, origins, directions, monkeypatch)
    assert fixed.shape == buggy.shape == (4, 2, 3)
    assert torch.equal(z_fixed, z_buggy) and z_fixed.reshape(-1).gt(0).any()
    z = z_fixed.reshape(-1, 1)
    assert torch.equal(fixed[:, 0], buggy[:, 0])  # the uniform points do not depend on it
    assert (fixed[:, 0].abs() <= model.scene_bounding_sphere).all()
    assert_close(fixed[:, 1], origins + z * directions, atol=1e-6, what="origins + z d")
    assert_close(buggy[:, 1], directions + z * directions, atol=1e-6, what="d + z d")
    assert_close(fixed[:, 1] - buggy[:, 1], origins - directions, atol=1e-5)


# -- plain VolSDF ---------------------------------------------------------------------------------


def test_without_attention_it_is_plain_volsdf():
    conf = load_conf("small.conf", ["model.use_attention=false"])["model"]
    torch.manual_seed(0)
    model = CocoVolSDF(conf)  # no codebook needed
    state = model.state_dict()
    assert not any("codebook" in k or "attn" in k for k in state), [
        k for k in state if "codebook" in k or "attn" in k
    ]
    assert model.latents() == dict.fromkeys(NETWORKS)
    origins, directions = rays(4)
    model.eval()
    with torch.no_grad():
        out = model(origins, directions)
    assert out["rgb_values"].shape == (4, 3) and torch.isfinite(out["rgb_values"]).all()
    model.train()
    out = model(origins, directions)
    losses = VolSDFLoss()(out, torch.rand(4, 3))
    losses["loss"].backward()
    assert out["grad_theta"].shape == (4, 2, 3) and torch.isfinite(losses["loss"])
    assert model.implicit_network.mlp[0].parametrizations.weight.original1.grad.abs().sum() > 0


def test_attention_without_a_codebook_is_an_error():
    conf = load_conf("small.conf")["model"]
    with pytest.raises(ValueError, match="codebook"):
        CocoVolSDF(conf)
