"""Occupancy decoders: points (B, T, dim) and codes -> logits (B, T)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onet.models.layers import (
    CBatchNorm1d,
    CBatchNorm1dLegacy,
    CResnetBlockConv1d,
    NoisypixelBlockFC,
    ResnetBlockFC,
)


def _activation(leaky: bool):
    return (lambda x: F.leaky_relu(x, 0.2)) if leaky else F.relu


class Decoder(nn.Module):
    """The simple decoder (unconditional configs, project-noisypixel's decoder-fc):
    fc_p(p) + fc_z(z) + fc_c(c), 5 FC blocks.

    ``noisypixel_block=True`` builds project-noisypixel's buggy residual block
    (:class:`~onet.models.layers.NoisypixelBlockFC`), for running their decoder-fc checkpoints;
    new models train the correct one.
    """

    def __init__(
        self, dim=3, z_dim=128, c_dim=128, hidden_size=128, leaky=False, noisypixel_block=False
    ):
        super().__init__()
        self.z_dim, self.c_dim = z_dim, c_dim
        self.noisypixel_block = noisypixel_block
        block = NoisypixelBlockFC if noisypixel_block else ResnetBlockFC
        self.fc_p = nn.Linear(dim, hidden_size)
        if z_dim:
            self.fc_z = nn.Linear(z_dim, hidden_size)
        if c_dim:
            self.fc_c = nn.Linear(c_dim, hidden_size)
        for k in range(5):
            setattr(self, f"block{k}", block(hidden_size))
        self.fc_out = nn.Linear(hidden_size, 1)
        self.actvn = _activation(leaky)

    def forward(self, p: torch.Tensor, z: torch.Tensor, c: torch.Tensor | None = None):
        net = self.fc_p(p)
        if self.z_dim:
            net = net + self.fc_z(z).unsqueeze(1)
        if self.c_dim:
            net = net + self.fc_c(c).unsqueeze(1)
        for k in range(5):
            net = getattr(self, f"block{k}")(net)
        return self.fc_out(self.actvn(net)).squeeze(-1)


class DecoderCBatchNorm(nn.Module):
    """The image/point-cloud/voxel decoder: 1x1 convs with conditional batch norm on c.

    ``legacy=True`` builds the older CBN with Linear gamma/beta (fc_gamma, fc_beta).
    """

    def __init__(self, dim=3, z_dim=128, c_dim=128, hidden_size=256, leaky=False, legacy=False):
        super().__init__()
        self.z_dim = z_dim
        if z_dim:
            self.fc_z = nn.Linear(z_dim, hidden_size)
        self.fc_p = nn.Conv1d(dim, hidden_size, 1)
        for k in range(5):
            setattr(self, f"block{k}", CResnetBlockConv1d(c_dim, hidden_size, legacy=legacy))
        self.bn = (CBatchNorm1dLegacy if legacy else CBatchNorm1d)(c_dim, hidden_size)
        self.fc_out = nn.Conv1d(hidden_size, 1, 1)
        self.actvn = _activation(leaky)

    def forward(self, p: torch.Tensor, z: torch.Tensor, c: torch.Tensor):
        net = self.fc_p(p.transpose(1, 2))
        if self.z_dim:
            net = net + self.fc_z(z).unsqueeze(2)
        for k in range(5):
            net = getattr(self, f"block{k}")(net, c)
        return self.fc_out(self.actvn(self.bn(net, c))).squeeze(1)


def decoder_cbn(**kwargs) -> DecoderCBatchNorm:
    """project-noisypixel's decoder-cbn: our legacy CBN decoder (Linear gamma/beta), which is
    their module after renaming keys; with z_dim 0, c enters only through the CBN layers."""
    return DecoderCBatchNorm(legacy=True, **kwargs)
