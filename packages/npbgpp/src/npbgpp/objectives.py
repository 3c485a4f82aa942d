"""The systems' training objectives, from the ``system`` config (see :mod:`npbgpp.losses`).

NPBG++: 1 VGG + 2500 L1(/4) + 1 dimred + 1000 rgb_reg, where rgb_reg asks the refiner to
rebuild the target from its own features (a randomly thinned pyramid of them); NPBG: the same
without rgb_reg; coefficients_ft: its ``loss_factors``. The render's ``empty`` pixels (outside
the warped target, ScanNet's margin) are taken from the target first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from npbgpp import losses as L


@dataclass
class Objectives:
    perceptual: nn.Module
    factors: dict[str, float]

    @classmethod
    def from_config(cls, cfg: DictConfig, absolute: Callable) -> Objectives:
        system = cfg.system
        weights = system.get("vgg_weights_path")
        perceptual = L.build_perceptual_loss(
            system.get("perceptual_loss", "vgg"), absolute(weights) if weights else None
        )
        return cls(
            perceptual.eval().requires_grad_(False), L.loss_factors(system.get("loss_factors"))
        )

    def to(self, device) -> Objectives:
        self.perceptual.to(device)
        return self

    def _terms(self, system, rendered, target: dict) -> dict[str, torch.Tensor]:
        image = target["image"][None]
        empty = target["empty"][None]
        terms = L.image_losses(rendered.image, image, empty, self.perceptual, self.factors)
        terms["dimred_loss"] = rendered.dimred_loss
        return terms

    def npbg(self, system, rendered, target: dict) -> dict[str, torch.Tensor]:
        terms = self._terms(system, rendered, target)
        return {"loss": L.weighted_sum(terms, self.factors), **terms}

    def npbgpp(self, system, rendered, target: dict) -> dict[str, torch.Tensor]:
        terms = self._terms(system, rendered, target)
        image = target["image"][None]
        was_training = (system.feature_extractor.training, system.refiner.training)
        system.feature_extractor.eval()
        system.refiner.eval()
        pyramid = L.rgb_reg_pyramid(
            system.feature_extractor(image), system.rasterizer.bg_feature, system.rasterizer.scales
        )
        terms["rgb_reg_loss"] = L.rgb_reg_loss(system.refiner(pyramid), image)
        system.feature_extractor.train(was_training[0])
        system.refiner.train(was_training[1])
        rgb_reg = terms["rgb_reg_loss"]
        loss = L.npbgpp_total_loss(
            {k: v for k, v in terms.items() if k != "rgb_reg_loss"}, self.factors, rgb_reg
        )
        return {"loss": loss, **terms}
