"""project-noisypixel's checkpoint layout, written out from the reference notes ((a)-C, (a)-E)
independently of onet's code: their ONetLit key lists, fabricated Lightning .ckpt files in the
Lightning < 1.5 and >= 1.5 containers, and their decoders' forward passes in functional form."""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from .official_layout import bn_keys, fabricate, resnet18_keys

# efficientnet-b0's stages: (repeats, kernel, expand ratio, input channels, output channels).
B0_STAGES = [
    (1, 3, 1, 32, 16),
    (2, 3, 6, 16, 24),
    (2, 5, 6, 24, 40),
    (3, 3, 6, 40, 80),
    (3, 5, 6, 80, 112),
    (4, 5, 6, 112, 192),
    (1, 3, 6, 192, 320),
]
MODEL_CHECKPOINT_MODULE = "pytorch_lightning.callbacks.model_checkpoint"


def efficientnet_b0_keys(c_dim: int) -> dict[str, tuple]:
    """efficientnet_pytorch's efficientnet-b0 with a (c_dim, 1280) classifier: 360 keys."""
    keys = {"_conv_stem.weight": (32, 3, 3, 3), **bn_keys("_bn0", 32)}
    index = 0
    for repeats, kernel, expand, c_in, c_out in B0_STAGES:
        for repeat in range(repeats):
            block_in = c_in if repeat == 0 else c_out
            hidden, squeezed, prefix = block_in * expand, max(1, block_in // 4), f"_blocks.{index}"
            if expand != 1:
                keys[f"{prefix}._expand_conv.weight"] = (hidden, block_in, 1, 1)
                keys.update(bn_keys(f"{prefix}._bn0", hidden))
            keys[f"{prefix}._depthwise_conv.weight"] = (hidden, 1, kernel, kernel)
            keys.update(bn_keys(f"{prefix}._bn1", hidden))
            keys[f"{prefix}._se_reduce.weight"] = (squeezed, hidden, 1, 1)
            keys[f"{prefix}._se_reduce.bias"] = (squeezed,)
            keys[f"{prefix}._se_expand.weight"] = (hidden, squeezed, 1, 1)
            keys[f"{prefix}._se_expand.bias"] = (hidden,)
            keys[f"{prefix}._project_conv.weight"] = (c_out, hidden, 1, 1)
            keys.update(bn_keys(f"{prefix}._bn2", c_out))
            index += 1
    keys.update({"_conv_head.weight": (1280, 320, 1, 1), **bn_keys("_bn1", 1280)})
    keys.update({"_fc.weight": (c_dim, 1280), "_fc.bias": (c_dim,)})
    return keys


def encoder_keys(name: str, c_dim: int) -> dict[str, tuple]:
    """Their encoder's keys under net.encoder. (efficientnet-b0 or resnet-18)."""
    if name == "efficientnet-b0":
        inner = {f"features.{k}": s for k, s in efficientnet_b0_keys(c_dim).items()}
    else:
        inner = {f"features.{k}": s for k, s in resnet18_keys().items()}
        inner.update({"fc.weight": (c_dim, 512), "fc.bias": (c_dim,)})
    return {f"net.encoder.{k}": s for k, s in inner.items()}


def decoder_cbn_keys(c: int, h: int, p: int = 3) -> dict[str, tuple]:
    """Their DecoderCBN: fc_p, block1..block5 (CondResBlock), bn, fc_out; 101 keys."""
    keys = {"fc_p.weight": (h, p, 1), "fc_p.bias": (h,)}
    norms = [f"block{k}.batchnorm_{j}" for k in range(1, 6) for j in (0, 1)] + ["bn"]
    for prefix in norms:
        for name in ("gamma", "beta"):
            keys.update({f"{prefix}.{name}.weight": (h, c), f"{prefix}.{name}.bias": (h,)})
        keys.update(bn_keys(f"{prefix}.batchnorm", h, affine=False))
    for k in range(1, 6):
        for j in (0, 1):
            keys.update({f"block{k}.fc_{j}.weight": (h, h, 1), f"block{k}.fc_{j}.bias": (h,)})
    keys.update({"fc_out.weight": (1, h, 1), "fc_out.bias": (1,)})
    return {f"net.decoder.{k}": s for k, s in keys.items()}


def decoder_fc_keys(c: int, h: int, p: int = 3) -> dict[str, tuple]:
    """Their DecoderFC: fc_p, fc_c, blocks.0..4 (ResBlockFC), fc; 26 keys."""
    keys = {"fc_p.weight": (h, p), "fc_p.bias": (h,), "fc_c.weight": (h, c), "fc_c.bias": (h,)}
    for i in range(5):
        for j in (0, 1):
            keys.update({f"blocks.{i}.fc_{j}.weight": (h, h), f"blocks.{i}.fc_{j}.bias": (h,)})
    keys.update({"fc.weight": (1, h), "fc.bias": (1,)})
    return {f"net.decoder.{k}": s for k, s in keys.items()}


def student_state(encoder: str, decoder: str, c: int, h: int, seed: int = 0) -> dict:
    """Their ONetLit state_dict with random, numerically sane values (CBN scales near one)."""
    keys = encoder_keys(encoder, c)
    keys.update((decoder_cbn_keys if decoder == "decoder-cbn" else decoder_fc_keys)(c, h))
    state = fabricate(keys, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for key, shape in keys.items():
        if ".gamma." in key:
            scale = 0.1 / shape[1] ** 0.5 if key.endswith("weight") else 0.1
            state[key] = float(key.endswith("bias")) + scale * torch.randn(shape, generator=g)
    return state


@contextlib.contextmanager
def lightning_importable():
    """A throwaway ``pytorch_lightning.callbacks.model_checkpoint`` module with a
    ModelCheckpoint class, so that pickling can name the class; removed on exit."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", MODEL_CHECKPOINT_MODULE]
    assert not any(name in sys.modules for name in names)
    module = types.ModuleType(MODEL_CHECKPOINT_MODULE)
    module.ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": MODEL_CHECKPOINT_MODULE})
    for name in names[:-1]:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[MODEL_CHECKPOINT_MODULE] = module
    try:
        yield module.ModelCheckpoint
    finally:
        for name in names:
            del sys.modules[name]


def write_lightning_checkpoint(path: Path, state: dict, old_lightning: bool) -> None:
    """A .ckpt as Lightning writes it: callbacks keyed by the ModelCheckpoint class (< 1.5) or
    by a string (>= 1.5), no hyper-parameters."""
    callback_state = {
        "monitor": "val_loss",
        "best_model_score": torch.tensor(0.21),
        "best_model_path": "occ_artifacts/version_1/checkpoints/epoch=131-step=63359.ckpt",
    }
    adam = {"state": {}, "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.999), "params": [0]}]}
    checkpoint = {
        "epoch": 131,
        "global_step": 63359,
        "pytorch-lightning_version": "1.2.10" if old_lightning else "1.5.10",
        "state_dict": state,
        "optimizer_states": [adam],
        "lr_schedulers": [],
    }
    if old_lightning:
        with lightning_importable() as model_checkpoint:
            checkpoint["callbacks"] = {model_checkpoint: callback_state}
            torch.save(checkpoint, path)
    else:
        checkpoint["callbacks"] = {"ModelCheckpoint{'monitor': 'val_loss'}": callback_state}
        checkpoint["loops"] = {"fit_loop": {"epoch_progress": {"current": {"completed": 131}}}}
        torch.save(checkpoint, path)


def student_decoder_cbn(state: dict, p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Their DecoderCBN forward in eval mode on their raw keys: p (B, T, dim), c (B, C)."""
    s = {k.removeprefix("net.decoder."): v for k, v in state.items()}

    def cbn(x, prefix):
        mean, var = s[f"{prefix}.batchnorm.running_mean"], s[f"{prefix}.batchnorm.running_var"]
        normed = F.batch_norm(x, mean, var, training=False, eps=1e-5)
        gamma = F.linear(c, s[f"{prefix}.gamma.weight"], s[f"{prefix}.gamma.bias"])
        beta = F.linear(c, s[f"{prefix}.beta.weight"], s[f"{prefix}.beta.bias"])
        return gamma[:, :, None] * normed + beta[:, :, None]

    def conv(x, prefix):
        return F.conv1d(x, s[f"{prefix}.weight"], s[f"{prefix}.bias"])

    net = conv(p.transpose(1, 2), "fc_p")
    for k in range(1, 6):
        hidden = conv(F.relu(cbn(net, f"block{k}.batchnorm_0")), f"block{k}.fc_0")
        net = net + conv(F.relu(cbn(hidden, f"block{k}.batchnorm_1")), f"block{k}.fc_1")
    return conv(F.relu(cbn(net, "bn")), "fc_out")[:, 0]


def student_decoder_fc(state: dict, p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Their DecoderFC forward: their ResBlockFC is x + relu(fc_1(x)) (fc_0 discarded)."""
    s = {k.removeprefix("net.decoder."): v for k, v in state.items()}

    def linear(x, prefix):
        return F.linear(x, s[f"{prefix}.weight"], s[f"{prefix}.bias"])

    net = linear(p, "fc_p") + linear(c, "fc_c")[:, None]
    for i in range(5):
        net = net + F.relu(linear(net, f"blocks.{i}.fc_1"))
    return linear(F.relu(net), "fc")[..., 0]
