"""Step 8: the monocular normal prior (Omnidata DPT-Hybrid) for ``--use_pretrain_normal``.

As the authors' 8_extract_monocular_cues.py: the training image goes through the network at
800 px (:data:`NET_SIZE`; Omnidata's own demo uses 384), the output is clamped to [0, 1], mapped
to (x, 1 - y, 1 - z), resized bilinearly to the mask's size, set to 1 where the mask is 0 and
written as 8-bit RGB, truncated (``uint8(255 x)``), to ``train/000_normal_pretrain.png``.
Without a checkpoint the step says so and training runs without the prior.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from geomkit.errors import ConfigError
from geomkit.io.images import read_image, read_mask, write_image
from sfd.preprocess.layout import Layout, require_inputs

NET_SIZE = 800
SKIP_MESSAGE = (
    "no Omnidata checkpoint given: training will run without the normal prior "
    "(--use_pretrain_normal needs train/000_normal_pretrain.png)"
)


def _omnidata():
    """The network module; it needs timm, the ``normals`` extra, which only this step uses."""
    try:
        from sfd.preprocess import omnidata
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"--omnidata_ckpt needs {error.name}: pip install 'sfd[normals]' (or timm)"
        ) from None
    return omnidata


def check(checkpoint: str | None) -> None:
    """Before any step runs: CheckpointError for a missing checkpoint or one whose keys or
    shapes are not the network's."""
    if checkpoint is not None:
        _omnidata().validate_checkpoint(checkpoint)


def run(layout: Layout, checkpoint: str | None) -> None:
    """Step 8: write the normal prior, or print the skip line without a checkpoint."""
    if checkpoint is None:
        print(SKIP_MESSAGE)
        return
    rgb_path, mask_path = layout.train_file("rgb"), layout.train_file("mask")
    require_inputs([rgb_path, mask_path], 8)
    rgb, mask = read_image(rgb_path), read_mask(mask_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"step 8: Omnidata normals of {rgb_path} at {NET_SIZE} px on {device}")
    model = _omnidata().load_model(checkpoint, device)
    prior = encode_prior(predict(model, rgb, NET_SIZE), mask)
    out = layout.train_file("normal_pretrain")
    write_image(out, prior)
    print(f"wrote {out}")


def network_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(1, 3, size, size) in [0, 1] from (H, W, 3) float RGB: the original's PIL bilinear
    resize of the short side to ``size`` and centre crop, no normalisation."""
    pixels = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    pixels = TF.center_crop(TF.resize(pixels, size, TF.InterpolationMode.BILINEAR), size)
    return TF.to_tensor(pixels)[None]


@torch.no_grad()
def predict(model: torch.nn.Module, rgb: np.ndarray, size: int) -> torch.Tensor:
    """(3, size, size) network output clamped to [0, 1] (Omnidata's normal encoding)."""
    device = next(model.parameters()).device
    return model(network_input(rgb, size).to(device))[0].clamp(0, 1).cpu()


def encode_prior(normals: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 of ``train/000_normal_pretrain.png`` from the (3, S, S) clamped output
    and the (H, W) foreground mask: (x, 1 - y, 1 - z), bilinear to (H, W), background 1."""
    mapped = torch.stack([normals[0], 1 - normals[1], 1 - normals[2]])
    resized = F.interpolate(mapped[None], size=mask.shape, mode="bilinear", align_corners=False)
    image = resized[0].permute(1, 2, 0).numpy()
    image[~mask] = 1.0
    return (image * 255).astype(np.uint8)
