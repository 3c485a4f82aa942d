"""NU-MCC's decoders vs MCC's decoder on the queries of the evaluation grid, each from its own
encoder output computed once (not timed), paper-size models with random weights (seed 0).

NU-MCC: decoderl2 + fc_out per query (neighbourhood attention over 4 anchors, 4 seen pixels and
the global token); MCC: 8 transformer blocks over the 197 latent tokens and the queries. Both
in chunks of --n_query_udf 12000 queries; the Repulsive UDF's iterations are not included.

Run: python -m tools.bench.bm_numcc_decoder [--quick]
"""

from __future__ import annotations

import torch

from numcc.args import get_args_parser
from numcc.models import build_model
from numcc.udf import evaluation_grid
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "numcc-decoder"
COLUMNS = ["numcc", "mcc"]
CHUNK = 12000


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, 224, 224, generator=g)
    xyz = torch.rand(1, 112, 112, 3, generator=g) * 2 - 1
    return image, xyz, torch.ones(1, 112, 112, dtype=torch.bool)


def decoders(device: str):
    """(name -> decode(queries)) of both models, encoders run once."""
    torch.manual_seed(0)
    calls = {}
    for name in COLUMNS:
        args = get_args_parser().parse_args(["--model", name])
        model = build_model(args).to(device).eval()
        image, xyz, valid = (t.to(device) for t in inputs())
        with torch.no_grad():
            encoding = model.encode(image, xyz, valid)
        calls[name] = lambda q, m=model, e=encoding: m.decode(e, q)
    return calls


def run(device: str, quick: bool) -> Table:
    n_queries = 21_600 if quick else 216_000
    grid = evaluation_grid().to(device)
    queries = grid[torch.linspace(0, len(grid) - 1, n_queries).long()][None]
    table = Table(
        f"NU-MCC vs MCC decoder, {device}",
        COLUMNS[0],
        COLUMNS,
        notes="Paper-size models, random weights; the evaluation grid's queries in chunks of "
        f"{CHUNK:,}; encoders run once per model (not timed).",
    )
    calls = decoders(device)

    def decode_all(decode):
        with torch.no_grad():
            for chunk in queries.split(CHUNK, dim=1):
                decode(chunk)

    # One run each when a run takes over a minute (the full grid on a small CPU).
    repeats = 1 if quick else 3
    times = {
        name: median_seconds(lambda d=call: decode_all(d), repeats, 0, 60)
        for name, call in calls.items()
    }
    table.add(f"{n_queries:,} queries", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "21,600 queries")
