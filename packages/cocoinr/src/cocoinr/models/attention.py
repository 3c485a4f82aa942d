"""CoCo-INR's attention (Perceiver-IO style), module and key names as the authors' checkpoints.

``CodebookAttention``: learnt latents (256 x 128) read the frozen VQGAN codebook once (cross
attention) and refine themselves (self attention); the result depends on no input, so a
caller computes it once per optimisation step, not per network call. ``CoordinateAttention``:
each point's encoded input reads those latents; only the last block has a feed-forward part.
The original's unused ``coordinate_attn.cross_attn`` is not built (its keys are dead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of ``x`` over ``context`` (``x`` itself by default): keys ``to_q``
    and ``to_kv`` (no bias; k and v in that order), ``to_out``; scale dim_head^-0.5.

    ``twice_differentiable``: the SDF networks' eikonal loss differentiates their gradient, and
    PyTorch's fused attention kernels have no second derivative; with gradients enabled such a
    module computes softmax(q k^T / sqrt(d)) v with plain operations (the same numbers).
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8,
                 dim_head: int = 64, twice_differentiable: bool = False):  # fmt: skip
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.twice_differentiable = twice_differentiable
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or query_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, query_dim) and (B, M, context_dim) -> (B, N, query_dim)."""
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)
        q, k, v = (self._split_heads(t) for t in (self.to_q(x), k, v))
        if self.twice_differentiable and torch.is_grad_enabled():
            weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # default scale: dim_head^-0.5
        B, _, N, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(B, N, -1))

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, N, _ = t.shape
        return t.reshape(B, N, self.heads, -1).transpose(1, 2)


class PreNorm(nn.Module):
    """LayerNorm (``norm``) on the input, and its own (``norm_context``) on the context."""

    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_context is None:
            return self.fn(self.norm(x))
        return self.fn(self.norm(x), context=self.norm_context(context))


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gates = x.chunk(2, dim=-1)
        return x * F.gelu(gates)


class FeedForward(nn.Module):
    """Linear(dim, 8 dim) -> GEGLU -> Linear(4 dim, dim) (keys ``net.0``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, 2 * mult * dim), GEGLU(), nn.Linear(mult * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CodebookAttention(nn.Module):
    """Latents that read the codebook once, then ``depth`` self-attention blocks; all residual.

    Keys: ``latents``, ``cross_attend_blocks.{0 (attention), 1 (feed-forward)}``,
    ``self_attend_blocks.<i>.{0, 1}``.
    """

    def __init__(self, codebook_dim: int, depth: int = 3, num_latents: int = 256,
                 latent_dim: int = 128, latent_heads: int = 4, latent_dim_head: int = 32,
                 cross_heads: int = 4, cross_dim_head: int = 32):  # fmt: skip
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))
        cross = Attention(latent_dim, codebook_dim, cross_heads, cross_dim_head)
        self.cross_attend_blocks = nn.ModuleList(
            [PreNorm(latent_dim, cross, context_dim=codebook_dim),
             PreNorm(latent_dim, FeedForward(latent_dim))]
        )  # fmt: skip
        self.self_attend_blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(latent_dim, Attention(latent_dim, None, latent_heads, latent_dim_head)),
                    PreNorm(latent_dim, FeedForward(latent_dim)),
                ]
            )  # fmt: skip
            for _ in range(depth)
        )

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        """(B, n_codes, codebook_dim) -> (B, num_latents, latent_dim)."""
        x = self.latents.expand(codebook.shape[0], -1, -1)
        attend, feed = self.cross_attend_blocks
        x = attend(x, context=codebook) + x
        x = feed(x) + x
        for attend, feed in self.self_attend_blocks:
            x = attend(x) + x
            x = feed(x) + x
        return x


def activation(name: str) -> nn.Module:
    """The coordinate attention's feed-forward activation, as the configs name it:
    Softplus(beta=100) in the SDF networks, GELU in the colour networks. (The original's
    default "geglu" halves the width before a layer expecting it whole: it cannot run.)"""
    choices = {"softplus": lambda: nn.Softplus(beta=100), "gelu": nn.GELU}
    if name not in choices:
        raise ValueError(f"activation must be one of {sorted(choices)}, got {name!r}")
    return choices[name]()


class CoordinateAttention(nn.Module):
    """``depth`` residual blocks in which the queries read the latents; the last also has a
    residual feed-forward part when ``decoder_ff``. ``twice_differentiable`` in SDF networks
    (see :class:`Attention`).

    Keys: ``cross_attend_blocks.<i>.0`` (attention) and, for the last block,
    ``cross_attend_blocks.<depth-1>.1.{norm, fn.0, fn.2}``.
    """

    def __init__(self, queries_dim: int, depth: int = 1, activation_name: str = "gelu",
                 latent_dim: int = 128, cross_heads: int = 4, cross_dim_head: int = 32,
                 decoder_ff: bool = True, twice_differentiable: bool = False):  # fmt: skip
        super().__init__()
        self.cross_attend_blocks = nn.ModuleList()
        for index in range(depth):
            attend = Attention(queries_dim, latent_dim, cross_heads, cross_dim_head,
                               twice_differentiable)  # fmt: skip
            block = nn.ModuleList([PreNorm(queries_dim, attend, context_dim=latent_dim)])
            if index == depth - 1 and decoder_ff:
                ffn = nn.Sequential(
                    nn.Linear(queries_dim, queries_dim),
                    activation(activation_name),
                    nn.Linear(queries_dim, queries_dim),
                )
                block.append(PreNorm(queries_dim, ffn))
            self.cross_attend_blocks.append(block)

    def forward(self, queries: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """(B, N, queries_dim) points' features and (B, n_latents, latent_dim) latents -> (B, N,
        queries_dim)."""
        x = queries
        for block in self.cross_attend_blocks:
            x = block[0](x, context=latents) + x
            if len(block) > 1:
                x = block[1](x) + x
        return x
