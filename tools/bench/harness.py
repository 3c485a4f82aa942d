"""Timing harness: every candidate and its baselines measured in the same run, on the same
inputs; results printed and written into BENCHMARKS.md, replacing that benchmark's last section.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"


def median_seconds(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, max_seconds: float = 20.0
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` (CUDA synchronised).

    Stops early once ``max_seconds`` of measured time have passed (at least one run counts).
    """
    for _ in range(warmup):
        fn()
        _sync()
    times: list[float] = []
    while len(times) < repeats and (not times or sum(times) < max_seconds):
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Median wall time of each ``fns[name]()``, the candidates run in turn within every
    repeat, so that a drift of the machine (clock, memory) during the run hits them alike;
    the order flips from one repeat to the next, so that neither always runs first."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for index in range(warmup + repeats):
        order = list(fns.items())
        for name, fn in order[::-1] if index % 2 else order:
            start = time.perf_counter()
            fn()
            _sync()
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def machine(device: str = "cpu") -> str:
    """One line naming the machine, the thread count and the versions."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
    else:
        name = _cpu_model()
    threads = torch.get_num_threads()
    return (
        f"{name}; {os.cpu_count()} cores, torch threads {threads}; torch {torch.__version__}; "
        f"Python {platform.python_version()}"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@dataclass
class Table:
    """Rows of timings; ``candidate`` is compared against every other column (ratio = other /
    candidate, so > 1 means the candidate is faster)."""

    title: str
    candidate: str
    columns: Sequence[str]
    notes: str = ""
    rows: list[tuple[str, dict[str, float | None]]] = field(default_factory=list)
    unit: str = "ms"  # or "s", for cases that take minutes

    def add(self, case: str, seconds: dict[str, float | None]) -> None:
        self.rows.append((case, seconds))
        print(self._format_row(case, seconds), flush=True)

    def _format_row(self, case: str, seconds: dict[str, float | None]) -> str:
        cells = [case] + [_cell(seconds.get(c), self.unit) for c in self.columns]
        ours = seconds.get(self.candidate)
        for column in self.columns:
            if column != self.candidate:
                other = seconds.get(column)
                cells.append(f"{other / ours:.2f}x" if other and ours else "—")
        return "| " + " | ".join(cells) + " |"

    def markdown(self, device: str = "cpu") -> str:
        baselines = [c for c in self.columns if c != self.candidate]
        header = ["case"] + [f"{c} ({self.unit})" for c in self.columns]
        header += [f"{self.candidate} vs {b}" for b in baselines]
        lines = [
            f"### {self.title}",
            "",
            f"Machine: {machine(device)}. Median of repeats; ratio = baseline time / "
            f"{self.candidate} time (> 1: {self.candidate} is faster), measured in one run.",
        ]
        if self.notes:
            lines += ["", self.notes]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += [self._format_row(case, seconds) for case, seconds in self.rows]
        return "\n".join(lines) + "\n"


def _cell(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "—"
    if unit == "ms":
        return f"{seconds * 1e3:.1f}"
    return f"{seconds:,.0f}" if seconds >= 1000 else f"{seconds:.2f}"


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section between ``<!-- bench:name -->`` markers."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by `make bench`.\n\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def bench_main(doc: str, run: Callable[[str, bool], Table], section: str, quick_help: str) -> None:
    """The command line of a benchmark module: ``--device`` (default cpu) and ``--quick`` (fewer
    cases, BENCHMARKS.md left alone); otherwise the table replaces ``<section>-<device>``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help=f"{quick_help}, no file update")
    args = parser.parse_args()
    table = run(args.device, args.quick)
    if not args.quick and table.rows:
        write_section(f"{section}-{args.device}", table.markdown(args.device))
