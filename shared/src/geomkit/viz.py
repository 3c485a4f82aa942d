"""Pictures people look at: Plotly HTML for point clouds and meshes, PNG grids for images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from geomkit.io.files import atomic_write
from geomkit.structures import PointCloud, TriMesh

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


def scene_traces(
    items: Mapping[str, PointCloud | TriMesh | np.ndarray], max_points: int = 50_000, seed: int = 0
) -> list:
    """Plotly traces for named point clouds (Scatter3d) and meshes (Mesh3d).

    Point clouds above ``max_points`` are subsampled (seeded) so pages stay responsive; their
    colours are used when present, else one colour per item.
    """
    rng = np.random.default_rng(seed)
    traces = []
    for k, (name, item) in enumerate(items.items()):
        color = _PALETTE[k % len(_PALETTE)]
        if isinstance(item, TriMesh):
            traces.append(mesh_trace(name, item, color))
        else:
            cloud = item if isinstance(item, PointCloud) else PointCloud(np.asarray(item))
            traces.append(_cloud_trace(name, cloud, color, max_points, rng))
    return traces


def mesh_trace(name: str, mesh: TriMesh, color: str, **style) -> go.Mesh3d:
    """A Mesh3d of the mesh: its vertex colours when it has them, else ``color``; flat shading
    unless ``style`` says otherwise (``style`` is passed to go.Mesh3d, e.g. flatshading=False
    and lighting for smooth shading)."""
    v, f = mesh.vertices, mesh.faces
    kwargs = {"color": color}
    if mesh.vertex_colors is not None:
        kwargs = {"vertexcolor": [_rgb(c) for c in mesh.vertex_colors]}
    options = {"showlegend": True, "flatshading": True, "opacity": 1.0, **kwargs, **style}
    return go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], name=name, **options
    )


def _cloud_trace(name, cloud: PointCloud, color, max_points, rng) -> go.Scatter3d:
    keep = np.arange(len(cloud))
    if len(keep) > max_points:
        keep = np.sort(rng.choice(len(cloud), max_points, replace=False))
    p = cloud.points[keep]
    marker_color = color if cloud.colors is None else [_rgb(c) for c in cloud.colors[keep]]
    return go.Scatter3d(
        x=p[:, 0],
        y=p[:, 1],
        z=p[:, 2],
        mode="markers",
        name=name,
        marker={"size": 1.5, "color": marker_color},
    )


def _rgb(c) -> str:
    r, g, b = (np.clip(np.asarray(c, dtype=np.float64)[:3], 0, 1) * 255).round().astype(int)
    return f"rgb({r},{g},{b})"


def scene_figure(items: Mapping, title: str = "", **kwargs) -> go.Figure:
    """One 3-D scene with equal axis scales."""
    fig = go.Figure(scene_traces(items, **kwargs))
    fig.update_layout(
        title=title,
        scene={"aspectmode": "data"},
        margin={"l": 0, "r": 0, "b": 0},
        legend={"itemsizing": "constant"},
    )
    return fig


def save_scene_html(path: str | Path, items: Mapping, title: str = "", **kwargs) -> Path:
    """Write a self-contained HTML page (plotly.js inlined: it opens offline) of the scene."""
    html = scene_figure(items, title, **kwargs).to_html(include_plotlyjs=True, full_html=True)
    with atomic_write(path, "w") as handle:
        handle.write(html)
    return Path(path)


def image_grid(
    images: Sequence, ncols: int | None = None, pad: int = 2, background: float = 1.0
) -> np.ndarray:
    """Tile images (H, W, 3) or (H, W) float in [0, 1] (sizes may differ) into one float image."""
    arrays = [_as_rgb(np.asarray(im, dtype=np.float32)) for im in images]
    if not arrays:
        raise ValueError("image_grid needs at least one image")
    ncols = ncols or int(np.ceil(np.sqrt(len(arrays))))
    nrows = int(np.ceil(len(arrays) / ncols))
    cell_h = max(a.shape[0] for a in arrays)
    cell_w = max(a.shape[1] for a in arrays)
    grid = np.full(
        (nrows * (cell_h + pad) + pad, ncols * (cell_w + pad) + pad, 3),
        background,
        dtype=np.float32,
    )
    for k, a in enumerate(arrays):
        top = pad + (k // ncols) * (cell_h + pad)
        left = pad + (k % ncols) * (cell_w + pad)
        grid[top : top + a.shape[0], left : left + a.shape[1]] = a
    return np.clip(grid, 0, 1)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def save_image_grid(path: str | Path, images: Sequence, ncols: int | None = None) -> Path:
    """Write :func:`image_grid` as an 8-bit PNG."""
    from geomkit.io.images import write_image

    write_image(path, image_grid(images, ncols))
    return Path(path)
