"""Plotly pages, PNG grids, TensorBoard and the text log."""

from __future__ import annotations

import numpy as np

from geomkit.io import read_image
from geomkit.log import Board, progress, text_logger
from geomkit.structures import PointCloud, TriMesh
from geomkit.viz import image_grid, save_image_grid, save_scene_html


def test_scene_html_is_self_contained_and_names_every_item(tmp_path):
    mesh = TriMesh(np.eye(3), np.array([[0, 1, 2]]))
    cloud = PointCloud(
        np.random.default_rng(0).normal(size=(80_000, 3)), colors=np.full((80_000, 3), 0.5)
    )
    path = save_scene_html(
        tmp_path / "view.html", {"a mesh": mesh, "a cloud": cloud}, title="scene", max_points=1000
    )
    html = path.read_text()
    assert "a mesh" in html and "a cloud" in html and "scene" in html
    assert len(html) > 3_000_000 and '<script src="http' not in html  # plotly.js inlined
    assert '"type":"mesh3d"' in html and '"type":"scatter3d"' in html
    assert html.count("rgb(128,128,128)") == 1000  # the subsampled cloud keeps its colours


def test_image_grid_layout_and_png(tmp_path):
    images = [np.full((4, 6, 3), v, np.float32) for v in (0.0, 0.5, 1.0)] + [np.zeros((2, 2))]
    grid = image_grid(images, ncols=2, pad=1)
    assert grid.shape == (2 * (4 + 1) + 1, 2 * (6 + 1) + 1, 3)
    assert grid[1, 1, 0] == 0.0 and grid[1, 8, 0] == 0.5 and grid[6, 1, 0] == 1.0
    assert grid[0, 0, 0] == 1.0  # padding is white
    save_image_grid(tmp_path / "grid.png", images, ncols=2)
    assert read_image(tmp_path / "grid.png").shape == image_grid(images, ncols=2).shape


def test_board_and_text_log(tmp_path):
    board = Board(tmp_path / "tb")
    board.scalars({"loss": 0.5}, step=3, prefix="train/")
    board.image("render", np.zeros((8, 8, 3)), step=3)
    board.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    logger = text_logger(tmp_path / "run")
    logger.info("step 3 loss 0.5")
    for handler in logger.handlers:
        handler.flush()
    assert "step 3 loss 0.5" in (tmp_path / "run" / "log.txt").read_text()
    assert list(progress(range(3), desc="x")) == [0, 1, 2]
