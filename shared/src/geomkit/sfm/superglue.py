"""SuperGlue (Sarlin et al., CVPR 2020): matching two keypoint sets with an attentional graph
network and optimal transport, for inference.

Parameter names and shapes are Magic Leap's (SuperGluePretrainedNetwork), so their
``superglue_outdoor.pth`` / ``superglue_indoor.pth`` load strictly. Keypoints are (x, y)
pixel indices, as SuperPoint returns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from geomkit.checkpoint import load_checkpoint, load_state_dict_strict
from geomkit.errors import ConfigError
from geomkit.weights import find_weight_file

WEIGHT_SOURCE = "SuperGlue's weights from magicleap/SuperGluePretrainedNetwork (models/weights/)"


@dataclass
class SuperGlueConfig:
    """Inference settings (the original's defaults; SfD uses 20 iterations, threshold 0.1).

    layers: 9 alternating self/cross attention pairs in both released models.
    """

    descriptor_dim: int = 256
    keypoint_encoder: tuple[int, ...] = (32, 64, 128, 256)
    layers: tuple[str, ...] = ("self", "cross") * 9
    num_heads: int = 4
    sinkhorn_iterations: int = 100
    match_threshold: float = 0.2


def mlp(channels: list[int]) -> nn.Sequential:
    """1x1 convolutions with BatchNorm and ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for k in range(1, len(channels)):
        layers.append(nn.Conv1d(channels[k - 1], channels[k], kernel_size=1, bias=True))
        if k < len(channels) - 1:
            layers += [nn.BatchNorm1d(channels[k]), nn.ReLU()]
    return nn.Sequential(*layers)


def normalize_keypoints(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, K, 2) pixels -> centred on the image, divided by 0.7 x its longer side."""
    size = keypoints.new_tensor([width, height])
    return (keypoints - size / 2) / (0.7 * max(width, height))


class KeypointEncoder(nn.Module):
    """MLP of (x, y, score) added to each descriptor."""

    def __init__(self, dim: int, widths: tuple[int, ...]):
        super().__init__()
        self.encoder = mlp([3, *widths, dim])

    def forward(self, keypoints: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.encoder(torch.cat([keypoints.transpose(1, 2), scores[:, None]], dim=1))


class MultiHeadedAttention(nn.Module):
    """Attention with ``num_heads`` heads; channel c of head h is row ``c * num_heads + h``
    of the projections (the original's ``view(B, dim, heads, N)``)."""

    def __init__(self, num_heads: int, dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.merge = nn.Conv1d(dim, dim, kernel_size=1)
        self.proj = nn.ModuleList([nn.Conv1d(dim, dim, kernel_size=1) for _ in range(3)])

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
        b, dim, _ = query.shape
        q, k, v = (
            proj(x).view(b, dim // self.num_heads, self.num_heads, -1)
            for proj, x in zip(self.proj, (query, key, value), strict=True)
        )
        logits = torch.einsum("bdhn,bdhm->bhnm", q, k) / math.sqrt(dim // self.num_heads)
        message = torch.einsum("bhnm,bdhm->bdhn", torch.softmax(logits, dim=-1), v)
        return self.merge(message.reshape(b, dim, -1))


class AttentionalPropagation(nn.Module):
    """One GNN layer: the residual update MLP([x, attention(x, source)])."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = MultiHeadedAttention(num_heads, dim)
        self.mlp = mlp([2 * dim, 2 * dim, dim])

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([x, self.attn(x, source, source)], dim=1))


class AttentionalGNN(nn.Module):
    """Self layers attend within an image, cross layers to the other image."""

    def __init__(self, dim: int, names: tuple[str, ...], num_heads: int):
        super().__init__()
        self.names = names
        self.layers = nn.ModuleList([AttentionalPropagation(dim, num_heads) for _ in names])

    def forward(self, desc0: torch.Tensor, desc1: torch.Tensor):
        for layer, name in zip(self.layers, self.names, strict=True):
            src0, src1 = (desc1, desc0) if name == "cross" else (desc0, desc1)
            desc0, desc1 = desc0 + layer(desc0, src0), desc1 + layer(desc1, src1)
        return desc0, desc1


def log_optimal_transport(scores: torch.Tensor, bin_score: torch.Tensor, iters: int):
    """Log assignment (B, M+1, N+1) of scores (B, M, N) extended by a dustbin row and column.

    Sinkhorn in log space towards row marginals (1, ..., 1, N) and column marginals
    (1, ..., 1, M), all divided by M+N during the iterations and multiplied back at the end.
    """
    b, m, n = scores.shape
    couplings = torch.cat(
        [
            torch.cat([scores, bin_score.expand(b, m, 1)], dim=2),
            bin_score.expand(b, 1, n + 1),
        ],
        dim=1,
    )
    norm = -math.log(m + n)
    log_mu = scores.new_full((b, m + 1), norm)
    log_mu[:, -1] = math.log(n) + norm
    log_nu = scores.new_full((b, n + 1), norm)
    log_nu[:, -1] = math.log(m) + norm
    u, v = torch.zeros_like(log_mu), torch.zeros_like(log_nu)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(couplings + v[:, None, :], dim=2)
        v = log_nu - torch.logsumexp(couplings + u[:, :, None], dim=1)
    return couplings + u[:, :, None] + v[:, None, :] - norm


def mutual_matches(log_assignment: torch.Tensor, threshold: float):
    """Mutual best entries of the assignment without dustbins whose probability exceeds
    ``threshold``: (matches0 (B, M), matches1 (B, N), scores0, scores1), -1 / 0 where none."""
    inner = log_assignment[:, :-1, :-1]
    max0, max1 = inner.max(2), inner.max(1)
    best0, best1 = max0.indices, max1.indices
    mutual0 = torch.arange(best0.shape[1], device=best0.device)[None] == best1.gather(1, best0)
    mutual1 = torch.arange(best1.shape[1], device=best1.device)[None] == best0.gather(1, best1)
    zero = inner.new_tensor(0.0)
    scores0 = torch.where(mutual0, max0.values.exp(), zero)
    scores1 = torch.where(mutual1, scores0.gather(1, best1), zero)
    valid0 = mutual0 & (scores0 > threshold)
    valid1 = mutual1 & valid0.gather(1, best1)
    return (
        torch.where(valid0, best0, -1),
        torch.where(valid1, best1, -1),
        scores0,
        scores1,
    )


class SuperGlue(nn.Module):
    """Keypoint encoder, attentional GNN, final projection, optimal transport, mutual check."""

    def __init__(self, config: SuperGlueConfig | None = None):
        super().__init__()
        self.config = config or SuperGlueConfig()
        dim = self.config.descriptor_dim
        self.kenc = KeypointEncoder(dim, self.config.keypoint_encoder)
        self.gnn = AttentionalGNN(dim, self.config.layers, self.config.num_heads)
        self.final_proj = nn.Conv1d(dim, dim, kernel_size=1, bias=True)
        self.bin_score = nn.Parameter(torch.tensor(1.0))

    @torch.no_grad()
    def forward(self, data: dict[str, torch.Tensor], sizes) -> dict[str, torch.Tensor]:
        """Match ``data`` = {"keypoints0" (B, M, 2), "scores0" (B, M), "descriptors0" (B, D, M),
        and the same with 1}; ``sizes`` = ((H0, W0), (H1, W1)) of the two images.

        Returns {"matches0" (B, M), "matches1" (B, N) (-1: unmatched), "matching_scores0",
        "matching_scores1"}.
        """
        kpts0, kpts1 = data["keypoints0"], data["keypoints1"]
        if kpts0.shape[1] == 0 or kpts1.shape[1] == 0:
            return _no_matches(kpts0, kpts1)
        desc0, desc1 = (
            data[f"descriptors{k}"]
            + self.kenc(normalize_keypoints(kpts, *sizes[k]), data[f"scores{k}"])
            for k, kpts in enumerate((kpts0, kpts1))
        )
        desc0, desc1 = self.gnn(desc0, desc1)
        mdesc0, mdesc1 = self.final_proj(desc0), self.final_proj(desc1)
        scores = torch.einsum("bdn,bdm->bnm", mdesc0, mdesc1) / math.sqrt(mdesc0.shape[1])
        log_assignment = log_optimal_transport(
            scores, self.bin_score, self.config.sinkhorn_iterations
        )
        matches0, matches1, scores0, scores1 = mutual_matches(
            log_assignment, self.config.match_threshold
        )
        return {
            "matches0": matches0,
            "matches1": matches1,
            "matching_scores0": scores0,
            "matching_scores1": scores1,
        }


def _no_matches(kpts0: torch.Tensor, kpts1: torch.Tensor) -> dict[str, torch.Tensor]:
    shape0, shape1 = kpts0.shape[:-1], kpts1.shape[:-1]
    return {
        "matches0": kpts0.new_full(shape0, -1, dtype=torch.long),
        "matches1": kpts1.new_full(shape1, -1, dtype=torch.long),
        "matching_scores0": kpts0.new_zeros(shape0),
        "matching_scores1": kpts1.new_zeros(shape1),
    }


def fill_batch_counters(model: nn.Module, state_dict: dict) -> dict:
    """``state_dict`` with BatchNorm's ``num_batches_tracked`` counters added where absent.

    Files saved by older PyTorch lack these counters, which inference never reads; PyTorch's
    own loader fills them in the same way. Every other key stays strictly checked.
    """
    filled = dict(state_dict)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in filled:
            filled[key] = torch.zeros_like(value)
    return filled


def load_superglue(
    folder: str | Path | None = None,
    weights: str = "outdoor",
    config: SuperGlueConfig | None = None,
) -> SuperGlue:
    """SuperGlue in eval mode with ``superglue_{weights}.pth`` from ``folder`` (None: the weight
    folders of :mod:`geomkit.weights`), loaded strictly.

    Raises:
        ConfigError: ``weights`` is not indoor/outdoor.
        CheckpointError: the file is missing, unreadable or has other keys/shapes.
    """
    if weights not in ("indoor", "outdoor"):
        raise ConfigError(f"SuperGlue weights {weights!r}: choose 'indoor' or 'outdoor'")
    name = f"superglue_{weights}.pth"
    explicit = None if folder is None else Path(folder) / name
    path = find_weight_file(explicit, name, WEIGHT_SOURCE)
    model = SuperGlue(config)
    state = fill_batch_counters(model, load_checkpoint(path))
    load_state_dict_strict(model, state, source=str(path))
    return model.eval()
