"""NU-MCC's web demo: one image with its depth and object mask (e.g. a generated picture and
a monocular depth estimate) to a coloured point cloud.

    python -m numcc.demo_web --image im.png --depth depth.png --seg seg.png \
        --checkpoint pretrained/udf-ep99.pth --output demo/output [--fov 35]

The depth PNG's raw values are ray lengths of a pinhole camera with a --fov degrees horizontal
field of view (numcc.demo_inputs); the outputs are numcc.demo_viz's.
"""

from __future__ import annotations

from geomkit.errors import run_main
from numcc.demo_inputs import web_inputs
from numcc.demo_viz import demo_parser, run_demo


def main(argv=None) -> int:
    parser = demo_parser("python -m numcc.demo_web", __doc__.splitlines()[0])
    parser.add_argument("--image", default="demo/web/gudetama/im.png", help="input image file")
    parser.add_argument("--depth", default="demo/web/gudetama/depth.png", help="input depth file")
    parser.add_argument("--seg", default="demo/web/gudetama/seg.png", help="input seg file")
    parser.add_argument(
        "--fov", default=35.0, type=float, help="field of view for depth to point cloud"
    )
    args = parser.parse_args(argv)
    return run_demo(args, lambda size: web_inputs(args.image, args.depth, args.seg, args.fov, size))


if __name__ == "__main__":
    run_main(main)
