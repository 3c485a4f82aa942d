"""One object of ``--run_val`` end to end, as the paper's ">5x faster" compares: the encoder,
the 216,000-point evaluation grid through the decoder, and the extraction (NU-MCC: Repulsive
UDF, 10 steps with gradients through decoderl2; MCC: occupancy above 0.1), the colours of
the final points included. Paper-size models, random weights (seed 0), the same inputs.

NU-MCC and our MCC in chunks of --n_query_udf 12000; the original MCC algorithm (dense masked
attention, see bm_numcc_decoder) in passes of 2,000. With random weights the number of
points the UDF refines differs from a trained model's: the table gives it.

Run: python -m tools.bench.bm_numcc_end_to_end [--device cuda] [--quick]
"""

from __future__ import annotations

import torch

from numcc.args import get_args_parser
from numcc.predict import eval_queries, object_decoder, reconstruct
from tools.bench.bm_numcc_decoder import CHUNK, COLUMNS, build_decoder_model, inputs
from tools.bench.harness import Table, bench_main, median_seconds

SECTION = "numcc-end-to-end"
DEVICES = ("cuda",)  # make bench: the original MCC takes ~10 min per object on 2 cores


def one_object(model, args, queries, device: str):
    """(points, colours) of the benchmark's object, as --run_val computes them."""
    image, xyz, valid = inputs(device)
    seen_xyz = torch.where(valid[0, ..., None], xyz[0], float("inf"))
    decode, _ = object_decoder(model, seen_xyz, image[0])
    colour = "expectation" if args.model == "mcc" else "argmax"
    return reconstruct(decode, queries, args, colour)


def run(device: str, quick: bool) -> Table:
    table = Table(
        f"NU-MCC vs MCC, one object of --run_val end to end, {device}",
        COLUMNS[0],
        COLUMNS,
        notes="Paper-size models, random weights; encoder + 216,000-point grid + extraction + "
        "colours per object. Points out (refined by the UDF for NU-MCC): {counts}.",
    )
    queries = eval_queries(get_args_parser().parse_args([])).to(device)
    queries = queries[::10] if quick else queries
    counts, times = {}, {}
    for name in COLUMNS:
        args = get_args_parser().parse_args(
            ["--model", name.removesuffix("_original"), "--n_query_udf", str(CHUNK[name])]
        )
        model = build_decoder_model(name, device)
        points, _ = one_object(model, args, queries, device)
        counts[name] = f"{name} {len(points):,}"
        times[name] = median_seconds(
            lambda m=model, a=args: one_object(m, a, queries, device), 3, 0, 20
        )
        print(f"{name}: {times[name]:.2f} s, {counts[name]}", flush=True)
    table.notes = table.notes.format(counts=", ".join(counts.values()))
    table.add(f"{len(queries):,} queries", times)
    return table


if __name__ == "__main__":
    bench_main(__doc__, run, SECTION, "21,600 queries")
