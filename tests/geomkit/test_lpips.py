"""LPIPS on fabricated weight files in the torchvision and lpips key layouts.

The expected distance comes from a chain of F.conv2d / relu / max_pool2d written out here from
the state dicts (the torchvision architectures and the lpips v0.1 formula), not from the lpips
package that geomkit's LPIPS wraps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geomkit.errors import CheckpointError, ConfigError, InputError
from geomkit.metrics.lpips import LPIPS, shipped_heads
from geomkit.weights import weights_dir
from tests.helpers import assert_close

# torchvision conv shapes (out, in, k) under `features.N`, and LPIPS tap channels.
ALEX_CONVS = {
    0: (64, 3, 11),
    3: (192, 64, 5),
    6: (384, 192, 3),
    8: (256, 384, 3),
    10: (256, 256, 3),
}
VGG_CONVS = {
    0: (64, 3, 3), 2: (64, 64, 3), 5: (128, 64, 3), 7: (128, 128, 3),
    10: (256, 128, 3), 12: (256, 256, 3), 14: (256, 256, 3),
    17: (512, 256, 3), 19: (512, 512, 3), 21: (512, 512, 3),
    24: (512, 512, 3), 26: (512, 512, 3), 28: (512, 512, 3),
}  # fmt: skip
TAP_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
FILE_NAMES = {
    "alex": ("alexnet-owt-7be5be79.pth", "lpips_v0.1_alex.pth"),
    "vgg": ("vgg16-397923af.pth", "lpips_v0.1_vgg.pth"),
}
SHIFT = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)


def _backbone_state(net: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """He-initialised torchvision-style features, plus small classifier.* keys to be ignored."""
    convs = ALEX_CONVS if net == "alex" else VGG_CONVS
    state = {}
    for index, (out_ch, in_ch, k) in convs.items():
        std = (2.0 / (in_ch * k * k)) ** 0.5
        state[f"features.{index}.weight"] = (
            torch.randn(out_ch, in_ch, k, k, generator=generator) * std
        )
        state[f"features.{index}.bias"] = 0.1 * torch.randn(out_ch, generator=generator)
    state["classifier.1.weight"] = torch.randn(8, 16, generator=generator)
    state["classifier.1.bias"] = torch.randn(8, generator=generator)
    return state


def _lin_state(net: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """lpips-style heads: non-negative 1x1 conv weights [1, C, 1, 1] (lpips clamps them >= 0)."""
    return {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator)
        for k, c in enumerate(TAP_CHANNELS[net])
    }


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """{net: (folder, backbone state, lin state)}, files saved under the default names."""
    generator = torch.Generator().manual_seed(1234)
    files = {}
    for net, (backbone_name, lin_name) in FILE_NAMES.items():
        folder = tmp_path_factory.mktemp(f"weights_{net}")
        backbone, lin = _backbone_state(net, generator), _lin_state(net, generator)
        torch.save(backbone, folder / backbone_name)
        torch.save(lin, folder / lin_name)
        files[net] = (folder, backbone, lin)
    return files


@pytest.fixture(scope="module")
def models(weight_files):
    """One loaded LPIPS per net, from explicit paths."""
    loaded = {}
    for net, (folder, _, _) in weight_files.items():
        backbone_name, lin_name = FILE_NAMES[net]
        loaded[net] = LPIPS(net, lin_path=folder / lin_name, backbone_path=folder / backbone_name)
    return loaded


def _reference_taps(net: str, state: dict[str, torch.Tensor], x: torch.Tensor) -> list:
    """The five LPIPS activations, written out layer by layer in float64."""
    w = {k: v.double() for k, v in state.items()}
    if net == "alex":
        relu1 = F.relu(
            F.conv2d(x, w["features.0.weight"], w["features.0.bias"], stride=4, padding=2)
        )
        h = F.max_pool2d(relu1, 3, 2)
        relu2 = F.relu(F.conv2d(h, w["features.3.weight"], w["features.3.bias"], padding=2))
        h = F.max_pool2d(relu2, 3, 2)
        relu3 = F.relu(F.conv2d(h, w["features.6.weight"], w["features.6.bias"], padding=1))
        relu4 = F.relu(F.conv2d(relu3, w["features.8.weight"], w["features.8.bias"], padding=1))
        relu5 = F.relu(F.conv2d(relu4, w["features.10.weight"], w["features.10.bias"], padding=1))
        return [relu1, relu2, relu3, relu4, relu5]
    stages = [(0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28)]
    taps, h = [], x
    for stage_index, stage in enumerate(stages):
        if stage_index > 0:
            h = F.max_pool2d(h, 2, 2)
        for i in stage:
            h = F.relu(F.conv2d(h, w[f"features.{i}.weight"], w[f"features.{i}.bias"], padding=1))
        taps.append(h)
    return taps


def _reference_lpips(net, backbone, lin, x, y):
    """lpips v0.1: scale, taps, unit-normalise over channels (eps 1e-10), 1x1 head, mean, sum."""
    x, y = x.double(), y.double()
    taps_x = _reference_taps(net, backbone, (x - SHIFT) / SCALE)
    taps_y = _reference_taps(net, backbone, (y - SHIFT) / SCALE)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for k, (fx, fy) in enumerate(zip(taps_x, taps_y, strict=True)):
        nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        weight = lin[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((nx - ny) ** 2 * weight).sum(1).mean(dim=(1, 2))
    return total


def _images(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) * 2 - 1


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_reference_computation(net, models, weight_files):
    _, backbone, lin = weight_files[net]
    x = _images((2, 3, 64, 48), seed=1)
    y = (x + 0.3 * _images((2, 3, 64, 48), seed=2)).clamp(-1, 1)
    actual = models[net](x, y)
    expected = _reference_lpips(net, backbone, lin, x, y)
    assert actual.shape == (2,)
    assert float(expected.min()) > 0.05  # a real distance, not a vacuous 0 == 0
    assert_close(actual, expected, atol=1e-5, rtol=1e-5, what=f"lpips {net}")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_zero_for_identical_and_symmetric(net, models):
    model = models[net]
    x = _images((3, 3, 40, 40), seed=3)
    y = _images((3, 3, 40, 40), seed=4)
    assert_close(model(x, x), torch.zeros(3), atol=0.0, what="lpips(x, x)")
    assert_close(model(x, y), model(y, x), atol=1e-7, what="lpips symmetry")
    assert float(model(x, y).min()) > 0


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_normalize_maps_unit_range(net, models):
    x01 = (_images((1, 3, 32, 32), seed=5) + 1) / 2
    y01 = (_images((1, 3, 32, 32), seed=6) + 1) / 2
    assert_close(
        models[net](x01, y01, normalize=True),
        models[net](2 * x01 - 1, 2 * y01 - 1),
        atol=1e-7,
        what="normalize=True is 2x - 1",
    )


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_frozen_eval_mode_and_input_gradient(net, models):
    model = models[net]
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not any(m.training for m in model.modules())
    x = _images((1, 3, 32, 32), seed=7).requires_grad_(True)
    y = _images((1, 3, 32, 32), seed=8)
    first = model(x, y)
    assert_close(model(x, y), first, atol=0.0, what="deterministic after train() (no dropout)")
    first.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    assert float(x.grad.abs().max()) > 0


def test_default_files_found_through_env_var(weight_files, monkeypatch):
    folder, backbone, _ = weight_files["alex"]
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(folder))
    assert weights_dir() == folder
    model = LPIPS("alex")
    assert torch.equal(getattr(model.net.slice2, "3").weight, backbone["features.3.weight"])
    shipped = torch.load(shipped_heads("alex"), map_location="cpu", weights_only=True)
    assert torch.equal(model.lin2.model[1].weight, shipped["lin2.model.1.weight"])
    assert set(model.state_dict()) >= {"net.slice1.0.weight", "lin4.model.1.weight"}
    monkeypatch.delenv("GEOMKIT_WEIGHTS")
    assert weights_dir().parts[-3:] == (".cache", "geomkit", "weights")


def test_backbone_found_in_torch_hub_cache(weight_files, tmp_path, monkeypatch):
    """A file torchvision once downloaded (``$TORCH_HOME/hub/checkpoints``) is used as is."""
    folder, backbone, _ = weight_files["vgg"]
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / FILE_NAMES["vgg"][0]).write_bytes((folder / FILE_NAMES["vgg"][0]).read_bytes())
    model = LPIPS("vgg")
    assert torch.equal(getattr(model.net.slice5, "28").weight, backbone["features.28.weight"])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_missing_files_name_file_folders_origin_and_env_var(net, tmp_path, monkeypatch):
    backbone_name, lin_name = FILE_NAMES[net]
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(CheckpointError) as error:
        LPIPS(net)
    message = str(error.value)
    assert "\n" not in message
    hub = str(tmp_path / "torch" / "hub" / "checkpoints")
    for part in (
        backbone_name,
        str(tmp_path),
        hub,
        "download.pytorch.org/models",
        "GEOMKIT_WEIGHTS",
    ):
        assert part in message

    torch.save(_backbone_state(net, torch.Generator().manual_seed(0)), tmp_path / backbone_name)
    with pytest.raises(CheckpointError, match=f"{tmp_path / lin_name} not found.*{net} heads"):
        LPIPS(net, lin_path=tmp_path / lin_name)


def _save_and_load(net, tmp_path, backbone, lin):
    backbone_name, lin_name = FILE_NAMES[net]
    torch.save(backbone, tmp_path / backbone_name)
    torch.save(lin, tmp_path / lin_name)
    return LPIPS(net, lin_path=tmp_path / lin_name, backbone_path=tmp_path / backbone_name)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_key_mismatches_are_errors_naming_the_key(net, weight_files, tmp_path):
    _, backbone, lin = weight_files[net]

    misshaped = dict(backbone, **{"features.0.weight": torch.zeros(7, 7, 3, 3)})
    with pytest.raises(CheckpointError, match=r"features\.0\.weight \(7, 7, 3, 3\) vs model"):
        _save_and_load(net, tmp_path, misshaped, lin)

    missing = {k: v for k, v in backbone.items() if k != "features.0.bias"}
    with pytest.raises(CheckpointError, match=r"1 missing: features\.0\.bias"):
        _save_and_load(net, tmp_path, missing, lin)

    extra = dict(backbone, **{"features.99.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"1 unexpected: features\.99\.weight"):
        _save_and_load(net, tmp_path, extra, lin)

    bad_lin = dict(lin, **{"lin2.model.1.weight": torch.zeros(1, 5, 1, 1)})
    with pytest.raises(CheckpointError, match=r"lin2\.model\.1\.weight \(1, 5, 1, 1\) vs model"):
        _save_and_load(net, tmp_path, backbone, bad_lin)


def test_corrupt_file_and_bad_arguments(weight_files, tmp_path, models):
    folder, _, _ = weight_files["alex"]
    corrupt = tmp_path / "lpips_v0.1_alex.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(
        CheckpointError, match="checkpoint .*lpips_v0.1_alex.pth is not a readable torch file"
    ):
        LPIPS("alex", lin_path=corrupt, backbone_path=folder / FILE_NAMES["alex"][0])
    with pytest.raises(ConfigError, match="unknown LPIPS net 'squeeze'"):
        LPIPS("squeeze")
    x = torch.zeros(1, 3, 24, 24)
    with pytest.raises(InputError, match="at least 31x31"):
        models["alex"](x, x)
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        models["alex"](torch.zeros(1, 3, 40, 40), torch.zeros(1, 3, 40, 41))
