"""SuperPoint (DeTone et al., CVPRW 2018): a keypoint detector and descriptor, for inference.

Parameter names and shapes are Magic Leap's (SuperGluePretrainedNetwork), so their
``superpoint_v1.pth`` loads strictly. Keypoints are (x, y) pixel indices: the centre of the
top-left pixel is (0, 0), as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geomkit.checkpoint import load_checkpoint, load_state_dict_strict
from geomkit.weights import find_weight_file

WEIGHT_FILE = "superpoint_v1.pth"
WEIGHT_SOURCE = (
    "SuperPoint's weights from magicleap/SuperGluePretrainedNetwork "
    "(models/weights/superpoint_v1.pth)"
)
CELL = 8  # the detector head predicts one 8x8 cell per feature-map pixel


@dataclass
class SuperPointConfig:
    """Inference settings (the original's defaults; SfD uses threshold 0.003, 1024 keypoints).

    max_keypoints: keep the best this many; -1 keeps all.
    remove_borders: drop keypoints closer than this to the image border (px).
    """

    descriptor_dim: int = 256
    nms_radius: int = 4
    keypoint_threshold: float = 0.005
    max_keypoints: int = -1
    remove_borders: int = 4


def simple_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Zero every score that is not a local maximum within ``radius`` (B, H, W).

    Two rounds re-admit maxima that only a suppressed neighbour had hidden, as the original.
    """

    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, kernel_size=2 * radius + 1, stride=1, padding=radius)

    zeros = torch.zeros_like(scores)
    peaks = scores == pool(scores)
    for _ in range(2):
        covered = pool(peaks.float()) > 0
        rest = torch.where(covered, zeros, scores)
        peaks = peaks | ((rest == pool(rest)) & ~covered)
    return torch.where(peaks, scores, zeros)


def heatmap_keypoints(
    heatmap: torch.Tensor, config: SuperPointConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints of one (H, W) score map: NMS, threshold, border removal, top-k.

    Returns:
        (K, 2) float (x, y) pixel indices and their (K,) scores.
    """
    height, width = heatmap.shape
    peaks = simple_nms(heatmap[None], config.nms_radius)[0]
    rows_cols = torch.nonzero(peaks > config.keypoint_threshold)
    scores = peaks[rows_cols[:, 0], rows_cols[:, 1]]
    border = config.remove_borders
    inside = (
        (rows_cols[:, 0] >= border)
        & (rows_cols[:, 0] < height - border)
        & (rows_cols[:, 1] >= border)
        & (rows_cols[:, 1] < width - border)
    )
    rows_cols, scores = rows_cols[inside], scores[inside]
    if 0 <= config.max_keypoints < len(scores):
        scores, best = torch.topk(scores, config.max_keypoints)
        rows_cols = rows_cols[best]
    return rows_cols.flip(1).float(), scores


def sample_descriptors(keypoints: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """Unit descriptors (D, K) bilinearly read from a (D, h, w) map at (K, 2) pixel indices.

    The coordinate normalisation is the original's: pixel ``CELL/2 - 0.5`` maps to -1 and
    ``w*CELL - CELL/2 - 0.5`` (resp. h) to +1, with ``align_corners=True``.
    """
    dim, h, w = dense.shape
    shifted = keypoints - CELL / 2 + 0.5
    span = keypoints.new_tensor([w * CELL - CELL / 2 - 0.5, h * CELL - CELL / 2 - 0.5])
    grid = (shifted / span * 2 - 1).view(1, 1, -1, 2)
    sampled = F.grid_sample(dense[None], grid, mode="bilinear", align_corners=True)
    return F.normalize(sampled.reshape(dim, -1), p=2, dim=0)


def _conv(c_in: int, c_out: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=1, padding=kernel // 2)


class SuperPoint(nn.Module):
    """VGG-like encoder, a 65-channel detector head (64 cell positions + "no keypoint") and a
    descriptor head, both at 1/8 resolution."""

    def __init__(self, config: SuperPointConfig | None = None):
        super().__init__()
        self.config = config or SuperPointConfig()
        if self.config.max_keypoints == 0 or self.config.max_keypoints < -1:
            raise ValueError("max_keypoints must be positive or -1")
        widths = [1, 64, 64, 64, 64, 128, 128, 128, 128]
        for k, block in enumerate("1a 1b 2a 2b 3a 3b 4a 4b".split()):
            setattr(self, f"conv{block}", _conv(widths[k], widths[k + 1]))
        self.convPa = _conv(128, 256)
        self.convPb = _conv(256, CELL * CELL + 1, kernel=1)
        self.convDa = _conv(128, 256)
        self.convDb = _conv(256, self.config.descriptor_dim, kernel=1)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) grey image in [0, 1] -> (B, 128, H/8, W/8) features."""
        x = image
        for stage in "1234":
            x = F.relu(getattr(self, f"conv{stage}a")(x))
            x = F.relu(getattr(self, f"conv{stage}b")(x))
            if stage != "4":
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        return x

    def dense(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H', W') keypoint probabilities (H' = 8 * (H // 8)) and (B, D, H/8, W/8) unit
        dense descriptors."""
        x = self.encode(image)
        logits = self.convPb(F.relu(self.convPa(x)))
        probs = torch.softmax(logits, dim=1)[:, :-1]
        b, _, h, w = probs.shape
        heat = probs.permute(0, 2, 3, 1).reshape(b, h, w, CELL, CELL)
        heat = heat.permute(0, 1, 3, 2, 4).reshape(b, h * CELL, w * CELL)
        descriptors = F.normalize(self.convDb(F.relu(self.convDa(x))), p=2, dim=1)
        return heat, descriptors

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image of a (B, 1, H, W) batch in [0, 1]: {"keypoints" (K, 2) (x, y),
        "scores" (K,), "descriptors" (D, K)}."""
        heat, dense = self.dense(image)
        out = []
        for heatmap, descriptors in zip(heat, dense, strict=True):
            keypoints, scores = heatmap_keypoints(heatmap, self.config)
            out.append(
                {
                    "keypoints": keypoints,
                    "scores": scores,
                    "descriptors": sample_descriptors(keypoints, descriptors),
                }
            )
        return out


def load_superpoint(
    folder: str | Path | None = None, config: SuperPointConfig | None = None
) -> SuperPoint:
    """SuperPoint in eval mode with ``superpoint_v1.pth`` from ``folder`` (None: the weight
    folders of :mod:`geomkit.weights`), loaded strictly.

    Raises:
        CheckpointError: the file is missing, unreadable or has other keys/shapes.
    """
    explicit = None if folder is None else Path(folder) / WEIGHT_FILE
    path = find_weight_file(explicit, WEIGHT_FILE, WEIGHT_SOURCE)
    model = SuperPoint(config)
    load_state_dict_strict(model, load_checkpoint(path), source=str(path))
    return model.eval()
