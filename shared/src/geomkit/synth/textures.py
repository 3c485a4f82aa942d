"""Procedural colours: functions of the 3-D surface point, evaluated per pixel (sharp at any
resolution, identical in every view, so photometric consistency holds exactly)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Texture = Callable[[np.ndarray], np.ndarray]  # points (..., 3) -> rgb (..., 3) in [0, 1]


def waves(
    directions: np.ndarray, frequencies: np.ndarray, phases: np.ndarray, palette: np.ndarray
) -> Texture:
    """Sum of plane waves through a palette: smooth, colourful, non-repeating texture.

    Args:
        directions: (W, 3) unit vectors; frequencies: (W,) cycles per unit; phases: (W,).
        palette: (C, 3) colours in [0, 1] blended by the normalised wave sum.
    """

    def color(points):
        value = np.sin(2 * np.pi * (points @ directions.T) * frequencies + phases).mean(-1)
        t = np.clip(0.5 + value * np.sqrt(len(frequencies)) / 2, 0, 1) * (len(palette) - 1)
        low = np.floor(t).astype(int).clip(0, len(palette) - 2)
        w = (t - low)[..., None]
        return (1 - w) * palette[low] + w * palette[low + 1]

    return color


def checker(cell: float, color_a, color_b, base: Texture | None = None) -> Texture:
    """A 3-D checkerboard of ``cell``-sized cubes, optionally modulating another texture."""
    a = np.asarray(color_a, dtype=np.float64)
    b = np.asarray(color_b, dtype=np.float64)

    def color(points):
        parity = (np.floor(points / cell).astype(np.int64).sum(-1) % 2)[..., None]
        rgb = np.where(parity == 0, a, b)
        return rgb if base is None else 0.5 * rgb + 0.5 * base(points)

    return color


def random_texture(rng: np.random.Generator) -> Texture:
    """Waves with a random palette, half of the time over a checkerboard."""
    n = 8
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    palette = rng.uniform(0.1, 0.95, size=(4, 3))
    texture = waves(directions, rng.uniform(2.0, 8.0, n), rng.uniform(0, 2 * np.pi, n), palette)
    if rng.random() < 0.5:
        texture = checker(
            rng.uniform(0.08, 0.15),
            rng.uniform(0.1, 0.9, 3),
            rng.uniform(0.1, 0.9, 3),
            base=texture,
        )
    return texture
