"""The demos (python -m numcc.demo_web, numcc.demo_iphone) end to end with fabricated
checkpoints: the files they write, the way back to the input's frame, and bad input."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from geomkit.errors import run_main
from geomkit.io import read_ply
from numcc import demo_iphone, demo_web
from numcc.args import get_args_parser
from numcc.demo_inputs import WEB_MARGIN, read_depth_png, read_mask, web_points
from numcc.demo_viz import OUTPUTS
from numcc.models import MCC, NUMCC, SIZES

from ..helpers import REPO, assert_close, fresh_venv, import_every_module
from .official_layout import numcc_layout
from .test_models import fabricate

GUDETAMA_SCALE, GUDETAMA_SEEN = 2517.75, 7489  # reference notes, section 4 (web demo)
MCC_PEAKS = (10, 20)  # two equal colour logits: expectation 15, argmax 10


def tiny_checkpoint(path, model_class, **changes):
    torch.manual_seed(0)
    args = get_args_parser().parse_args(["--model_size", "tiny"])
    model = model_class(args, SIZES["tiny"])
    state = model.state_dict()
    for key, value in changes.items():
        state[key] = value
    torch.save({"model": state, "args": args, "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def tiny_numcc(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", NUMCC)


@pytest.fixture(scope="module")
def gudetama(shared_data):
    return shared_data / "numcc" / "web" / "gudetama"


def web_argv(folder, checkpoint, output, *extra):
    inputs = [f"--{name}={folder / f'{name}.png'}" for name in ("depth", "seg")]
    return [f"--image={folder / 'im.png'}", *inputs, f"--checkpoint={checkpoint}",
            f"--output={output}", *extra]  # fmt: skip


def outputs(prefix) -> dict:
    return {name: prefix.parent / f"{prefix.name}{suffix}" for name, suffix in OUTPUTS.items()}


def points_of(path) -> np.ndarray:
    return read_ply(path).points.astype(np.float64)


def exit_line(main, argv, capsys) -> str:
    """Run an entry point expecting a user error: exit 2 and one stderr line, returned."""
    with pytest.raises(SystemExit) as stop:
        run_main(main, argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def expected_web_seen(folder) -> torch.Tensor:
    """The valid 112^2 seen points in the depth's own frame, computed without normalising
    (crop to the mask's box + 10 px, pad square with inf, bilinear to 112): the demo
    normalises first, and both steps commute with bilinear resizing."""
    size_hw = Image.open(folder / "im.png").size[::-1]
    points = web_points(read_depth_png(folder / "depth.png", size_hw))
    mask = read_mask(folder / "seg.png", size_hw)
    points[~mask] = math.inf
    rows, cols = mask.nonzero().unbind(1)
    top, left = max(int(rows.min()) - WEB_MARGIN, 0), max(int(cols.min()) - WEB_MARGIN, 0)
    crop = points[top : int(rows.max()) + WEB_MARGIN + 1, left : int(cols.max()) + WEB_MARGIN + 1]
    side = max(crop.shape[:2])
    square = torch.full((side, side, 3), math.inf)
    square[: crop.shape[0], : crop.shape[1]] = crop
    resized = F.interpolate(square.permute(2, 0, 1)[None], size=(112, 112), mode="bilinear")
    resized = resized[0].permute(1, 2, 0)
    return resized[torch.isfinite(resized).all(-1)], points[mask]


def affine_fit(normalised: np.ndarray, input_frame: np.ndarray) -> tuple[float, np.ndarray]:
    """(scale, shift) with input_frame = scale * normalised + shift, from the seen points."""
    scale = (input_frame - input_frame.mean(0)).std() / (normalised - normalised.mean(0)).std()
    return scale, input_frame.mean(0) - scale * normalised.mean(0)


@pytest.mark.realdata
def test_web_demo_writes_both_frames(gudetama, tiny_numcc, tmp_path, capsys):
    prefix = tmp_path / "demo" / "output"
    assert demo_web.main(web_argv(gudetama, tiny_numcc, prefix, "--n_viz_queries=8000")) == 0
    files = outputs(prefix)
    assert all(path.is_file() for path in files.values())
    page = files["html"].read_text()
    assert all(f'"name":"{name}"' in page for name in ("seen", "prediction", "anchors"))
    # The seen points mapped back are the depth's own points.
    expected_seen, input_points = expected_web_seen(gudetama)
    seen_input = points_of(files["seen_input"])
    assert len(seen_input) == GUDETAMA_SEEN
    assert_close(seen_input, expected_seen, atol=0.05, rtol=1e-5, what="seen, input frame")
    # One affine map takes both normalised files to their input-frame twins.
    scale, shift = affine_fit(points_of(files["seen"]), seen_input)
    assert scale == pytest.approx(GUDETAMA_SCALE, rel=1e-4)
    pred, pred_input = points_of(files["pred"]), points_of(files["pred_input"])
    assert len(pred) > 500 and f"{len(pred):,} points predicted" in capsys.readouterr().out
    assert_close(pred_input, scale * pred + shift, atol=0.05, rtol=1e-5, what="prediction")
    # An untrained model's points stay near the object: within its box grown by half its side.
    low, high = input_points.min(0).values.numpy(), input_points.max(0).values.numpy()
    margin = 0.5 * (high - low).max()
    assert (pred_input > low - margin).all() and (pred_input < high + margin).all()
    assert read_ply(files["pred"]).colors is not None


@pytest.mark.realdata
def test_mcc_checkpoint_takes_the_occupancy_path_with_expected_colours(gudetama, tmp_path, capsys):
    # A head that says "occupied" everywhere, with two equal colour peaks per channel.
    head_w = torch.zeros(1 + 768, SIZES["tiny"].decoder_embed_dim)
    head_b = torch.full((3, 256), -5.0)
    head_b[:, list(MCC_PEAKS)] = 5.0
    head_b = torch.cat([torch.tensor([10.0]), head_b.reshape(-1)])
    checkpoint = tiny_checkpoint(
        tmp_path / "mcc.pth", MCC, **{"decoder_pred.weight": head_w, "decoder_pred.bias": head_b}
    )
    prefix = tmp_path / "mcc"
    argv = web_argv(gudetama, checkpoint, prefix, "--n_viz_queries=3000", "--seed=5")
    assert demo_web.main(argv) == 0
    files = outputs(prefix)
    cloud = read_ply(files["pred"])
    # Occupancy keeps every query (MCC has no anchors to filter them): the seeded queries.
    queries = (torch.rand(3000, 3, generator=torch.Generator().manual_seed(5)) * 2 - 1) * 3
    assert_close(cloud.points, queries, what="MCC points = queries")
    assert np.all(np.round(cloud.colors * 255) == sum(MCC_PEAKS) / 2)  # argmax would be 10
    assert '"name":"anchors"' not in files["html"].read_text()


@pytest.mark.realdata
def test_web_demo_cli_with_an_official_layout_checkpoint(gudetama, tmp_path):
    """Acceptance: python -m numcc.demo_web on the gudetama sample with a fabricated
    udf-ep99.pth-like file (469 keys, published size) writes the HTML and the PLYs."""
    checkpoint = tmp_path / "udf-ep99.pth"
    fabricate(numcc_layout(), checkpoint, get_args_parser().parse_args([]),
              torch.Generator().manual_seed(0))  # fmt: skip
    prefix = tmp_path / "demo" / "output"
    argv = web_argv(gudetama, checkpoint, prefix, "--n_viz_queries=50000")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "numcc.demo_web", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    print(f"demo_web, base model: {time.perf_counter() - start:.1f} s")
    assert done.returncode == 0, done.stderr
    files = outputs(prefix)
    assert all(path.is_file() for path in files.values())
    assert len(points_of(files["seen_input"])) == GUDETAMA_SEEN
    n_pred = len(points_of(files["pred_input"]))
    assert n_pred > 0 and f"{n_pred:,} points predicted" in done.stdout
    assert str(files["html"]) in done.stdout


@pytest.mark.slow
@pytest.mark.realdata
def test_fresh_venv_install_runs_the_web_demo(gudetama, tiny_numcc, tmp_path):
    """pip install ./shared ./packages/numcc into a new venv: every numcc module imports, and
    python -m numcc.demo_web writes its page and PLYs on the gudetama sample."""
    python = fresh_venv(tmp_path / "venv", "shared", "packages/numcc")
    import_every_module(python, "numcc", tmp_path)
    prefix = tmp_path / "demo" / "output"
    argv = web_argv(gudetama, tiny_numcc, prefix, "--n_viz_queries=8000")
    done = subprocess.run([str(python), "-m", "numcc.demo_web", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(path.is_file() for path in outputs(prefix).values())


# --- iPhone demo: a Record3D-like capture made here ---------------------------------------


def record3d_capture(folder, n_vertices=640 * 480):
    """A tilted plane not through the origin as a 640 x 480 vertex grid, a 720 x 960 image
    and a mask of a disc. Returns the plane (normal, offset): normal . x = offset."""
    v, u = np.meshgrid(np.arange(640), np.arange(480), indexing="ij")
    x, y = (u - 240) / 400.0, (v - 320) / 400.0
    z = 2.0 + 0.3 * x - 0.2 * y
    vertices = np.stack([x, y, z], -1).reshape(-1, 3)[:n_vertices]
    np.savetxt(folder / "pc.obj", vertices, fmt="v %.7f %.7f %.7f")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (960, 720, 3), dtype=np.uint8)).save(folder / "im.jpg")
    rows, cols = np.mgrid[:960, :720]
    disc = (rows - 480) ** 2 + (cols - 360) ** 2 < 250**2
    Image.fromarray((disc * 255).astype(np.uint8)).save(folder / "seg.png")
    return np.array([0.3, -0.2, -1.0]), -2.0


def iphone_argv(folder, checkpoint, output, *extra):
    names = {"image": "im.jpg", "point_cloud": "pc.obj", "seg": "seg.png"}
    inputs = [f"--{flag}={folder / name}" for flag, name in names.items()]
    return [*inputs, f"--checkpoint={checkpoint}", f"--output={output}", *extra]


def test_iphone_demo_maps_back_and_never_overwrites(tiny_numcc, tmp_path, capsys):
    normal, offset = record3d_capture(tmp_path)
    prefix = tmp_path / "out" / "luggage"
    argv = iphone_argv(tmp_path, tiny_numcc, prefix, "--n_viz_queries=3000")
    assert demo_iphone.main(argv) == 0
    files = outputs(prefix)
    seen = points_of(files["seen_input"])
    # Bilinear resizing keeps points on a plane, so the way back lands on the capture's plane.
    assert len(seen) > 1000
    assert np.abs(seen @ normal - offset).max() < 1e-4
    assert len(points_of(files["pred_input"])) > 0
    before = {name: path.read_bytes() for name, path in files.items()}
    capsys.readouterr()
    err = exit_line(demo_iphone.main, argv, capsys)
    assert str(files["html"]) in err and "--overwrite" in err
    assert all(path.read_bytes() == before[name] for name, path in files.items())
    assert demo_iphone.main([*argv, "--overwrite", "--seed=1"]) == 0
    assert files["pred"].read_bytes() != before["pred"]


def test_wrong_record3d_vertex_count_is_one_line_and_writes_nothing(tiny_numcc, tmp_path, capsys):
    record3d_capture(tmp_path, n_vertices=300_000)
    out = tmp_path / "out"
    err = exit_line(demo_iphone.main, iphone_argv(tmp_path, tiny_numcc, out / "x"), capsys)
    assert str(tmp_path / "pc.obj") in err and "640 x 480" in err
    assert not out.exists()


def test_missing_checkpoint_is_one_line_naming_it(tmp_path, capsys):
    record3d_capture(tmp_path)
    missing, out = tmp_path / "pretrained" / "udf-ep99.pth", tmp_path / "out"
    err = exit_line(demo_iphone.main, iphone_argv(tmp_path, missing, out / "x"), capsys)
    assert str(missing) in err
    assert not out.exists()
