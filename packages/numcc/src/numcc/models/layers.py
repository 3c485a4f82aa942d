"""Pieces NU-MCC's and MCC's modules share: their sizes, the fixed 2-D sin-cos embeddings,
the image normalisation, the NeRF positional encoding, timm's ViT blocks and the authors'
weight initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from geomkit.errors import InputError

IMG_SIZE = 224  # the encoder's image size; 800 px images are resized to it
PATCH_SIZE = 16
XYZ_WINDOW = 8  # one XYZ token per 8 x 8 window of the 112 x 112 seen-XYZ map
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
N_FREQUENCIES = 10  # NeRF encoding of the queries: 2^0 pi ... 2^9 pi
QUERY_SCALE = 3.0  # queries are divided by this before the encoding
N_COLOUR_BINS = 256


@dataclass(frozen=True)
class ModelSizes:
    """Widths and depths. The defaults are the published models (ViT-B towers, 512-wide
    decoders), whose checkpoints fix them; tests shrink them to run quickly."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    xyz_mlp_ratio: float = 2.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    hidden_dim: int = 512
    n_blocks: int = 5


PUBLISHED = ModelSizes()
# --model_size presets: the published "base", and reduced models that train on a CPU.
SIZES = {
    "base": PUBLISHED,
    "small": ModelSizes(
        embed_dim=96,
        depth=2,
        num_heads=4,
        decoder_embed_dim=64,
        decoder_depth=2,
        decoder_num_heads=4,
        hidden_dim=64,
        n_blocks=2,
    ),
    "tiny": ModelSizes(
        embed_dim=32,
        depth=1,
        num_heads=2,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=2,
        hidden_dim=32,
        n_blocks=2,
    ),
}


def sincos_pos_embed(dim: int, grid_size: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos embedding, (1 + grid_size^2, dim) float32, row-major grid.

    The first half of the channels encodes the column, the second half the row, each as
    [sin(pos * w), cos(pos * w)] with w = 10000^(-i / (dim / 4)); the leading cls slot is 0.
    """
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid_size, dtype=torch.float64),
        torch.arange(grid_size, dtype=torch.float64),
        indexing="ij",
    )
    halves = []
    for pos in (cols.reshape(-1), rows.reshape(-1)):
        angles = pos[:, None] * omega[None]
        halves += [angles.sin(), angles.cos()]
    grid = torch.cat(halves, dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), grid]).float()


def frozen_pos_embed(dim: int, grid_size: int) -> nn.Parameter:
    """A sin-cos embedding (1, 1 + grid_size^2, dim) kept as a frozen parameter, as the
    authors' modules do (so it is in their state dicts and parameter counts)."""
    return nn.Parameter(sincos_pos_embed(dim, grid_size)[None], requires_grad=False)


def preprocess_img(images: torch.Tensor, res: int = IMG_SIZE) -> torch.Tensor:
    """(B, 3, S, S) RGB in [0, 1] -> (B, 3, res, res) ImageNet-normalised.

    S must be ``res`` or 800; 800 px images are resized bilinearly (align_corners False) by
    the scale factor res / 800, as the originals do.

    Raises:
        InputError: any other image size.
    """
    size = images.shape[-1]
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != size:
        raise InputError(f"seen_images must be (B, 3, S, S), got {tuple(images.shape)}")
    if size != res:
        if size != 800:
            raise InputError(f"seen_images must be {res} or 800 px square, got {size} px")
        images = F.interpolate(images, scale_factor=res / 800.0, mode="bilinear")
    mean = images.new_tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    return (images - mean) / std


def shrink_points_beyond_threshold(xyz: torch.Tensor, threshold: float) -> torch.Tensor:
    """(..., 3) points beyond radius t moved to radius t (2 - t / r), as the originals do;
    non-finite points are left alone. Differentiable, with finite gradients everywhere
    (also at the origin, where the eval grid has a query)."""
    radius = xyz.norm(dim=-1, keepdim=True)
    far = (radius > threshold) & torch.isfinite(radius)
    r = torch.where(far, radius, threshold)
    return torch.where(far, xyz * (threshold * (2.0 - threshold / r) / r), xyz)


def positional_encoding(xyz: torch.Tensor) -> torch.Tensor:
    """NeRF encoding of (..., 3) queries divided by 3: (..., 60) laid out as
    [sin(f0 p), cos(f0 p), sin(f1 p), cos(f1 p), ...] with f_k = 2^k pi, p = xyz / 3."""
    freqs = (2.0 ** torch.arange(N_FREQUENCIES, dtype=torch.float64) * math.pi).to(xyz)
    angles = freqs[:, None] * (xyz / QUERY_SCALE)[..., None, :]  # (..., 10, 3)
    return torch.stack([angles.sin(), angles.cos()], dim=-2).flatten(-3)


def vit_blocks(
    dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float, eps: float
) -> nn.ModuleList:
    """``depth`` timm ViT blocks (qkv bias, GELU MLP, one drop-path rate for all) with
    nn.LayerNorm(eps). The eps is always given: the authors pass nn.LayerNorm (1e-5) or eps
    1e-6, while timm's own default norm layer has changed over versions."""
    norm = partial(nn.LayerNorm, eps=eps)
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm, drop_path=drop_path)
        for _ in range(depth)
    )


def init_vit_weights(module: nn.Module) -> None:
    """The authors' initialisation (from MAE): Xavier-uniform linear weights, zero biases,
    unit LayerNorms. Apply with ``module.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
