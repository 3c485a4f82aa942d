"""Per-sample transforms. Each takes the sample's own numpy Generator, so a sample is the same
whatever worker draws it and after a resume (the original used unseeded global RNGs)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


class SubsamplePoints:
    """N points with their occupancies, drawn with replacement (as ONet); N may be a pair
    (outside, inside) for balanced sampling, which also reports the inside share ('volume')."""

    def __init__(self, n):
        self.n = n

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        points, occ = data[None], data["occ"]
        out = dict(data)
        if isinstance(self.n, int):
            idx = rng.integers(len(points), size=self.n)
            out.update({None: points[idx], "occ": occ[idx]})
            return out
        n_out, n_in = self.n
        inside = occ >= 0.5
        pick_out = rng.integers((~inside).sum(), size=n_out)
        pick_in = rng.integers(inside.sum(), size=n_in)
        out.update(
            {
                None: np.concatenate([points[~inside][pick_out], points[inside][pick_in]]),
                "occ": np.concatenate([np.zeros(n_out, np.float32), np.ones(n_in, np.float32)]),
                "volume": np.float32(inside.mean()),
            }
        )
        return out


class SubsamplePointcloud:
    """N points (and their normals) drawn with replacement."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        idx = rng.integers(len(data[None]), size=self.n)
        return {**data, None: data[None][idx], "normals": data["normals"][idx]}


class PointcloudNoise:
    """Gaussian noise of std ``stddev`` on the points."""

    def __init__(self, stddev: float):
        self.stddev = stddev

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        noise = (self.stddev * rng.standard_normal(data[None].shape)).astype(np.float32)
        return {**data, None: data[None] + noise}


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, data, rng: np.random.Generator):
        for transform in self.transforms:
            data = transform(data, rng)
        return data


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float32 in [0, 1] (torchvision's ToTensor)."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


class ResizeImage:
    """torchvision's Resize(size) for an int: the shorter side becomes ``size`` (bilinear,
    as PIL), then ToTensor."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        width, height = image.size
        if width <= height:
            new = (self.size, int(self.size * height / width))
        else:
            new = (int(self.size * width / height), self.size)
        return to_tensor(image.resize(new, Image.BILINEAR))


class RandomResizedCropImage:
    """torchvision's RandomResizedCrop(size, scale, ratio) then ToTensor (ONet's img_augment
    uses scale (0.75, 1), ratio (1, 1))."""

    def __init__(self, size: int, scale=(0.75, 1.0), ratio=(1.0, 1.0)):
        self.size, self.scale, self.ratio = size, scale, ratio

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        width, height = image.size
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            w = int(round(np.sqrt(target * aspect)))
            h = int(round(np.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                break
        else:  # fall back to the whole image, as torchvision's centre crop fallback at ratio 1
            w = h = min(width, height)
            top, left = (height - h) // 2, (width - w) // 2
        crop = image.crop((left, top, left + w, top + h))
        return to_tensor(crop.resize((self.size, self.size), Image.BILINEAR))
