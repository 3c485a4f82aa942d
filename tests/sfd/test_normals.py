"""sfd preprocessing step 8: the Omnidata DPT-Hybrid network's parameter names against the
original's, strict loading of a checkpoint in Omnidata's Lightning layout, and the CLI writing
train/000_normal_pretrain.png in the format training reads."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from geomkit.errors import CheckpointError, run_main
from geomkit.io.images import write_image
from sfd.preprocess import normals
from sfd.preprocess.__main__ import main
from sfd.preprocess.omnidata import DPTHybridNormal, load_model, read_state_dict

# Raw network output the fabricated head produces everywhere: after (x, 1-y, 1-z) it is
# (0.68, 0.74, 0.90) = (n + 1) / 2 of the unit normal n = (0.36, 0.48, 0.80).
HEAD_BIAS = (0.68, 0.26, 0.10)
OFFICIAL_KEY_COUNT = 368


def official_keys() -> set[str]:
    """Parameter names of Omnidata's DPTDepthModel(backbone="vitb_rn50_384", num_channels=3),
    enumerated from the authors' dpt_depth.py, blocks.py and vit.py and timm 0.4's
    vit_base_resnet50_384 (non-pre-activation ResNetV2 (3, 4, 9), ViT-B/16, 1000-class head)."""
    wb = ("weight", "bias")
    resnet = ["stem.conv.weight", "stem.norm.weight", "stem.norm.bias"]
    for stage, depth in enumerate((3, 4, 9)):
        for block in range(depth):
            down = block == 0
            prefix = f"stages.{stage}.blocks.{block}."
            convs = ["conv1", "conv2", "conv3"] + ["downsample.conv"] * down
            norms = ["norm1", "norm2", "norm3"] + ["downsample.norm"] * down
            resnet += [f"{prefix}{c}.weight" for c in convs]
            resnet += [f"{prefix}{n}.{x}" for n in norms for x in wb]
    vit = ["cls_token", "pos_embed"] + [f"{m}.{x}" for m in ("patch_embed.proj", "norm", "head")
                                        for x in wb]  # fmt: skip
    vit += [f"patch_embed.backbone.{k}" for k in resnet]
    parts = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    vit += [f"blocks.{i}.{m}.{x}" for i in range(12) for m in parts for x in wb]
    keys = [f"pretrained.model.{k}" for k in vit]
    for j, convs in ((3, ["3"]), (4, ["3", "4"])):
        keys += [f"pretrained.act_postprocess{j}.{m}.{x}" for m in ["0.project.0", *convs]
                 for x in wb]  # fmt: skip
    keys += [f"scratch.layer{i}_rn.weight" for i in range(1, 5)]
    fusion = ["out_conv"] + [f"resConfUnit{u}.conv{c}" for u in (1, 2) for c in (1, 2)]
    keys += [f"scratch.refinenet{i}.{m}.{x}" for i in range(1, 5) for m in fusion for x in wb]
    keys += [f"scratch.output_conv.{i}.{x}" for i in (0, 2, 4) for x in wb]
    return set(keys)


@cache
def model_shapes() -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in DPTHybridNormal().state_dict().items()}


def fabricated_state(rename: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Official keys with seeded random values (views of one pool, so the file stays ~21 MB),
    and a head whose output is HEAD_BIAS everywhere."""
    shapes = model_shapes()
    largest = max(s.numel() for s in shapes.values())
    pool = 0.02 * torch.randn(largest + 4096, generator=torch.Generator().manual_seed(0))
    state = {}
    for i, key in enumerate(sorted(official_keys())):
        offset = (i * 97) % 4096
        state[key] = pool[offset : offset + shapes[key].numel()].view(shapes[key])
    state["scratch.output_conv.4.weight"] = torch.zeros(3, 32, 1, 1)
    state["scratch.output_conv.4.bias"] = torch.tensor(HEAD_BIAS)
    for old, new in (rename or {}).items():
        state[new] = state.pop(old)
    return state


