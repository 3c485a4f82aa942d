"""NU-MCC and MCC with the authors' module names, so their checkpoints load strictly
(:mod:`numcc.checkpoints`).

``NUMCC(args)`` and ``MCC(args)`` take the original's flags (:mod:`numcc.args`); ``ModelSizes``
shrinks them for tests. Both split into ``encode`` (once per object) and ``decode`` (per chunk
of queries), as evaluation runs them.
"""

from numcc.models.decoder_anchor import Anchors, DecoderPredictCenters
from numcc.models.decoder_feature import CrossTransformerBlock, FeatureAggregator, SeenPixels
from numcc.models.encoder import MCCEncoder, XYZPosEmbed
from numcc.models.layers import PUBLISHED, SIZES, ModelSizes
from numcc.models.mcc import MCC
from numcc.models.nu_mcc import NUMCC, Encoding

MODELS = {"numcc": NUMCC, "mcc": MCC}


def build_model(args, sizes: ModelSizes | None = None):
    """The model ``args.model`` names (numcc by default), built from ``args``, at ``sizes``
    (default: the preset ``args.model_size`` names, the published model without one)."""
    if sizes is None:
        sizes = SIZES[getattr(args, "model_size", None) or "base"]
    return MODELS[getattr(args, "model", "numcc")](args, sizes)


__all__ = [
    "MCC",
    "MODELS",
    "NUMCC",
    "Anchors",
    "CrossTransformerBlock",
    "DecoderPredictCenters",
    "Encoding",
    "FeatureAggregator",
    "MCCEncoder",
    "ModelSizes",
    "PUBLISHED",
    "SIZES",
    "SeenPixels",
    "XYZPosEmbed",
    "build_model",
]
