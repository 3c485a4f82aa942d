"""The CBN decoder folded for one object: the decoder's logits to float rounding, and the same
generated mesh as the unfolded network."""

from __future__ import annotations

import pytest
import torch

from onet.config import load_config
from onet.generation import Generator3D
from onet.models import build_model
from onet.models.folded import FoldedDecoder, foldable
from tests.helpers import assert_close


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter and batch-norm statistic random (the authors' init zeroes the residual
    branches and the CBN weights, which would hide folding mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            scale = 3.0 if "fc_p" in name else 0.1 if name.endswith("bias") else 0.06
            tensor.copy_(values if "running" in name else scale * values)
    return model.eval()


def decoder_model(legacy: bool, z_dim: int, leaky: bool, seed: int):
    cfg = load_config("configs/img/onet.yaml")
    cfg["model"]["z_dim"] = z_dim
    cfg["model"]["encoder_latent"] = "simple" if z_dim else None
    cfg["model"]["decoder_kwargs"] = {"legacy": legacy, "leaky": leaky}
    return randomised(build_model(cfg), seed)


@pytest.mark.parametrize(
    "legacy, z_dim, leaky", [(False, 0, False), (True, 0, False), (False, 16, True)]
)
def test_folded_decoder_gives_the_decoders_logits(legacy, z_dim, leaky):
    model = decoder_model(legacy, z_dim, leaky, seed=3)
    assert foldable(model)
    z, c = torch.randn(1, z_dim), torch.randn(1, 256)
    points = torch.rand(1, 3000, 3) - 0.5
    with torch.no_grad():
        expected = model.decode(points, z, c)[0]
    folded = FoldedDecoder(model.decoder, z, c)(points[0])
    assert float(expected.std()) > 0.3  # the random network varies over the points
    assert_close(folded, expected, atol=1e-4 * float(expected.abs().max()), what="folded logits")


def test_training_mode_is_not_folded():
    model = decoder_model(False, 0, False, seed=4).train()
    assert not foldable(model)
    with pytest.raises(ValueError, match="eval mode"):
        FoldedDecoder(model.decoder, torch.empty(1, 0), torch.randn(1, 256))


def test_generator_gives_the_same_mesh_folded_or_not():
    model = decoder_model(False, 0, False, seed=5)
    inputs = {"inputs": torch.rand(1, 3, 224, 224)}
    with torch.no_grad():
        c = model.encode_inputs(inputs["inputs"])
        logits = model.decode(torch.rand(1, 4000, 3) - 0.5, torch.empty(1, 0), c)
    threshold = float(torch.sigmoid(logits.median()))  # a level set crossing the box
    meshes = {}
    for fold in (True, False):
        generator = Generator3D(
            model, threshold=threshold, resolution0=16, upsampling_steps=2, fold=fold
        )
        meshes[fold], stats = generator.generate_mesh(inputs)
    assert len(meshes[True].faces) > 500
    assert meshes[True].faces.shape == meshes[False].faces.shape
    assert (meshes[True].faces == meshes[False].faces).all()  # the same cells cross the surface
    # A vertex moves by the logit's rounding difference over the field's gradient, which this
    # random network makes small in places: 5e-6 on most vertices, up to ~3e-5 on a few.
    assert_close(meshes[True].vertices, meshes[False].vertices, atol=1e-4, what="vertices")
