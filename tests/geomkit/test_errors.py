"""Every user error of the io readers becomes one stderr line and exit status 2 in an entry
point (geomkit.errors.run_main); the evaluator and checkpoint CLIs test theirs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geomkit import io
from geomkit.errors import InputError, OutputExistsError, one_line, run_main


def make_cases(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    io.write_image(tmp_path / "eight_bit.png", np.zeros((4, 4, 3), np.uint8))
    io.save_npz(tmp_path / "arrays.npz", points=np.zeros((5, 2)))
    (tmp_path / "bad.json").write_text('{"a": 1,,}')
    (tmp_path / "bad.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nend_header\n1 2\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("keep me")
    return {
        "missing image": (lambda: io.read_image(tmp_path / "none.png"), "none.png"),
        "corrupt image": (lambda: io.read_image(tmp_path / "bad.png"), "bad.png"),
        "8-bit depth": (lambda: io.read_depth_png(tmp_path / "eight_bit.png"), "16-bit"),
        "npz shape": (
            lambda: io.load_npz(tmp_path / "arrays.npz", {"points": (None, 3)}),
            "points",
        ),
        "npz key": (
            lambda: io.load_npz(tmp_path / "arrays.npz", {"normals": (None, 3)}),
            "normals",
        ),
        "bad json": (lambda: io.load_json(tmp_path / "bad.json"), "bad.json"),
        "json key": (lambda: io.load_json(_json(tmp_path), required_keys=("frames",)), "frames"),
        "bad ply": (lambda: io.read_ply(tmp_path / "bad.ply"), "bad.ply"),
        "suffix": (lambda: io.read_mesh(tmp_path / "mesh.stl"), ".stl"),
        "overwrite": (lambda: io.prepare_output_dir(tmp_path / "out"), "--overwrite"),
    }


def _json(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"w": 4}))
    return path


def test_each_io_error_exits_2_with_one_line(tmp_path, capsys):
    for name, (call, expected) in make_cases(tmp_path).items():
        with pytest.raises(SystemExit) as exit_info:
            run_main(lambda argv, call=call: call())
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2, name
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], (name, err)
    assert (tmp_path / "out" / "old.txt").read_text() == "keep me"  # nothing overwritten


def test_one_line_and_exit_codes(capsys):
    assert one_line("a\n  b\n\nc") == "a; b; c"
    with pytest.raises(SystemExit) as ok:
        run_main(lambda argv: None)
    assert ok.value.code == 0
    with pytest.raises(SystemExit) as bad:
        run_main(lambda argv: (_ for _ in ()).throw(OutputExistsError("x exists\nuse --overwrite")))
    assert bad.value.code == 2
    assert capsys.readouterr().err == "error: x exists; use --overwrite\n"
    with pytest.raises(ZeroDivisionError):  # bugs keep their traceback
        run_main(lambda argv: 1 / 0)
    assert issubclass(InputError, Exception)
