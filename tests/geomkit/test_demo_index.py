"""The demo index: summaries written by each package's demo, gathered into outputs/index.html."""

from __future__ import annotations

import json

import pytest

from geomkit import demo_index
from geomkit.demo_index import write_index, write_summary
from geomkit.errors import run_main


def _exit_status(argv) -> int:
    with pytest.raises(SystemExit) as exit_info:
        run_main(demo_index.main, argv)
    return exit_info.value.code


def _package_folder(root, name, pages):
    folder = root / name
    folder.mkdir(parents=True)
    for page in pages:
        (folder / page).parent.mkdir(parents=True, exist_ok=True)
        (folder / page).write_text("<html></html>")
    return folder


def test_index_has_a_section_per_summary_in_order_with_numbers_and_links(tmp_path):
    onet = _package_folder(tmp_path, "onet", ["demo_small/index.html"])
    geomkit = _package_folder(tmp_path, "demo", ["view.html"])
    write_summary(
        onet,
        "onet <CVPR'19>",
        "a small run",
        {"IoU": 0.64213, "note": "x & y"},
        {"held out": "demo_small/index.html", "real photos": "demo/index.html"},
        order=10,
    )
    write_summary(geomkit, "geomkit", "bunny", {"Chamfer-L1": 0.0123456}, {"view": "view.html"}, 0)
    page = write_index(tmp_path).read_text()
    assert page.index("geomkit") < page.index("onet &lt;CVPR&#x27;19&gt;")
    assert "0.6421" in page and "0.01235" in page and "x &amp; y" in page
    assert "href='onet/demo_small/index.html'" in page and "href='demo/view.html'" in page
    assert "demo/index.html" not in page.replace("onet/demo_small/index.html", "")  # absent page
    saved = json.loads((onet / "summary.json").read_text())
    assert saved["pages"] == {"held out": "demo_small/index.html"}


def test_no_summary_or_a_broken_one_is_one_line_and_status_2(tmp_path, capsys):
    assert _exit_status([str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
    (tmp_path / "npbgpp").mkdir()
    (tmp_path / "npbgpp" / "summary.json").write_text('{"title": "x"}')
    assert _exit_status([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "npbgpp/summary.json is not a demo summary" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "index.html").exists()
