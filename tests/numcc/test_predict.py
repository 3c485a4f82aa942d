"""Coloured points from a decoder: an analytic decoder stands in for the network."""

from __future__ import annotations

import torch

from numcc.args import get_args_parser
from numcc.predict import colours, predict_occupancy, predict_udf
from numcc.udf import evaluation_grid

BINS = torch.tensor([200, 100, 50])


def sphere_decoder(points: torch.Tensor) -> torch.Tensor:
    """Channel 0: distance to the unit sphere; colour logits peaked at BINS."""
    logits = torch.zeros(len(points), 3, 256)
    logits[:, torch.arange(3), BINS] = 5.0
    return torch.cat([(points.norm(dim=1, keepdim=True) - 1).abs(), logits.reshape(-1, 768)], 1)


def test_udf_prediction_lands_on_the_surface_with_its_colour():
    args = get_args_parser().parse_args(["--n_query_udf", "20000"])
    points, rgb = predict_udf(sphere_decoder, evaluation_grid(), args)
    assert len(points) > 5000
    assert ((points.norm(dim=1) - 1).abs() < 0.06).all()  # one clamped push off at most
    torch.testing.assert_close(rgb, (BINS.float() / 255).expand_as(rgb))


def test_occupancy_prediction_and_colour_modes():
    def occupancy_decoder(points):
        out = sphere_decoder(points)
        out[:, 0] = 10 * (1 - points.norm(dim=1))  # logit, positive inside
        return out

    args = get_args_parser().parse_args(["--geo", "occ"])
    points, rgb = predict_occupancy(occupancy_decoder, evaluation_grid(), args)
    assert (points.norm(dim=1) < 1.05).all() and len(points) > 3000  # 4/3 pi / 0.001 = 4189
    logits = torch.zeros(1, 3, 256)
    logits[0, :, 10], logits[0, :, 20] = 5.0, 5.0  # two equal peaks: expectation between them
    expected = torch.full((1, 3), 15 / 255)
    torch.testing.assert_close(
        colours(logits.reshape(1, -1), "expectation"), expected, atol=1e-3, rtol=0
    )
    assert colours(logits.reshape(1, -1))[0, 0] == 10 / 255  # argmax: the first peak


def test_colours_stay_on_the_logits_device():
    """MCC's expectation colour on a GPU failed (CPU bin levels); the meta device stands in."""
    for mode in ("argmax", "expectation"):
        assert colours(torch.zeros(2, 768, device="meta"), mode).device.type == "meta"


def test_the_uniform_repulsion_flags_reach_the_extraction():
    """--repel all --udf_final_projection 1 --udf_push_spacing 0.3 (numcc.udf's even setting)
    puts the points on the surface; the original's flags leave them one push off."""
    common = ["--n_query_udf", "20000"]
    original = get_args_parser().parse_args(common)
    even = get_args_parser().parse_args(
        [*common, "--repel", "all", "--udf_final_projection", "1", "--udf_push_spacing", "0.3"]
    )
    off = (predict_udf(sphere_decoder, evaluation_grid(), original)[0].norm(dim=1) - 1).abs()
    on = (predict_udf(sphere_decoder, evaluation_grid(), even)[0].norm(dim=1) - 1).abs()
    assert off.mean() > 0.01 and on.max() < 1e-5
