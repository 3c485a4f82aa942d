"""The orbit viewer circles the scene the way its cameras see it and writes PNGs and a GIF."""

from __future__ import annotations

import imageio.v3 as iio
import torch

from geomkit.synth.camera_paths import camera_path
from npbgpp.orbit import orbit_cameras, summary_line, write_orbit


def test_orbit_circles_the_points_at_the_cameras_distance():
    cameras = camera_path("hemisphere", 12, (40, 60), distance=2.5)
    points = torch.randn(500, 3) * 0.1 + torch.tensor([0.2, -0.1, 0.05])
    orbit = orbit_cameras(cameras, points, n_frames=8)
    centre = points.median(dim=0).values
    distances = (orbit.camera_center() - centre).norm(dim=1)
    expected = (cameras.camera_center() - centre).norm(dim=1).median()
    torch.testing.assert_close(distances, expected.expand(8), atol=1e-4, rtol=0)
    uv, depth = orbit.project(centre.expand(8, 1, 3))
    torch.testing.assert_close(uv[:, 0], torch.tensor([30.0, 20.0]).expand(8, 2), atol=1e-3, rtol=0)
    assert bool((depth > 0).all())
    # the hemisphere's cameras look at the object from above: so does the orbit, at their
    # mean elevation above the centre (the world's z is up)
    heights = orbit.camera_center()[:, 2] - centre[2]
    expected_height = (cameras.camera_center()[:, 2] - centre[2]).mean()
    assert float((heights - expected_height).abs().max()) < 0.35 * float(expected)
    assert float(heights.std()) < 0.1 * float(expected)
    steps = (orbit.camera_center()[1:] - orbit.camera_center()[:-1]).norm(dim=1)
    torch.testing.assert_close(steps, steps[0].expand(7), atol=1e-4, rtol=0)


def test_write_orbit_writes_frames_and_gif(tmp_path):
    cameras = camera_path("orbit", 4, (16, 24))

    def render(camera):
        return torch.full((3, 16, 24), float(camera.camera_center()[0, 0]) / 5 + 0.5)

    paths, gif, seconds = write_orbit(render, cameras, tmp_path / "orbit")
    assert [p.name for p in paths] == [f"frame_{i:03d}.png" for i in range(4)]
    frames = iio.imread(gif, index=None)
    assert frames.shape[:3] == (4, 16, 24) and len(seconds) == 4
    assert "4 frames at 24x16" in summary_line(seconds, (16, 24))