def save_lightning(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """Omnidata's layout: a Lightning checkpoint whose module holds the network as ``model``."""
    lightning = {f"model.{k}": v for k, v in state.items()}
    torch.save({"epoch": 0, "global_step": 0, "state_dict": lightning}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_lightning(tmp_path_factory.mktemp("omni") / "omni.ckpt", fabricated_state())


def tiny_object(root: Path, size: int = 96) -> np.ndarray:
    """data_root/<object>/train with a noise image and a disk mask; returns the mask."""
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:size, 0:size]
    mask = (u - size / 2) ** 2 + (v - size / 2) ** 2 < (size / 3) ** 2
    write_image(root / "train" / "000_rgb.png", rng.random((size, size, 3)))
    write_image(root / "train" / "000_mask.png", mask)
    return mask


def cli_args(root: Path, *extra: str) -> list[str]:
    return ["--object", root.name, "--instances", "2", "--data_root", str(root.parent),
            "--steps", "8", *extra]  # fmt: skip


def test_parameter_names_are_the_originals():
    shapes = {k: tuple(v) for k, v in model_shapes().items()}
    assert len(shapes) == OFFICIAL_KEY_COUNT
    assert set(shapes) == official_keys()
    assert shapes["pretrained.model.pos_embed"] == (1, 577, 768)  # 24 x 24 patches + class
    assert shapes["pretrained.act_postprocess4.4.weight"] == (768, 768, 3, 3)
    assert shapes["scratch.layer2_rn.weight"] == (256, 512, 3, 3)
    assert shapes["scratch.output_conv.4.weight"] == (3, 32, 1, 1)


def test_checkpoint_loads_strictly_and_a_renamed_key_fails(checkpoint, tmp_path):
    model = load_model(checkpoint)
    expected = fabricated_state()
    for key in ("pretrained.model.pos_embed", "scratch.refinenet4.resConfUnit1.conv1.weight"):
        assert torch.equal(model.state_dict()[key], expected[key])
    assert torch.equal(model.scratch.output_conv[4].bias, torch.tensor(HEAD_BIAS))

    old = "pretrained.act_postprocess3.3.weight"
    renamed = save_lightning(tmp_path / "renamed.ckpt", fabricated_state({old: "readout3.weight"}))
    with pytest.raises(CheckpointError, match=rf"missing: {old}.*unexpected: readout3\.weight"):
        load_model(renamed)
    torch.save({"state_dict": {"net.cls_token": torch.zeros(1)}}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="'net.cls_token' lacks the 'model.' prefix"):
        read_state_dict(tmp_path / "bad.ckpt")


def test_network_is_a_deterministic_function_of_its_input(checkpoint):
    model = load_model(checkpoint)
    with torch.no_grad():
        head = model.scratch.output_conv[4].weight
        head.normal_(0, 1, generator=torch.Generator().manual_seed(1))
        images = torch.rand(2, 1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
        first, again, other = model(images[0]), model(images[0]), model(images[1])
        maps = model.readouts(images[0])
    assert first.shape == (1, 3, 64, 64)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-4
    assert [tuple(m.shape[1:]) for m in maps] == [(256, 16, 16), (512, 8, 8), (768, 4, 4),
                                                  (768, 2, 2)]  # fmt: skip


def test_cli_writes_the_prior_in_the_training_format(checkpoint, tmp_path, capsys, monkeypatch):
    root = tmp_path / "thing"
    mask = tiny_object(root)
    monkeypatch.setattr(normals, "NET_SIZE", 64)  # the original's 800 px takes ~20 s on a CPU
    assert main(cli_args(root, "--omnidata_ckpt", str(checkpoint))) == 0
    assert "step 8: Omnidata normals of" in capsys.readouterr().out
    png = cv2.imread(str(root / "train" / "000_normal_pretrain.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape == (96, 96, 3) and png.dtype == np.uint8
    rgb = png[:, :, ::-1]
    assert np.all(rgb[~mask] == 255)
    expected = np.floor(255 * np.array([0.68, 0.74, 0.90])).astype(np.uint8)  # (173, 188, 229)
    assert np.all(rgb[mask] == expected)
    decoded = 2 * rgb[mask].astype(float) / 255 - 1
    assert np.abs(np.linalg.norm(decoded, axis=1) - 1).max() < 0.01

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, cli_args(root, "--omnidata_ckpt", str(checkpoint)))
    assert exit_info.value.code == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_cli_refuses_bad_checkpoints_and_skips_without_one(tmp_path, capsys):
    root = tmp_path / "thing"
    tiny_object(root)
    old = "scratch.refinenet2.out_conv.bias"
    renamed = save_lightning(tmp_path / "renamed.ckpt", fabricated_state({old: "refine2.bias"}))
    for ckpt, expected in [(tmp_path / "absent.ckpt", "absent.ckpt"), (renamed, old)]:
        with pytest.raises(SystemExit) as exit_info:
            run_main(main, cli_args(root, "--omnidata_ckpt", str(ckpt)))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert main(cli_args(root)) == 0
    assert normals.SKIP_MESSAGE in capsys.readouterr().out
    assert sorted(p.name for p in (root / "train").iterdir()) == ["000_mask.png", "000_rgb.png"]
