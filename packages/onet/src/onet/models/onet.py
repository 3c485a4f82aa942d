"""The Occupancy Network: encoder (inputs -> c), optional latent encoder (q(z)), decoder
(points, z, c -> occupancy logits)."""

from __future__ import annotations

import torch
from torch import distributions as dist
from torch import nn


class OccupancyNetwork(nn.Module):
    """Submodules ``encoder``, ``decoder``, ``encoder_latent`` as in the authors' checkpoints.

    Differences from im2mesh: ``decode`` returns logits rather than a Bernoulli (the prior
    p0_z = N(0, I) is rebuilt on the parameters' device instead of stored).
    """

    def __init__(
        self,
        decoder: nn.Module,
        encoder: nn.Module | None = None,
        encoder_latent: nn.Module | None = None,
        z_dim: int = 0,
    ):
        super().__init__()
        self.decoder = decoder
        self.encoder = encoder
        self.encoder_latent = encoder_latent
        self.z_dim = z_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prior(self) -> dist.Normal:
        zeros = torch.zeros(self.z_dim, device=self.device)
        return dist.Normal(zeros, torch.ones_like(zeros))

    def encode_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """c (B, c_dim); (B, 0) when the model has no encoder."""
        if self.encoder is None:
            return torch.empty(inputs.shape[0], 0, device=self.device)
        return self.encoder(inputs)

    def decode(self, p: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Occupancy logits (B, T) of points p (B, T, dim)."""
        return self.decoder(p, z, c)

    def infer_z(self, p: torch.Tensor, occ: torch.Tensor, c: torch.Tensor) -> dist.Normal:
        """q(z | p, occ, c); an empty distribution when z_dim is 0."""
        if self.encoder_latent is None:
            empty = torch.empty(p.shape[0], 0, device=p.device)
            return dist.Normal(empty, torch.ones_like(empty))
        mean, logstd = self.encoder_latent(p, occ, c)
        return dist.Normal(mean, torch.exp(logstd))

    def get_z_from_prior(self, batch_size: int, sample: bool = True) -> torch.Tensor:
        prior = self.prior()
        if sample:
            return prior.sample((batch_size,))
        return prior.mean.expand(batch_size, self.z_dim)

    def compute_elbo(self, p, occ, inputs):
        """(elbo, reconstruction error, KL) per batch element, as im2mesh."""
        c = self.encode_inputs(inputs)
        q_z = self.infer_z(p, occ, c)
        z = q_z.rsample()
        logits = self.decode(p, z, c)
        rec_error = nn.functional.binary_cross_entropy_with_logits(
            logits, occ, reduction="none"
        ).sum(-1)
        kl = dist.kl_divergence(q_z, self.prior()).sum(dim=-1)
        return -rec_error - kl, rec_error, kl

    def forward(self, p: torch.Tensor, inputs: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """Occupancy logits of p given the inputs, z from the prior."""
        c = self.encode_inputs(inputs)
        z = self.get_z_from_prior(p.shape[0], sample=sample)
        return self.decode(p, z, c)
