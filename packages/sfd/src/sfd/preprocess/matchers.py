"""The matchers of steps 1 and 4: ``extract(gray) -> Features`` once per (rotated) crop, then
``match(a, b) -> matches0`` per pair (SuperGlue's layout: index into b, -1 where unmatched).

- ``sift``: upright SIFT (pycolmap) with mutual ratio matching; runs without weight files.
- ``superglue``: the original's SuperPoint + SuperGlue (outdoor weights) with SfD's settings,
  on the full-resolution grey crop; ``--superglue_weights DIR`` holds ``superpoint_v1.pth``
  and ``superglue_outdoor.pth`` (else geomkit's weight folders are searched).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from geomkit.errors import CheckpointError, ConfigError
from geomkit.sfm.superglue import SuperGlue, SuperGlueConfig, load_superglue
from geomkit.sfm.superpoint import SuperPoint, SuperPointConfig, load_superpoint
from sfd.preprocess.features import Features, SiftSettings, UprightSift, match

# The settings of the original's 1_match_pairs.py and 4_match_pairs_final.py.
SUPERPOINT = SuperPointConfig(nms_radius=4, keypoint_threshold=0.003, max_keypoints=1024)
SUPERGLUE = SuperGlueConfig(sinkhorn_iterations=20, match_threshold=0.1)


class Matcher(Protocol):
    """What steps 1 and 4 need: features of one grey crop, then matches0 of two."""

    def extract(self, gray: np.ndarray) -> Features: ...

    def match(self, a: Features, b: Features) -> np.ndarray: ...


@dataclass
class SiftMatcher:
    """Upright SIFT features, mutual nearest neighbours passing the ratio test."""

    sift: UprightSift

    @classmethod
    def create(cls, settings: SiftSettings) -> SiftMatcher:
        return cls(UprightSift(settings))

    def extract(self, gray: np.ndarray) -> Features:
        return self.sift(gray)

    def match(self, a: Features, b: Features) -> np.ndarray:
        return match(a, b)


class SuperGlueMatcher:
    """SuperPoint keypoints (shifted by +0.5 px into the corner-origin pixel convention of
    :mod:`sfd.preprocess.features`), matched by SuperGlue on their original positions."""

    def __init__(self, superpoint: SuperPoint, superglue: SuperGlue):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.superpoint = superpoint.to(self.device)
        self.superglue = superglue.to(self.device)

    @classmethod
    def load(cls, folder: str | Path | None) -> SuperGlueMatcher:
        """Both networks with SfD's settings, loaded strictly.

        Raises:
            ConfigError: a weight file is missing or does not match (one line naming it).
        """
        try:
            return cls(
                load_superpoint(folder, SUPERPOINT), load_superglue(folder, "outdoor", SUPERGLUE)
            )
        except CheckpointError as err:
            raise ConfigError(f"--matcher superglue: {err}") from None

    def extract(self, gray: np.ndarray) -> Features:
        image = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32) / 255.0)
        found = self.superpoint(image[None, None].to(self.device))[0]
        return Features(
            xy=found["keypoints"].cpu().double().numpy() + 0.5,
            descriptors=found["descriptors"].T.cpu().numpy(),
            scores=found["scores"].cpu().numpy(),
            image_size=(int(gray.shape[0]), int(gray.shape[1])),
        )

    def match(self, a: Features, b: Features) -> np.ndarray:
        data = {}
        for k, f in enumerate((a, b)):
            data[f"keypoints{k}"] = self._tensor(f.xy - 0.5)[None]
            data[f"scores{k}"] = self._tensor(f.scores)[None]
            data[f"descriptors{k}"] = self._tensor(f.descriptors.T)[None]
        result = self.superglue(data, (a.image_size, b.image_size))
        return result["matches0"][0].cpu().numpy().astype(np.int64)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)
