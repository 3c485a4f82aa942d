"""Building blocks of the ONet networks (module names as in the authors' checkpoints)."""

from __future__ import annotations

import torch
from torch import nn


class ResnetBlockFC(nn.Module):
    """Fully connected residual block: x + fc_1(relu(fc_0(relu(x)))), fc_1 initialised to 0."""

    def __init__(self, size_in: int, size_out: int | None = None, size_h: int | None = None):
        super().__init__()
        size_out = size_in if size_out is None else size_out
        size_h = min(size_in, size_out) if size_h is None else size_h
        self.fc_0 = nn.Linear(size_in, size_h)
        self.fc_1 = nn.Linear(size_h, size_out)
        self.actvn = nn.ReLU()
        self.shortcut = None if size_in == size_out else nn.Linear(size_in, size_out, bias=False)
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.fc_1(self.actvn(self.fc_0(self.actvn(x))))
        return (x if self.shortcut is None else self.shortcut(x)) + dx


class NoisypixelBlockFC(ResnetBlockFC):
    """project-noisypixel's residual block, bug kept: x + relu(fc_1(x)). Their forward computed
    relu(fc_0(x)) and threw it away, so fc_0 is present (their checkpoints hold it) but unused;
    their decoder-fc weights were trained with this block and only make sense with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.actvn(self.fc_1(x))


class CBatchNorm1d(nn.Module):
    """Conditional batch norm: gamma(c) * BN(x) + beta(c), gamma/beta 1x1 convs of c.

    BN has no affine part and pools statistics over the batch and the points. x (B, F, T),
    c (B, C). Initialised to the identity (gamma weight 0 bias 1, beta 0).
    """

    def __init__(self, c_dim: int, f_dim: int):
        super().__init__()
        self.c_dim = c_dim
        self.conv_gamma = nn.Conv1d(c_dim, f_dim, 1)
        self.conv_beta = nn.Conv1d(c_dim, f_dim, 1)
        self.bn = nn.BatchNorm1d(f_dim, affine=False)
        nn.init.zeros_(self.conv_gamma.weight)
        nn.init.zeros_(self.conv_beta.weight)
        nn.init.ones_(self.conv_gamma.bias)
        nn.init.zeros_(self.conv_beta.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = c.unsqueeze(2) if c.dim() == 2 else c
        return self.conv_gamma(c) * self.bn(x) + self.conv_beta(c)


class CBatchNorm1dLegacy(nn.Module):
    """The legacy CBN of older checkpoints: gamma/beta are Linear layers (fc_gamma, fc_beta)."""

    def __init__(self, c_dim: int, f_dim: int):
        super().__init__()
        self.f_dim = f_dim
        self.fc_gamma = nn.Linear(c_dim, f_dim)
        self.fc_beta = nn.Linear(c_dim, f_dim)
        self.bn = nn.BatchNorm1d(f_dim, affine=False)
        nn.init.zeros_(self.fc_gamma.weight)
        nn.init.zeros_(self.fc_beta.weight)
        nn.init.ones_(self.fc_gamma.bias)
        nn.init.zeros_(self.fc_beta.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma = self.fc_gamma(c).view(c.shape[0], self.f_dim, 1)
        beta = self.fc_beta(c).view(c.shape[0], self.f_dim, 1)
        return gamma * self.bn(x) + beta


class CResnetBlockConv1d(nn.Module):
    """Residual block of 1x1 convs with conditional batch norm before each ReLU."""

    def __init__(self, c_dim: int, size_in: int, legacy: bool = False):
        super().__init__()
        norm = CBatchNorm1dLegacy if legacy else CBatchNorm1d
        self.bn_0 = norm(c_dim, size_in)
        self.bn_1 = norm(c_dim, size_in)
        self.fc_0 = nn.Conv1d(size_in, size_in, 1)
        self.fc_1 = nn.Conv1d(size_in, size_in, 1)
        self.actvn = nn.ReLU()
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        net = self.fc_0(self.actvn(self.bn_0(x, c)))
        return x + self.fc_1(self.actvn(self.bn_1(net, c)))
