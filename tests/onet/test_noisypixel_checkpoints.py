"""project-noisypixel's Lightning checkpoints: both callback layouts read without Lightning, the
architecture read from the weights, strict loading, their decoders' exact outputs, and the
importer CLI (model.pt + config.yaml; bad input is one line and exit 2, nothing written)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from geomkit.checkpoint import load_checkpoint
from geomkit.errors import CheckpointError, run_main
from onet import generate, import_lightning
from onet.checkpoints import load_model_weights
from onet.config import load_config, set_key
from onet.models import build_model
from onet.noisypixel import checkpoint_model_config

from .noisypixel_layout import (
    student_decoder_cbn,
    student_decoder_fc,
    student_state,
    write_lightning_checkpoint,
)

CBN = ("efficientnet-b0", "decoder-cbn", 128, 128)
FC = ("resnet-18", "decoder-fc", 64, 96)
STUDENT_DECODER = {"decoder-cbn": student_decoder_cbn, "decoder-fc": student_decoder_fc}


@pytest.fixture(scope="module", params=[(CBN, True), (CBN, False), (FC, True), (FC, False)])
def their_file(request, tmp_path_factory):
    """(path, raw state_dict, (encoder, decoder, c, h)) for Lightning < 1.5 (True) or >= 1.5."""
    (encoder, decoder, c, h), old = request.param
    state = student_state(encoder, decoder, c, h, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "epoch=131-step=63359.ckpt"
    write_lightning_checkpoint(path, state, old_lightning=old)
    return path, state, (encoder, decoder, c, h)


def model_for(path) -> torch.nn.Module:
    """Their defaults with the architecture the file implies: the model a CLI would build."""
    cfg = load_config("configs/img/noisypixel.yaml")
    for key, value in checkpoint_model_config(path).items():
        set_key(cfg, key, value)
    return build_model(cfg)


def test_architecture_is_read_from_the_weights(their_file):
    path, _, (encoder, decoder, c, h) = their_file
    expected = {
        "model.encoder": encoder,
        "model.decoder": decoder,
        "model.c_dim": c,
        "model.z_dim": 0,
        "model.decoder_kwargs.hidden_size": h,
        "data.dim": 3,
        "data.img_size": 137,
    }
    if decoder == "decoder-fc":
        expected["model.decoder_kwargs.noisypixel_block"] = True
    assert checkpoint_model_config(path) == expected
    assert "pytorch_lightning" not in sys.modules  # read without Lightning


def test_their_file_loads_strictly_and_decodes_as_theirs(their_file, capsys):
    path, state, (encoder, decoder, c, h) = their_file
    model = model_for(path).eval()
    checkpoint = load_model_weights(model, path)
    assert checkpoint["global_step"] == 63359
    printed = capsys.readouterr().out
    assert ("their residual block" in printed) == (decoder == "decoder-fc")
    ours = model.state_dict()
    encoder_keys = [k for k in state if k.startswith("net.encoder.")]
    assert len(encoder_keys) == {"efficientnet-b0": 360, "resnet-18": 122}[encoder]
    for key in encoder_keys:  # their encoder keys are ours, after net.
        assert torch.equal(ours[key.removeprefix("net.")], state[key]), key
    g = torch.Generator().manual_seed(0)
    p, code = torch.rand(3, 200, 3, generator=g) - 0.5, torch.randn(3, c, generator=g)
    with torch.no_grad():
        logits = model.decode(p, torch.empty(3, 0), code)
        images = torch.rand(1, 3, 137, 137, generator=g)
        whole = model(p[:1], images, sample=False)
    expected = STUDENT_DECODER[decoder](state, p, code)
    assert float(expected.std()) > 0.1  # a network whose output varies over the points
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0)
    assert whole.shape == (1, 200) and torch.isfinite(whole).all()


def test_lightning_before_1_5_needs_the_stand_in(tmp_path):
    path = tmp_path / "old.ckpt"
    write_lightning_checkpoint(path, student_state(*FC), old_lightning=True)
    with pytest.raises(CheckpointError, match="pytorch_lightning.callbacks.model_checkpoint"):
        load_checkpoint(path)
    assert model_for(path).decoder.noisypixel_block


def test_older_duplicates_are_checked_and_dropped(tmp_path):
    state = student_state(*FC)
    state.update({f"decoder_model.{k[12:]}": v for k, v in state.items() if "net.decoder." in k})
    path = tmp_path / "dup.ckpt"
    write_lightning_checkpoint(path, state, old_lightning=False)
    load_model_weights(model_for(path), path)
    state["decoder_model.fc.bias"] = state["decoder_model.fc.bias"] + 1
    write_lightning_checkpoint(path, state, old_lightning=False)
    with pytest.raises(CheckpointError, match="decoder_model.fc.bias differs from net.decoder"):
        load_model_weights(model_for(path), path)


def test_decoder_fc_file_needs_their_block(tmp_path):
    path = tmp_path / "fc.ckpt"
    write_lightning_checkpoint(path, student_state(*FC), old_lightning=False)
    cfg = load_config("configs/img/noisypixel.yaml")
    for key, value in checkpoint_model_config(path).items():
        if key != "model.decoder_kwargs.noisypixel_block":
            set_key(cfg, key, value)
    with pytest.raises(CheckpointError, match="noisypixel_block=true"):
        load_model_weights(build_model(cfg), path)


def test_the_wrong_model_is_refused_naming_the_files_model(tmp_path):
    path = tmp_path / "cbn.ckpt"
    write_lightning_checkpoint(path, student_state(*CBN), old_lightning=False)
    model = build_model(load_config("configs/img/onet.yaml"))
    with pytest.raises(CheckpointError, match="missing.*model.encoder efficientnet-b0"):
        load_model_weights(model, path)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(import_lightning.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_importer_writes_a_model_that_onet_commands_load(tmp_path, capsys):
    state = student_state(*CBN, seed=5)
    ckpt = tmp_path / "epoch=131-step=63359.ckpt"
    write_lightning_checkpoint(ckpt, state, old_lightning=True)
    out = tmp_path / "imported"
    code, printed, _ = run_cli([ckpt, out], capsys)
    assert code == 0 and "efficientnet-b0" in printed
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.pt"]
    assert set(torch.load(out / "model.pt", weights_only=True)) == {"model"}
    cfg = load_config(out / "config.yaml")
    assert cfg["training"]["out_dir"] == str(out) and cfg["test"]["model_file"] == "model.pt"
    assert (cfg["model"]["encoder"], cfg["model"]["decoder"]) == ("efficientnet-b0", "decoder-cbn")
    model, used = generate.load_test_model(cfg, None, 1, torch.device("cpu"))
    assert used == out / "model.pt"
    p, c = torch.rand(2, 100, 3) - 0.5, torch.randn(2, 128)
    with torch.no_grad():
        logits = model.decode(p, torch.empty(2, 0), c)
    assert torch.allclose(logits, student_decoder_cbn(state, p, c), atol=1e-5, rtol=0)

    before = (out / "model.pt").read_bytes()
    code, _, err = run_cli([ckpt, out], capsys)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "model.pt").read_bytes() == before
    assert run_cli([ckpt, out, "--overwrite"], capsys)[0] == 0


def bad_inputs(tmp_path) -> dict:
    """name -> (checkpoint path, expected message part)."""
    theirs = student_state(*FC)
    ours = tmp_path / "model.pt"
    torch.save({"model": {"decoder.fc_p.weight": torch.zeros(2, 3)}}, ours)
    unknown = tmp_path / "unknown.ckpt"
    write_lightning_checkpoint(unknown, {"net.foo.weight": torch.zeros(2)}, old_lightning=False)
    misshaped = tmp_path / "misshaped.ckpt"
    wrong = dict(theirs, **{"net.decoder.fc.weight": torch.zeros(2, 96)})
    write_lightning_checkpoint(misshaped, wrong, old_lightning=False)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    return {
        "missing": (tmp_path / "nope.ckpt", "not found"),
        "not torch": (garbage, "not a readable torch file"),
        "ours": (ours, "not a Lightning checkpoint"),
        "unknown layout": (unknown, "unknown encoder layout"),
        "wrong shapes": (misshaped, r"decoder.fc_out.weight \(2, 96\) vs model \(1, 96\)"),
    }


def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys):
    for name, (path, message) in bad_inputs(tmp_path).items():
        out = tmp_path / f"out {name}"
        code, _, err = run_cli([path, out], capsys)
        assert code == 2, name
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (name, err)
        assert re.search(message, err), (name, err)
        assert not out.exists(), name
    (tmp_path / "a file").write_text("")
    path = bad_inputs(tmp_path)["wrong shapes"][0]
    code, _, err = run_cli([path, tmp_path / "a file"], capsys)
    assert code == 2 and "is not a folder" in err


def test_module_entry_point_reports_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "onet.import_lightning", "nope.ckpt", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "checkpoint not found: nope.ckpt" in result.stderr
    assert not (tmp_path / "out").exists()
