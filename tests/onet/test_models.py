"""ONet models: sizes and key names of the authors' checkpoints, shapes, initialisation."""

from __future__ import annotations

import pytest
import torch

from geomkit.errors import CheckpointError, ConfigError
from onet.checkpoints import load_imagenet_encoder, load_model_weights
from onet.config import load_config
from onet.models import build_model

from .official_layout import fabricate, onet_img2mesh_keys, resnet18_keys, write_official_checkpoint


def test_image_model_has_the_papers_size():
    model = build_model(load_config("configs/img/onet.yaml"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(model), count(model.encoder), count(model.decoder)) == (
        13_414_465,
        11_307_840,
        2_106_625,
    )


def test_official_checkpoint_layout_loads_strictly_with_weights_only(tmp_path):
    path = tmp_path / "onet_img2mesh_3-f786b04a.pt"
    state = write_official_checkpoint(path)
    model = build_model(load_config("configs/img/onet.yaml"))
    checkpoint = load_model_weights(model, path)
    assert checkpoint["it"] == 2_886_000
    for key in (
        "encoder.features.layer3.0.downsample.0.weight",
        "decoder.block4.bn_1.conv_beta.weight",
        "decoder.bn.bn.running_var",
    ):
        assert torch.equal(model.state_dict()[key], state[key])


def test_legacy_decoder_layout_loads():
    cfg = load_config("configs/img/onet.yaml")
    cfg["model"]["decoder_kwargs"] = {"legacy": True}
    model = build_model(cfg)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert keys == onet_img2mesh_keys(legacy=True)


def test_mismatched_checkpoint_is_refused_with_the_keys(tmp_path):
    state = fabricate(onet_img2mesh_keys())
    del state["decoder.fc_out.bias"]
    state["decoder.fc_z.weight"] = torch.zeros(256, 64)
    state["encoder.fc.weight"] = torch.zeros(128, 512)
    torch.save({"model": state}, tmp_path / "bad.pt")
    model = build_model(load_config("configs/img/onet.yaml"))
    with pytest.raises(CheckpointError) as error:
        load_model_weights(model, tmp_path / "bad.pt")
    message = str(error.value)
    assert "1 missing: decoder.fc_out.bias" in message
    assert "1 unexpected: decoder.fc_z.weight" in message
    assert "encoder.fc.weight (128, 512) vs model (256, 512)" in message


def test_imagenet_file_loads_into_the_encoder(tmp_path, monkeypatch):
    state = fabricate({**resnet18_keys(), "fc.weight": (1000, 512), "fc.bias": (1000,)})
    torch.save(state, tmp_path / "resnet18-f37072fd.pth")
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path))
    model = build_model(load_config("configs/img/onet.yaml"))
    assert load_imagenet_encoder(model).name == "resnet18-f37072fd.pth"
    loaded = model.encoder.features.state_dict()["layer4.1.conv2.weight"]
    assert torch.equal(loaded, state["layer4.1.conv2.weight"])
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(
        CheckpointError, match=f"resnet18-f37072fd.pth not found in .*empty or {hub}"
    ):
        load_imagenet_encoder(model)
    hub.mkdir(parents=True)  # where torchvision keeps what it downloaded
    (tmp_path / "resnet18-f37072fd.pth").rename(hub / "resnet18-f37072fd.pth")
    assert load_imagenet_encoder(model) == hub / "resnet18-f37072fd.pth"
    with pytest.raises(CheckpointError, match="download.pytorch.org/models/resnet18-f37072fd.pth"):
        load_imagenet_encoder(model, tmp_path / "elsewhere.pth")


@pytest.mark.parametrize(
    "config,inputs",
    [
        ("configs/img/onet.yaml", torch.rand(2, 3, 224, 224)),
        ("configs/pointcloud/onet.yaml", torch.rand(2, 300, 3)),
        ("configs/voxels/onet.yaml", torch.rand(2, 32, 32, 32)),
        ("configs/unconditional/onet_chairs.yaml", torch.empty(2, 0)),
    ],
)
def test_every_config_builds_and_decodes(config, inputs):
    model = build_model(load_config(config)).eval()
    p = torch.rand(2, 50, 3) - 0.5
    with torch.no_grad():
        logits = model(p, inputs, sample=False)
        elbo, rec, kl = model.compute_elbo(p, (p.norm(dim=-1) < 0.3).float(), inputs)
    assert logits.shape == (2, 50) and elbo.shape == rec.shape == kl.shape == (2,)
    assert torch.isfinite(logits).all()


def test_initial_decoder_is_the_identity_residual():
    """fc_1 of every block and the CBN gamma/beta weights start at zero (authors' init), so
    the untrained output does not depend on c."""
    model = build_model(load_config("configs/img/onet.yaml")).eval()
    p = torch.rand(1, 20, 3)
    with torch.no_grad():
        out1 = model.decode(p, torch.empty(1, 0), torch.randn(1, 256))
        out2 = model.decode(p, torch.empty(1, 0), torch.randn(1, 256))
    assert torch.equal(out1, out2)


def test_unknown_encoder_and_kwargs_are_config_errors():
    cfg = load_config("configs/img/onet.yaml")
    cfg["model"]["encoder"] = "resnet152"
    with pytest.raises(ConfigError, match="resnet152.*choose one of"):
        build_model(cfg)
    cfg = load_config("configs/img/onet.yaml")
    cfg["model"]["decoder_kwargs"] = {"hiden_size": 3}
    with pytest.raises(ConfigError, match="hiden_size"):
        build_model(cfg)
