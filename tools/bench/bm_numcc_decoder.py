"""NU-MCC's decoders vs MCC's decoder on the queries of the evaluation grid, each from its own
encoder output computed once (not timed), paper-size models with random weights (seed 0).

NU-MCC: decoderl2 + fc_out per query (neighbourhood attention over 4 anchors, 4 seen pixels and
the global token), in chunks of --n_query_udf 12000. MCC twice: ours (each query attends to the
197 latents and itself, no mask; chunks of 12000) and the original algorithm (one dense
(197 + Q)^2 attention per block with a -inf mask, 2,000 queries per pass as MCC's evaluation).
The Repulsive UDF's iterations are not included.

Run: python -m tools.bench.bm_numcc_decoder [--device cuda] [--quick]
"""

from __future__ import annotations

import torch

from numcc.args import get_args_parser
from numcc.models import build_model
from numcc.models.mcc import MCCDecoderAttention
from numcc.udf import evaluation_grid
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "numcc-decoder"
COLUMNS = ["numcc", "mcc", "mcc_original"]
CHUNK = {"numcc": 12000, "mcc": 12000, "mcc_original": 2000}


def inputs(device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, 224, 224, generator=g)
    xyz = torch.rand(1, 112, 112, 3, generator=g) * 2 - 1
    valid = torch.ones(1, 112, 112, dtype=torch.bool)
    return image.to(device), xyz.to(device), valid.to(device)


def dense_masked_attention(attn: MCCDecoderAttention, x: torch.Tensor, n_queries: int):
    """The original MCC decoder's attention: all (L + Q)^2 scores, queries masked off each
    other by -inf but for their own diagonal."""
    B, N, C = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, C // attn.num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    mask = torch.zeros(N, N, device=x.device)
    mask[:, N - n_queries :] = float("-inf")
    mask[N - n_queries :, N - n_queries :].fill_diagonal_(0.0)
    weights = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5 + mask).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(B, N, C))


def build_decoder_model(name: str, device: str) -> torch.nn.Module:
    """The column's paper-size model, seed 0, in eval mode (mcc_original: MCC's weights with
    the dense masked attention)."""
    torch.manual_seed(0)
    args = get_args_parser().parse_args(["--model", name.removesuffix("_original")])
    model = build_model(args).to(device).eval().requires_grad_(False)
    if name == "mcc_original":
        for block in model.decoder_blocks:
            block.attn.forward = lambda x, n, a=block.attn: dense_masked_attention(a, x, n)
    return model


def decoders(device: str):
    """(name -> decode(queries)) of the three decoders, each model's encoder run once."""
    calls = {}
    for name in COLUMNS:
        model = build_decoder_model(name, device)
        with torch.no_grad():
            encoding = model.encode(*inputs(device))
        calls[name] = lambda q, m=model, e=encoding: m.decode(e, q)
    return calls


def check_same_mcc(calls, queries: torch.Tensor) -> float:
    """Largest difference of ours and the original algorithm on the same 2,000 queries."""
    with torch.no_grad():
        ours, original = (calls[n](queries[:, :2000]) for n in ("mcc", "mcc_original"))
    return (ours - original).abs().max().item()


def run(device: str, quick: bool) -> Table:
    n_queries = 21_600 if quick else 216_000
    grid = evaluation_grid().to(device)
    queries = grid[torch.linspace(0, len(grid) - 1, n_queries).long()][None]
    calls = decoders(device)
    gap = check_same_mcc(calls, queries)
    print(f"our MCC vs the original algorithm, 2,000 queries: max |difference| {gap:.1e}")
    table = Table(
        f"NU-MCC vs MCC decoder, {device}",
        COLUMNS[0],
        COLUMNS,
        notes="Paper-size models, random weights; the evaluation grid's queries in chunks of "
        f"{CHUNK['numcc']:,} (NU-MCC, our MCC) and {CHUNK['mcc_original']:,} (the original "
        "MCC's dense masked attention); encoders run once per model (not timed). Our MCC and "
        f"the original algorithm agree to {gap:.1e} on the same weights and queries.",
    )

    def decode_all(name):
        with torch.no_grad():
            for chunk in queries.split(CHUNK[name], dim=1):
                calls[name](chunk)

    # One run each when a run takes over a minute (the full grid on a small CPU).
    repeats = 1 if quick else 3
    times = {name: median_seconds(lambda n=name: decode_all(n), repeats, 0, 60) for name in calls}
    table.add(f"{n_queries:,} queries", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "21,600 queries")
