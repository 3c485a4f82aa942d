"""Input encoders: images (ResNet-18/50, EfficientNet), point clouds (ResNet-PointNet), voxels
(3-D convs)."""

from __future__ import annotations

import torch
import torchvision
from efficientnet_pytorch import EfficientNet
from torch import nn

from onet.models.layers import ResnetBlockFC

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# project-noisypixel's EfficientNet variants (efficientnet_pytorch names efficientnet-<variant>).
EFFICIENTNET_VARIANTS = ("b0", "b1", "b5", "b7")


class ImageEncoder(nn.Module):
    """Base of the image encoders: feed RGB in [0, 1]; the ImageNet normalisation happens here,
    as in ONet. The mean/std buffers are not persistent, so checkpoints hold no keys for them."""

    def __init__(self, normalize: bool = True):
        super().__init__()
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def normalized(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std if self.normalize else images


class TorchvisionResnet(ImageEncoder):
    """torchvision ResNet features, then ``fc`` Linear(features, c_dim).

    The classifier of ``features`` is an empty Sequential, as in the original, so checkpoints
    hold no ``features.fc`` keys. Subclasses set the architecture and its feature width.
    """

    ARCH = staticmethod(torchvision.models.resnet18)
    FEATURES = 512

    def __init__(self, c_dim: int, normalize: bool = True, use_linear: bool = True):
        super().__init__(normalize)
        if not use_linear and c_dim != self.FEATURES:
            raise ValueError(f"c_dim must be {self.FEATURES} when use_linear is False")
        self.features = self.ARCH(weights=None)
        self.features.fc = nn.Sequential()
        self.fc = nn.Linear(self.FEATURES, c_dim) if use_linear else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.normalized(images)))


class Resnet18(TorchvisionResnet):
    """ONet's image encoder (also project-noisypixel's ``resnet-18``, same keys): ResNet-18
    features (512-d) then ``fc``."""


class Resnet50(TorchvisionResnet):
    """project-noisypixel's ``resnet-50``: ResNet-50 features (2048-d) then ``fc``."""

    ARCH = staticmethod(torchvision.models.resnet50)
    FEATURES = 2048


class EfficientNetEncoder(ImageEncoder):
    """project-noisypixel's ``efficientnet-<variant>``: efficientnet_pytorch's EfficientNet with
    its classifier ``_fc`` made (F, c_dim), the modules they used, so their keys match.

    Its "same" padding is static, computed for the variant's nominal image size (224, 240, 456,
    600) whatever the input's size, as in their models (at 137 px, b0's final map is 4x4).
    """

    def __init__(self, c_dim: int, variant: str = "b0", normalize: bool = True):
        super().__init__(normalize)
        if variant not in EFFICIENTNET_VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {EFFICIENTNET_VARIANTS}")
        self.variant = variant
        self.features = EfficientNet.from_name(f"efficientnet-{variant}", num_classes=c_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalized(images))


class ResnetPointnet(nn.Module):
    """PointNet with residual blocks; max-pooled features are concatenated back after each
    block. Input (B, T, dim) points, output (B, c_dim)."""

    def __init__(self, c_dim: int = 128, dim: int = 3, hidden_dim: int = 128):
        super().__init__()
        self.fc_pos = nn.Linear(dim, 2 * hidden_dim)
        for k in range(5):
            setattr(self, f"block_{k}", ResnetBlockFC(2 * hidden_dim, hidden_dim))
        self.fc_c = nn.Linear(hidden_dim, c_dim)
        self.actvn = nn.ReLU()

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        net = self.block_0(self.fc_pos(points))
        for k in range(1, 5):
            pooled = net.max(dim=1, keepdim=True).values.expand_as(net)
            net = getattr(self, f"block_{k}")(torch.cat([net, pooled], dim=2))
        return self.fc_c(self.actvn(net.max(dim=1).values))


class VoxelEncoder(nn.Module):
    """Four stride-2 3-D convs on a 32^3 occupancy grid, then a linear layer to c_dim."""

    def __init__(self, dim: int = 3, c_dim: int = 128):
        super().__init__()
        self.actvn = nn.ReLU()
        self.conv_in = nn.Conv3d(1, 32, 3, padding=1)
        self.conv_0 = nn.Conv3d(32, 64, 3, padding=1, stride=2)
        self.conv_1 = nn.Conv3d(64, 128, 3, padding=1, stride=2)
        self.conv_2 = nn.Conv3d(128, 256, 3, padding=1, stride=2)
        self.conv_3 = nn.Conv3d(256, 512, 3, padding=1, stride=2)
        self.fc = nn.Linear(512 * 2 * 2 * 2, c_dim)

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        net = self.conv_in(voxels.unsqueeze(1))
        for conv in (self.conv_0, self.conv_1, self.conv_2, self.conv_3):
            net = conv(self.actvn(net))
        return self.fc(self.actvn(net.flatten(1)))
