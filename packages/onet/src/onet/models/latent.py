"""Latent encoder of the variational (unconditional) configs: points and occupancies -> the
mean and log std of q(z)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LatentEncoder(nn.Module):
    """PointNet-like: per point fc_0(occ) + fc_pos(p) (+ fc_c(c)), pooled-feature concatenation
    twice, pooled to fc_mean / fc_logstd. Max pooling (mean pooling when ``leaky``)."""

    def __init__(self, z_dim=128, c_dim=128, dim=3, leaky=False):
        super().__init__()
        self.c_dim = c_dim
        self.fc_pos = nn.Linear(dim, 128)
        if c_dim:
            self.fc_c = nn.Linear(c_dim, 128)
        self.fc_0 = nn.Linear(1, 128)
        self.fc_1 = nn.Linear(128, 128)
        self.fc_2 = nn.Linear(256, 128)
        self.fc_3 = nn.Linear(256, 128)
        self.fc_mean = nn.Linear(128, z_dim)
        self.fc_logstd = nn.Linear(128, z_dim)
        self.leaky = leaky

    def _act(self, x):
        return F.leaky_relu(x, 0.2) if self.leaky else F.relu(x)

    def _pool(self, x, keepdim=False):
        return (
            x.mean(dim=1, keepdim=keepdim) if self.leaky else x.max(dim=1, keepdim=keepdim).values
        )

    def forward(self, p: torch.Tensor, occ: torch.Tensor, c: torch.Tensor | None = None):
        net = self.fc_0(occ.unsqueeze(-1)) + self.fc_pos(p)
        if self.c_dim:
            net = net + self.fc_c(c).unsqueeze(1)
        net = self.fc_1(self._act(net))
        for fc in (self.fc_2, self.fc_3):
            net = fc(self._act(torch.cat([net, self._pool(net, True).expand_as(net)], dim=2)))
        net = self._pool(net)
        return self.fc_mean(net), self.fc_logstd(net)
