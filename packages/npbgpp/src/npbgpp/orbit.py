"""An orbit around a fitted scene: cameras, and the frames written as PNGs and an animated GIF.

    python -m npbgpp.orbit RUN_DIR [--frames 36] [--size H W]

The orbit follows the scene's own cameras: it circles the point cloud's centre at their median
distance and mean elevation, about their mean up direction, with their median intrinsics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from geomkit.cameras import Cameras, from_opengl_c2w
from geomkit.errors import ArgumentParser, run_main
from geomkit.io.files import prepare_output_dir
from geomkit.io.images import write_image
from geomkit.synth.camera_paths import look_at_c2w_opengl


def orbit_cameras(cameras: Cameras, points: torch.Tensor, n_frames: int = 36) -> Cameras:
    """``n_frames`` cameras on a circle around ``points`` (P, 3), set from ``cameras``."""
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    centre = points.double().median(dim=0).values
    eyes = cameras.camera_center().double() - centre
    radius = eyes.norm(dim=1).median()
    # X_view = X_world @ R: the world direction of view +Y (up) is R's second column
    up = cameras.R.double()[:, :, 1].mean(0)
    up = up / up.norm()
    elevation = torch.asin((eyes / eyes.norm(dim=1, keepdim=True) @ up).clamp(-1, 1)).mean()
    first = eyes[0] - (eyes[0] @ up) * up
    first = first / first.norm()
    second = torch.linalg.cross(up, first)
    angles = torch.arange(n_frames, dtype=torch.float64) * (2 * math.pi / n_frames)
    ring = torch.cos(angles)[:, None] * first + torch.sin(angles)[:, None] * second
    eyes_out = centre + radius * (torch.cos(elevation) * ring + torch.sin(elevation) * up)
    c2w = look_at_c2w_opengl(eyes_out.numpy(), target=centre.numpy(), up=up.numpy())
    size = cameras.image_size[0]
    focal = cameras.focal_length.double().median(dim=0).values
    principal = cameras.principal_point.double().median(dim=0).values
    dtype = cameras.dtype
    return from_opengl_c2w(
        torch.as_tensor(c2w, dtype=dtype),
        focal.to(dtype).expand(n_frames, 2),
        principal.to(dtype).expand(n_frames, 2),
        size.expand(n_frames, 2),
    )


def write_orbit(
    render: Callable[[Cameras], torch.Tensor],
    cameras: Cameras,
    folder: str | Path,
    fps: int = 12,
) -> tuple[list[Path], Path, list[float]]:
    """Render each camera with ``render`` (one camera -> (3, H, W) in [0, 1]) and write
    ``frame_%03d.png`` and ``orbit.gif`` into ``folder``. Returns the PNGs, the GIF and the
    render time of each frame in seconds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames, paths, seconds = [], [], []
    for i in range(len(cameras)):
        start = time.perf_counter()
        with torch.no_grad():
            image = render(cameras[i]).clamp(0, 1)
        seconds.append(time.perf_counter() - start)
        frame = (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        path = folder / f"frame_{i:03d}.png"
        write_image(path, frame)
        frames.append(frame)
        paths.append(path)
    gif = folder / "orbit.gif"
    iio.imwrite(gif, np.stack(frames), duration=1000 / fps, loop=0)
    return paths, gif, seconds


def summary_line(seconds: Sequence[float], image_size: Sequence[int]) -> str:
    """One line: median render time per frame and frames per second."""
    median = float(np.median(seconds))
    height, width = (int(v) for v in image_size)
    return (
        f"orbit: {len(seconds)} frames at {width}x{height}, "
        f"{median * 1000:.1f} ms per frame ({1 / median:.1f} fps)"
    )


def parse_args(argv=None):
    parser = ArgumentParser(
        prog="python -m npbgpp.orbit",
        description="Render an orbit around a fitted scene: PNG frames, an animated GIF and the "
        "render time per frame.",
    )
    parser.add_argument("run_dir", type=Path, help="a train_net run folder (hydra.run.dir)")
    parser.add_argument("--checkpoint", type=Path, help="default: RUN_DIR/checkpoints/last.ckpt")
    parser.add_argument("--scene", help="scene name (default: the run's first test scene)")
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="frame size")
    parser.add_argument("--out", type=Path, help="default: RUN_DIR/orbit/<scene>")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier orbit")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from npbgpp.viewer import load_run

    run = load_run(args.run_dir, args.checkpoint, args.scene)
    cameras = orbit_cameras(run.scene.cameras, run.scene.points, args.frames)
    if args.size:
        cameras = resized(cameras, tuple(args.size))
    out = prepare_output_dir(args.out or args.run_dir / "orbit" / run.scene.name, args.overwrite)
    _, gif, seconds = write_orbit(lambda camera: run.render(camera), cameras, out)
    print(summary_line(seconds, tuple(int(v) for v in cameras.image_size[0])))
    print(f"wrote {len(seconds)} frames and {gif}")
    return 0


def resized(cameras: Cameras, size: tuple[int, int]) -> Cameras:
    """The same cameras rendering (H, W) pixels: intrinsics scaled with the image."""
    height, width = cameras.image_size[0].tolist()
    scale = torch.tensor([size[1] / width, size[0] / height], dtype=cameras.dtype)
    return Cameras(
        cameras.R, cameras.T, cameras.focal_length * scale, cameras.principal_point * scale,
        torch.tensor(size).expand(len(cameras), 2),
    )  # fmt: skip


if __name__ == "__main__":
    run_main(main)
