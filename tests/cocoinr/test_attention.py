"""CoCo-INR's attention: the authors' key names and parameter counts (reference section 2), and
PyTorch's scaled_dot_product_attention giving the original's explicit softmax(q k^T / sqrt d) v."""

from __future__ import annotations

import pytest
import torch

from cocoinr.models.attention import Attention, CodebookAttention, CoordinateAttention

from ..helpers import assert_close

LATENTS = {"depth": 3, "num_latents": 256, "latent_dim": 128, "latent_heads": 4,
           "latent_dim_head": 32, "cross_heads": 4, "cross_dim_head": 32}  # fmt: skip


CODEBOOK_KEYS = (
    "latents",
    "cross_attend_blocks.0.norm.weight",
    "cross_attend_blocks.0.norm_context.weight",
    "cross_attend_blocks.0.fn.to_q.weight",
    "cross_attend_blocks.0.fn.to_kv.weight",
    "cross_attend_blocks.0.fn.to_out.bias",
    "cross_attend_blocks.1.fn.net.0.weight",
    "cross_attend_blocks.1.fn.net.2.weight",
    "self_attend_blocks.2.0.fn.to_kv.weight",
    "self_attend_blocks.2.1.fn.net.2.bias",
)


def explicit_attention(attn: Attention, x, context):
    """The original's computation: heads folded into the batch, einsum, softmax, einsum."""
    q = attn.to_q(x)
    k, v = attn.to_kv(context).chunk(2, dim=-1)
    B, N, inner = q.shape
    d = inner // attn.heads

    def fold(t):
        return t.reshape(B, -1, attn.heads, d).permute(0, 2, 1, 3).reshape(B * attn.heads, -1, d)

    q, k, v = fold(q), fold(k), fold(v)
    weights = (torch.einsum("bid,bjd->bij", q, k) * d**-0.5).softmax(dim=-1)
    out = torch.einsum("bij,bjd->bid", weights, v)
    return attn.to_out(out.reshape(B, attn.heads, N, d).permute(0, 2, 1, 3).reshape(B, N, -1))


@pytest.mark.parametrize("with_context", [True, False])
def test_sdpa_attention_equals_the_explicit_formula(with_context):
    torch.manual_seed(0)
    attn = Attention(39, 128 if with_context else None, heads=4, dim_head=32)
    x = torch.randn(2, 50, 39)
    context = torch.randn(2, 256, 128) if with_context else x
    out = attn(x, context if with_context else None)
    assert_close(out, explicit_attention(attn, x, context), atol=1e-5, what="attention")


def test_sdf_attention_is_twice_differentiable_like_the_original():
    """The eikonal loss differentiates d(out)/d(x) (torch 2.14's fused CPU kernel cannot): the
    SDF networks' attention can, and its second derivatives are the explicit formula's."""
    torch.manual_seed(1)
    fused = Attention(39, 128, heads=4, dim_head=32)
    twice = Attention(39, 128, heads=4, dim_head=32, twice_differentiable=True)
    twice.load_state_dict(fused.state_dict())
    context = torch.randn(2, 256, 128)

    def eikonal_like(attention):
        x = torch.randn(2, 30, 39, generator=torch.Generator().manual_seed(2), requires_grad=True)
        (grad,) = torch.autograd.grad(attention(x, context).sum(), x, create_graph=True)
        grad.square().sum().backward()
        return attention.to_q.weight.grad

    reference = Attention(39, 128, heads=4, dim_head=32)
    reference.load_state_dict(fused.state_dict())
    reference.forward = lambda x, c: explicit_attention(reference, x, c)
    assert_close(eikonal_like(twice), eikonal_like(reference), atol=1e-5, what="2nd derivative")


def test_codebook_attention_keys_and_size():
    module = CodebookAttention(256, **LATENTS)
    assert sum(p.numel() for p in module.parameters()) == 1_121_792  # reference section 2
    keys = set(module.state_dict())
    for key in CODEBOOK_KEYS:
        assert key in keys, key
    assert module.state_dict()["cross_attend_blocks.0.fn.to_kv.weight"].shape == (256, 256)
    out = module(torch.randn(1, 16384, 256))
    assert out.shape == (1, 256, 128) and out.isfinite().all()


def test_coordinate_attention_keys_and_residual_blocks():
    """The colour network's two blocks: a feed-forward part in the last one only."""
    colour = CoordinateAttention(289, depth=2, activation_name="gelu", latent_dim=128)
    keys = set(colour.state_dict())
    assert "cross_attend_blocks.1.1.fn.0.weight" in keys
    assert "cross_attend_blocks.1.1.fn.2.weight" in keys
    assert not any(key.startswith("cross_attend_blocks.0.1.") for key in keys)
    shapes = colour.state_dict()
    assert shapes["cross_attend_blocks.0.0.fn.to_q.weight"].shape == (128, 289)
    assert shapes["cross_attend_blocks.0.0.fn.to_out.weight"].shape == (289, 128)
    # With zeroed output projections every block is the identity: the residuals are there.
    for name, tensor in colour.state_dict().items():
        if name.endswith(("to_out.weight", "to_out.bias", "fn.2.weight", "fn.2.bias")):
            tensor.zero_()
    queries = torch.randn(2, 10, 289)
    assert torch.equal(colour(queries, torch.randn(2, 256, 128)), queries)


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="geglu"):
        CoordinateAttention(39, activation_name="geglu")
