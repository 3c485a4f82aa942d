"""The authors' image-model checkpoint layout (onet_img2mesh_3-f786b04a.pt), written out from
the key list in the reference notes independently of onet.models, and fabricated files in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def bn_keys(prefix: str, c: int, affine: bool = True) -> dict[str, tuple]:
    keys = {
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }
    if affine:
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)})
    return keys


def resnet18_keys() -> dict[str, tuple]:
    """torchvision resnet18 state dict names and shapes."""
    keys = {"conv1.weight": (64, 3, 7, 7)}
    keys.update(bn_keys("bn1", 64))
    channels = {1: 64, 2: 128, 3: 256, 4: 512}
    for layer, c in channels.items():
        c_in = channels.get(layer - 1, 64)
        for block in (0, 1):
            prefix = f"layer{layer}.{block}"
            first_in = c_in if block == 0 else c
            keys[f"{prefix}.conv1.weight"] = (c, first_in, 3, 3)
            keys.update(bn_keys(f"{prefix}.bn1", c))
            keys[f"{prefix}.conv2.weight"] = (c, c, 3, 3)
            keys.update(bn_keys(f"{prefix}.bn2", c))
            if block == 0 and layer > 1:
                keys[f"{prefix}.downsample.0.weight"] = (c, c_in, 1, 1)
                keys.update(bn_keys(f"{prefix}.downsample.1", c))
    return keys


def onet_img2mesh_keys(legacy: bool = False) -> dict[str, tuple]:
    """The key list of onet_img2mesh_3-f786b04a.pt (reference notes, section 1)."""
    keys = {f"encoder.features.{k}": s for k, s in resnet18_keys().items()}
    keys.update(
        {
            "encoder.fc.weight": (256, 512),
            "encoder.fc.bias": (256,),
            "decoder.fc_p.weight": (256, 3, 1),
            "decoder.fc_p.bias": (256,),
            "decoder.fc_out.weight": (1, 256, 1),
            "decoder.fc_out.bias": (1,),
        }
    )
    cbn = ["decoder.bn"] + [f"decoder.block{i}.bn_{j}" for i in range(5) for j in (0, 1)]
    for prefix in cbn:
        if legacy:
            for name in ("fc_gamma", "fc_beta"):
                keys[f"{prefix}.{name}.weight"] = (256, 256)
                keys[f"{prefix}.{name}.bias"] = (256,)
        else:
            for name in ("conv_gamma", "conv_beta"):
                keys.update(
                    {f"{prefix}.{name}.weight": (256, 256, 1), f"{prefix}.{name}.bias": (256,)}
                )
        keys.update(bn_keys(f"{prefix}.bn", 256, affine=False))
    for i in range(5):
        for j in (0, 1):
            keys.update(
                {
                    f"decoder.block{i}.fc_{j}.weight": (256, 256, 1),
                    f"decoder.block{i}.fc_{j}.bias": (256,),
                }
            )
    return keys


def fabricate(keys: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes that make a numerically sane network: weights scaled by
    fan-in, positive running variances, conditional-BN scales near one (as the authors initialise
    them) so that eleven CBN layers do not multiply the activations by ~|c| each."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif "_gamma." in key:
            scale = 0.1 / shape[1] ** 0.5 if len(shape) > 1 else 0.1
            offset = 1.0 if key.endswith("bias") else 0.0
            state[key] = offset + scale * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


def write_official_checkpoint(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A file laid out like the authors' release: {'model', 'epoch_it', 'it', 'loss_val_best'}."""
    state = fabricate(onet_img2mesh_keys(), seed)
    meta = {"epoch_it": 1, "it": 2_886_000, "loss_val_best": np.float64(0.6)}
    torch.save({"model": state, **meta}, path)
    return state
