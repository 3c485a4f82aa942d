"""project-noisypixel's encoders and decoders: their names, key layouts and sizes, ImageNet
files from local folders, their buggy decoder-fc block behind a flag, and folding."""

from __future__ import annotations

import pytest
import torch
import torchvision

from geomkit.errors import CheckpointError
from onet import train
from onet.checkpoints import load_imagenet_encoder
from onet.config import load_config
from onet.generation import Generator3D
from onet.models import DECODERS, ENCODERS, build_model
from onet.models.decoders import Decoder, DecoderCBatchNorm
from onet.models.encoders import EfficientNetEncoder, Resnet18, Resnet50

from .noisypixel_layout import decoder_fc_keys, efficientnet_b0_keys
from .official_layout import fabricate, resnet18_keys

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "variant, keys, params",
    [("b0", 360, 4_171_516), ("b1", 508, 6_677_152), ("b5", 854, 28_603_056)],
)
def test_efficientnet_keys_and_sizes_are_theirs(variant, keys, params):
    encoder = ENCODERS[f"efficientnet-{variant}"](c_dim=128)
    state = encoder.state_dict()
    assert len(state) == keys and all(k.startswith("features.") for k in state)
    assert count(encoder) == params


def test_efficientnet_b7_keys_and_size_are_theirs():
    encoder = ENCODERS["efficientnet-b7"](c_dim=128)
    assert (len(encoder.state_dict()), count(encoder)) == (1200, 64_114_768)
    assert tuple(encoder.state_dict()["features._conv_head.weight"].shape) == (2560, 640, 1, 1)


