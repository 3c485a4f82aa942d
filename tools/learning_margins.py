"""Run the suite's learning tests over several training seeds and both CPU instruction-set
settings, and print each asserted margin's worst and median value.

A learning test trains a model and asserts margins through ``tests.helpers.assert_margins``;
its verdict must not depend on the seed or on the machine (AVX2 vs AVX-512 kernels round
differently, and a short training run amplifies that). This is how a package checks itself:

    .venv/bin/python -m tools.learning_margins                  # 5 seeds x 2 ISAs, -m learning
    .venv/bin/python -m tools.learning_margins --seeds 3 -k onet --markers "learning and slow"

Exit status 1 when any margin is negative in any run (the table says where).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from geomkit.errors import ArgumentParser
from tests.helpers import LEARNING_SEED_VAR, MARGINS_FILE_VAR

REPO = Path(__file__).resolve().parents[1]

# oneDNN, MKL and ATen's own kernels limited to AVX2, as on a machine without AVX-512.
ISA_SETTINGS = {
    "default": {},
    "avx2": {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
    },
}


def run_once(seed: int, isa: str, markers: str, keyword: str | None, margins: Path) -> int:
    """One pytest run of the selected tests; margins are appended to ``margins``."""
    env = {**os.environ, **ISA_SETTINGS[isa], LEARNING_SEED_VAR: str(seed)}
    env[MARGINS_FILE_VAR] = str(margins)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", markers]
    command += ["-k", keyword] if keyword else []
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    tail = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
    print(f"seed {seed} isa {isa}: {tail[0]}", flush=True)
    return result.returncode


def summarise(records: list[dict]) -> tuple[list[str], bool]:
    """Table lines (test, check, bound, worst and median margin, runs) and whether all hold."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        groups[record["test"], record["check"]].append(record)
    lines = [f"{'test':58s} {'check':28s} {'bound':>7s} {'worst':>8s} {'median':>8s} runs"]
    all_hold = True
    for (test, check), group in sorted(groups.items()):
        margins = [r["value"] - r["bound"] for r in group]
        worst = min(group, key=lambda r: r["value"] - r["bound"])
        all_hold &= min(margins) >= 0
        lines.append(
            f"{test:58s} {check:28s} {group[0]['bound']:7.3f} {min(margins):+8.4f} "
            f"{statistics.median(margins):+8.4f} {len(group):4d}"
            f"  (worst: seed {worst['seed']}, {worst['isa']})"
        )
    return lines, all_hold


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m tools.learning_margins", description=__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="training seeds 0..N-1")
    parser.add_argument(
        "--isa", nargs="+", choices=sorted(ISA_SETTINGS), default=["default", "avx2"]
    )
    parser.add_argument("--markers", default="learning and not slow", help="pytest -m expression")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument("--json", type=Path, help="also write every record here")
    args = parser.parse_args(argv)
    records = []
    with tempfile.TemporaryDirectory() as folder:
        for isa in args.isa:
            for seed in range(args.seeds):
                margins = Path(folder) / f"{isa}-{seed}.jsonl"
                margins.touch()
                run_once(seed, isa, args.markers, args.keyword, margins)
                lines = margins.read_text().splitlines()
                records += [{**json.loads(line), "isa": isa} for line in lines]
    if not records:
        print("no margins recorded: did the selection match any learning test?")
        return 1
    table, all_hold = summarise(records)
    print("\n".join(table))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 0 if all_hold else 1


if __name__ == "__main__":
    sys.exit(main())
