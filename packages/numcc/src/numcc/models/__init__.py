"""NU-MCC and MCC with the authors' module names, so their checkpoints load strictly
(:mod:`numcc.checkpoints`).

``NUMCC(args)`` and ``MCC(args)`` take the original's flags (:mod:`numcc.args`); ``ModelSizes``
shrinks them for tests. Both split into ``encode`` (once per object) and ``decode`` (per chunk
of queries), as evaluation runs them.
"""

from numcc.models.decoder_anchor import Anchors, DecoderPredictCenters
from numcc.models.decoder_feature import CrossTransformerBlock, FeatureAggregator, SeenPixels
from numcc.models.encoder import MCCEncoder, XYZPosEmbed
from numcc.models.layers import PUBLISHED, ModelSizes
from numcc.models.mcc import MCC
from numcc.models.nu_mcc import NUMCC, Encoding

MODELS = {"numcc": NUMCC, "mcc": MCC}


def build_model(args, sizes: ModelSizes = PUBLISHED):
    """The model ``args.model`` names (numcc by default), built from ``args``."""
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
    "SeenPixels",
    "XYZPosEmbed",
    "build_model",
]
