"""``numcc.main`` end to end on a generated CO3D-layout dataset with a tiny model: training
with accumulation and evaluation, torchrun (2 processes = 1 process with the same global
batch), kill -9 and resume, --run_val / --run_viz from a checkpoint, bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from geomkit.synth.layouts.co3d import generate_co3d
from numcc.data.co3d import read_jgz

from ..helpers import REPO, assert_close, torchrun
from .runs import numcc_main

TINY_RUN = [
    "--model_size",
    "tiny",
    "--device",
    "cpu",
    "--num_workers",
    "0",
    "--drop_path",
    "0",  # stochastic depth draws differ per process
    "--train_epoch_len_multiplier",
    "2",
    "--accum_iter",
    "2",
    "--blr",
    "0.05",
    "--eval_granularity",
    "0.3",
    "--n_query_udf",
    "4000",
    "--val_every",
    "100",
    "--viz_every",
    "100",
    "--print_every",
    "1",
]


@pytest.fixture(scope="module")
def co3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("numcc_main")
    generate_co3d(root / "co3d", ("sphere", "torus"), sequences=3, views=3, image_size=(48, 64))
    return root


def run_args(exp: str, *extra: str) -> list[str]:
    return ["--co3d_path", "co3d", "--exp_name", exp, *TINY_RUN, *extra]


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["model"]


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert_close(a[key], b[key], atol=atol, what=key)


def test_two_processes_train_and_evaluate_like_one(co3d):
    one = numcc_main(co3d, *run_args("one", "--batch_size", "2", "--epochs", "2"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(
        "-m", "numcc.main", *run_args("two", "--batch_size", "1", "--epochs", "2"), cwd=co3d
    )
    assert two.returncode == 0, two.stderr[-3000:]
    first = weights(co3d / "experiments/one/checkpoint-last.pth")
    initial = {k: v.clone() for k, v in first.items()}
    assert_same_weights(first, weights(co3d / "experiments/two/checkpoint-last.pth"), 2e-5)
    ours = json.loads((co3d / "experiments/one/metrics/epoch1/metrics.json").read_text())
    theirs = json.loads((co3d / "experiments/two/metrics/epoch1/metrics.json").read_text())
    assert [o["object"] for o in ours["objects"]] == [o["object"] for o in theirs["objects"]]
    assert len(ours["objects"]) == 2 and set(ours["classes"]) == {"sphere", "torus"}
    assert_close(ours["mean"]["F1"], theirs["mean"]["F1"], atol=0.02, what="F1")
    assert "mean  Pr" in one.stdout and "torus  Pr" in one.stdout
    # 8 samples, batch 2, accumulation 2: 2 optimizer steps per epoch, the weights moved
    saved = torch.load(co3d / "experiments/one/checkpoint-0.pth", weights_only=False)
    assert saved["epoch"] == 0 and set(saved) >= {"model", "optimizer", "scaler", "args", "epoch"}
    assert any((initial[k] - saved["model"][k]).abs().max() > 0 for k in initial)
    assert (co3d / "experiments/one/log.txt").is_file()
    assert list((co3d / "experiments/one/logs").glob("events.out.tfevents.*"))


def test_kill_and_resume_repeat_an_uninterrupted_run(co3d):
    argv = ["--batch_size", "2", "--epochs", "3", "--save_every_iters", "1"]
    done = numcc_main(co3d, *run_args("whole", *argv))
    assert done.returncode == 0, done.stderr[-3000:]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "numcc.main", *run_args("killed", *argv)]
    process = subprocess.Popen(
        command, cwd=co3d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = co3d / "experiments/killed/checkpoint-last.pth"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(last, weights_only=False)
    assert saved["epoch"] == 0 and saved["batch"] == 2  # killed inside the first epoch
    resumed = numcc_main(co3d, *run_args("killed", *argv))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at epoch 0, iteration 2" in resumed.stderr
    assert_same_weights(
        weights(co3d / "experiments/whole/checkpoint-last.pth"), weights(last), atol=0.0
    )


def test_run_val_and_run_viz_from_a_checkpoint(co3d, tmp_path):
    checkpoint = co3d / "experiments/one/checkpoint-last.pth"
    if not checkpoint.exists():
        pytest.skip("needs the training run of test_two_processes_train_and_evaluate_like_one")
    argv = run_args("eval", "--resume", str(checkpoint), "--run_val", "--run_viz", "--save_pc")
    done = numcc_main(co3d, *argv, "--n_viz_queries", "20000", "--max_n_viz_obj", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((co3d / "experiments/eval/metrics/epoch1/metrics.json").read_text())
    trained = json.loads((co3d / "experiments/one/metrics/epoch1/metrics.json").read_text())
    assert_close(metrics["mean"]["F1"], trained["mean"]["F1"], atol=1e-6, what="same model")
    pages = list((co3d / "experiments/eval/viz/epoch1").glob("*.html"))
    assert len(pages) == 1 and "plotly" in pages[0].read_text()[:20000].lower()
    assert list((co3d / "experiments/eval/viz/epoch1").glob("*_pred.ply"))
    assert list((co3d / "experiments/eval/metrics/epoch1").glob("*_gt.ply"))


@pytest.mark.parametrize("problem", ["no_folder", "no_pointcloud", "mask_size", "checkpoint"])
def test_bad_inputs_one_line_exit_2_nothing_written(co3d, tmp_path, problem):
    generate_co3d(tmp_path / "co3d", ("sphere",), sequences=2, views=2, image_size=(48, 64))
    argv = run_args("bad", "--epochs", "1", "--batch_size", "1")
    named = {"no_folder": "missing", "checkpoint": "broken.pth"}.get(problem)
    if problem == "no_folder":
        argv[1] = "missing"
    elif problem == "no_pointcloud":
        sequence = read_jgz(tmp_path / "co3d/sphere/sequence_annotations.jgz")[0]
        (tmp_path / "co3d" / sequence["point_cloud"]["path"]).unlink()
        named = "pointcloud.ply"
    elif problem == "mask_size":
        from PIL import Image

        for entry in read_jgz(tmp_path / "co3d/sphere/frame_annotations.jgz"):
            Image.new("L", (10, 10)).save(tmp_path / "co3d" / entry["mask"]["path"])
        named = "mask is (10, 10)"
        argv += ["--run_val"]
    else:
        state = {"model": {"decoderl1.init_embedding.weight": torch.zeros(7, 3)}}
        torch.save(state, tmp_path / "broken.pth")
        argv += ["--resume", "broken.pth"]
    done = numcc_main(tmp_path, *argv)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert lines[-1].startswith("error: ") and named in lines[-1]
    written = list((tmp_path / "experiments").rglob("*.*"))
    assert [p.name for p in written] == (["log.txt"] if problem == "mask_size" else [])


def test_synthetic_dataset_cli_and_demo_summary(co3d, tmp_path):
    from numcc import demo_summary, synthetic

    out = tmp_path / "co3d"
    argv = [str(out), "--categories", "sphere,box", "--sequences", "3", "--val", "2"]
    assert synthetic.main([*argv, "--views", "2", "--size", "32x40"]) == 0
    split = json.loads((out / "box/set_lists/set_lists_fewview_dev.json").read_text())
    assert len({s for s, _, _ in split["val"]}) == 2 and len({s for s, _, _ in split["train"]}) == 1
    with pytest.raises(SystemExit) as refused:
        from geomkit.errors import run_main

        run_main(synthetic.main, argv)
    assert refused.value.code == 2
    exp = co3d / "experiments/one"
    if not (exp / "checkpoint-last.pth").exists():
        pytest.skip("needs the training run of test_two_processes_train_and_evaluate_like_one")
    assert demo_summary.main([str(co3d), "--exp", str(exp)]) == 0
    summary = json.loads((co3d / "summary.json").read_text())
    metrics = json.loads((exp / "metrics/epoch1/metrics.json").read_text())
    assert summary["numbers"]["F1"] == metrics["mean"]["F1"]
    assert "experiments/one/metrics/epoch1/metrics.json" in summary["pages"].values()
