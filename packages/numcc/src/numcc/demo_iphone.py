"""NU-MCC's iPhone demo: a Record3D capture (its 640 x 480 point cloud as OBJ, the image and
an object mask) to a coloured point cloud.

    python -m numcc.demo_iphone --image im.jpg --point_cloud pc.obj --seg seg.png \
        --checkpoint pretrained/udf-ep99.pth --output demo/output

The OBJ's vertices are the capture's depth pixels, rows first (numcc.demo_inputs); an export
at another resolution is refused (MCC issue #7). The outputs are numcc.demo_viz's.
"""

from __future__ import annotations

from geomkit.errors import run_main
from numcc.demo_inputs import iphone_inputs
from numcc.demo_viz import demo_parser, run_demo


def main(argv=None) -> int:
    parser = demo_parser("python -m numcc.demo_iphone", __doc__.splitlines()[0])
    parser.add_argument("--image", default="demo/iphone/luggage/im.jpg", help="input image file")
    parser.add_argument(
        "--point_cloud", default="demo/iphone/luggage/pc.obj", help="input obj file"
    )
    parser.add_argument(
        "--seg", default="demo/iphone/luggage/seg.png", help="input segmentation file"
    )
    args = parser.parse_args(argv)
    return run_demo(args, lambda size: iphone_inputs(args.image, args.point_cloud, args.seg, size))


if __name__ == "__main__":
    run_main(main)
