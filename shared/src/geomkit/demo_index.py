"""The demo index: one page, ``outputs/index.html``, with a section per package that ran its demo.

Each package's demo leaves ``summary.json`` in its own output folder (:func:`write_summary`):
a title, a line saying what was run, its headline numbers and the pages it wrote. This command
gathers every ``OUT/*/summary.json`` into the index, so a newcomer opens one file:

    python -m geomkit.demo_index outputs
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io import save_json
from geomkit.io.files import atomic_write

SUMMARY = "summary.json"


def write_summary(
    folder: str | Path,
    title: str,
    ran: str,
    numbers: dict[str, float | str],
    pages: dict[str, str],
    order: int = 50,
) -> Path:
    """Write a package demo's ``summary.json`` into ``folder`` (its demo output folder).

    Args:
        folder: the package's demo output folder, directly under the index folder.
        title: section heading (the method's name).
        ran: one sentence on what the demo did, to read the numbers by.
        numbers: headline metric name -> value.
        pages: link text -> path relative to ``folder`` (pages that do not exist are dropped).
        order: sections are sorted by it, then by folder name.
    """
    folder = Path(folder)
    present = {text: link for text, link in pages.items() if (folder / link).is_file()}
    summary = {"title": title, "ran": ran, "numbers": numbers, "pages": present, "order": order}
    save_json(folder / SUMMARY, summary)
    return folder / SUMMARY


def read_summaries(root: Path) -> list[tuple[str, dict]]:
    """(folder name, summary) of every ``root/*/summary.json``, in section order."""
    found = []
    for path in sorted(root.glob(f"*/{SUMMARY}")):
        try:
            summary = json.loads(path.read_text())
            for key in ("title", "ran", "numbers", "pages"):
                summary[key]  # noqa: B018 - a missing key is a broken summary
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(f"{path} is not a demo summary ({err}); rerun that demo") from err
        found.append((path.parent.name, summary))
    return sorted(found, key=lambda item: (item[1].get("order", 50), item[0]))


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def render(sections: list[tuple[str, dict]]) -> str:
    """The index page's HTML."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Demo index</title><style>",
        "body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}"
        "section{border-top:1px solid #ccc;padding:0.5em 0}"
        "table{border-collapse:collapse}td{padding:2px 12px 2px 0}"
        "td.v{font-family:monospace;text-align:right}",
        "</style></head><body><h1>3D-vision methods on geomkit: demo results</h1>",
        "<p>Written by <code>make demo</code>; each section links to that package's own page.</p>",
    ]
    for folder, summary in sections:
        parts.append(f"<section><h2>{html.escape(summary['title'])}</h2>")
        parts.append(f"<p>{html.escape(summary['ran'])}</p><table>")
        for name, value in summary["numbers"].items():
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td class='v'>{_number(value)}</td></tr>"
            )
        parts.append("</table><p>")
        links = [
            f"<a href='{html.escape(folder)}/{html.escape(link)}'>{html.escape(text)}</a>"
            for text, link in summary["pages"].items()
        ]
        parts.append(" &middot; ".join(links) or "(no page)")
        parts.append(f" &middot; folder <code>{html.escape(folder)}/</code></p></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_index(root: str | Path) -> Path:
    """Write ``root/index.html`` from the summaries under ``root``; InputError if there are none."""
    root = Path(root)
    sections = read_summaries(root)
    if not sections:
        raise InputError(f"no {SUMMARY} under {root}/*/: run a package's demo first (make demo)")
    index = root / "index.html"
    with atomic_write(index, "wb") as handle:
        handle.write(render(sections).encode("utf-8"))
    return index


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m geomkit.demo_index", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", nargs="?", default="outputs", help="folder of the demo outputs")
    args = parser.parse_args(argv)
    index = write_index(args.root)
    print(f"wrote {index}")
    return 0


if __name__ == "__main__":
    run_main(main)