def test_efficientnet_b0_has_their_names_and_runs_on_137_px():
    encoder = ENCODERS["efficientnet-b0"](c_dim=128).eval()
    shapes = {k.removeprefix("features."): tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert shapes == efficientnet_b0_keys(128)
    images = torch.rand(2, 3, 137, 137)
    with torch.no_grad():
        codes = encoder(images)
        final_map = encoder.features.extract_features((images - MEAN) / STD)
        direct = encoder.features((images - MEAN) / STD)
    assert codes.shape == (2, 128) and final_map.shape == (2, 1280, 4, 4)
    assert torch.equal(codes, direct)  # the ImageNet normalisation happens inside
    # Static "same" padding for the nominal 224 px, as their modules (not for 137 px).
    assert encoder.features._conv_stem.static_padding.padding == (0, 1, 0, 1)


def test_resnet_names_keys_and_sizes():
    assert ENCODERS["resnet-18"] is Resnet18 and ENCODERS["resnet-50"] is Resnet50
    resnet18 = Resnet18(c_dim=128)
    shapes = {k: tuple(v.shape) for k, v in resnet18.state_dict().items()}
    assert shapes == {
        **{f"features.{k}": s for k, s in resnet18_keys().items()},
        "fc.weight": (128, 512),
        "fc.bias": (128,),
    }
    resnet50 = Resnet50(c_dim=128).eval()
    state = resnet50.state_dict()
    assert (len(state), count(resnet50)) == (320, 23_770_304)
    assert tuple(state["features.layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    assert tuple(state["fc.weight"].shape) == (128, 2048)
    images = torch.rand(1, 3, 137, 137)
    with torch.no_grad():
        expected = resnet50.fc(resnet50.features((images - MEAN) / STD))
        assert torch.equal(resnet50(images), expected)


def write_file(folder, name: str, state: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / name)
    return state


def test_imagenet_files_for_every_image_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = load_config("configs/img/noisypixel.yaml")
    model = build_model(cfg)
    fc_before = model.encoder.features._fc.weight.clone()
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(
        CheckpointError,
        match=f"efficientnet-b0-355c32eb.pth not found in {tmp_path / 'weights'} or {hub}",
    ):
        load_imagenet_encoder(model)
    imagenet = fabricate(efficientnet_b0_keys(1000), seed=1)
    state = write_file(hub, "efficientnet-b0-355c32eb.pth", imagenet)
    assert load_imagenet_encoder(model) == hub / "efficientnet-b0-355c32eb.pth"
    loaded = model.encoder.features.state_dict()
    key = "_blocks.15._project_conv.weight"
    assert torch.equal(loaded[key], state[key])
    assert torch.equal(loaded["_fc.weight"], fc_before)  # their c_dim head stays as initialised

    del state["_blocks.3._bn1.running_var"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="1 missing: _blocks.3._bn1.running_var"):
        load_imagenet_encoder(model, tmp_path / "cut.pth")

    cfg["model"]["encoder"] = "resnet-50"
    model = build_model(cfg)
    resnet50 = torchvision.models.resnet50(weights=None).state_dict()
    write_file(tmp_path / "weights", "resnet50-0676ba61.pth", resnet50)
    assert load_imagenet_encoder(model).name == "resnet50-0676ba61.pth"
    loaded = model.encoder.features.state_dict()["layer3.5.conv2.weight"]
    assert torch.equal(loaded, resnet50["layer3.5.conv2.weight"])


def test_non_image_encoder_has_no_imagenet_weights():
    model = build_model(load_config("configs/pointcloud/onet.yaml"))
    with pytest.raises(CheckpointError, match="ImageNet weights need an image encoder"):
        load_imagenet_encoder(model)


def test_their_decoder_names():
    cbn = DECODERS["decoder-cbn"](dim=3, z_dim=0, c_dim=128, hidden_size=128)
    assert isinstance(cbn, DecoderCBatchNorm)
    assert "block0.bn_0.fc_gamma.weight" in cbn.state_dict()  # the legacy CBN layout
    assert not hasattr(cbn, "fc_c") and not hasattr(cbn, "fc_z")  # c only through the CBN
    fc = DECODERS["decoder-fc"](dim=3, z_dim=0, c_dim=128, hidden_size=128)
    assert isinstance(fc, Decoder) and not fc.noisypixel_block  # new models: our block
    shapes = {f"net.decoder.{k}": tuple(v.shape) for k, v in fc.state_dict().items()}
    theirs = decoder_fc_keys(128, 128)
    assert sorted(shapes.values()) == sorted(theirs.values()) and len(shapes) == len(theirs)


def fc_decoders(seed: int) -> tuple[Decoder, Decoder]:
    """(ours, theirs): decoder-fc with our block and with theirs, the same random weights."""
    torch.manual_seed(seed)
    ours = Decoder(z_dim=0, c_dim=32, hidden_size=32)
    theirs = Decoder(z_dim=0, c_dim=32, hidden_size=32, noisypixel_block=True)
    with torch.no_grad():
        for tensor in ours.state_dict().values():
            tensor.normal_(0, 0.3)
    theirs.load_state_dict(ours.state_dict())
    return ours.eval(), theirs.eval()


def test_their_block_ignores_fc_0_and_differs_from_ours():
    ours, theirs = fc_decoders(seed=0)
    p, c = torch.rand(2, 100, 3) - 0.5, torch.randn(2, 32)
    theirs(p, None, c).sum().backward()
    assert theirs.block2.fc_0.weight.grad is None and theirs.block2.fc_1.weight.grad is not None
    with torch.no_grad():
        net = theirs.fc_p(p) + theirs.fc_c(c)[:, None]
        for k in range(5):
            block = getattr(theirs, f"block{k}")
            net = net + torch.relu(block.fc_1(net))
        expected = theirs.fc_out(torch.relu(net))[..., 0]
        assert torch.allclose(theirs(p, None, c), expected, atol=1e-6)
        assert (ours(p, None, c) - expected).abs().max() > 0.1


@pytest.mark.parametrize("noisypixel_block", [False, True])
def test_decoder_fc_generates_the_same_logits_folded_or_not(noisypixel_block):
    cfg = load_config("configs/img/noisypixel.yaml")
    cfg["model"].update(encoder="resnet-18", decoder="decoder-fc", c_dim=32)
    cfg["model"]["decoder_kwargs"] = {"hidden_size": 32, "noisypixel_block": noisypixel_block}
    model = build_model(cfg).eval()
    assert model.decoder.noisypixel_block == noisypixel_block
    z, c = torch.empty(1, 0), torch.randn(1, 32)
    points = torch.rand(1, 500, 3) - 0.5
    with torch.no_grad():
        logits = {
            fold: Generator3D(model, fold=fold).object_decoder(z, c)(points)
            for fold in (True, False)
        }
        direct = model.decode(points, z, c)
    assert torch.equal(logits[True], logits[False]) and torch.equal(logits[True], direct)


def test_their_train_command_builds_their_model():
    args = train.parse_args(["--encoder", "efficientnet-b0", "--decoder", "decoder-cbn"])
    model = build_model(train.configure(args))
    assert isinstance(model.encoder, EfficientNetEncoder) and model.encoder.variant == "b0"
    assert isinstance(model.decoder, DecoderCBatchNorm) and model.decoder.fc_p.out_channels == 128
    args = train.parse_args(["--encoder", "resnet-50", "--decoder", "decoder-fc", "--cdim", "64"])
    model = build_model(train.configure(args))
    assert isinstance(model.encoder, Resnet50) and model.encoder.fc.out_features == 64
    assert isinstance(model.decoder, Decoder) and not model.decoder.noisypixel_block
