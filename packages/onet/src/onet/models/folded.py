"""The conditional batch-norm decoder folded for one object, for fast mesh generation.

In eval mode each conditional batch norm is an affine map per feature once c is fixed:
``gamma(c) * (x - mean) / sqrt(var + eps) + beta(c) = a * x + b``. For one object this module
precomputes those maps, folds each one that follows a 1x1 conv into that conv's weights, carries
the residual convs' biases forward into the next map, and runs the points as plain matrix
products (N, H) instead of (1, H, N) convolutions. Same function as the decoder, to float
rounding; no gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from onet.models.decoders import DecoderCBatchNorm
from onet.models.layers import CBatchNorm1d


def foldable(model: nn.Module) -> bool:
    """Whether ``model.decoder`` can be folded (a CBN decoder, in eval mode)."""
    decoder = getattr(model, "decoder", None)
    return isinstance(decoder, DecoderCBatchNorm) and not decoder.training


def _affine(cbn: nn.Module, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b), each (H,), with cbn(x, c) == a * x + b in eval mode, for c (1, C)."""
    if isinstance(cbn, CBatchNorm1d):
        gamma = cbn.conv_gamma(c[:, :, None])[0, :, 0]
        beta = cbn.conv_beta(c[:, :, None])[0, :, 0]
    else:  # the legacy layout: Linear gamma/beta
        gamma, beta = cbn.fc_gamma(c)[0], cbn.fc_beta(c)[0]
    bn = cbn.bn
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    return scale, beta - scale * bn.running_mean


def _weight(conv: nn.Conv1d) -> torch.Tensor:
    """A 1x1 conv's weight as the (in, out) matrix of ``x @ W``."""
    return conv.weight[:, :, 0].t()


class FoldedDecoder(nn.Module):
    """``decoder(p, z, c)`` for one fixed (z, c), on points (N, dim) -> logits (N,).

    Args:
        decoder: a :class:`DecoderCBatchNorm` in eval mode (current or legacy CBN layout).
        z: (1, z_dim) latent code (z_dim may be 0).
        c: (1, c_dim) conditioning code.
    """

    def __init__(self, decoder: DecoderCBatchNorm, z: torch.Tensor, c: torch.Tensor):
        super().__init__()
        if decoder.training:
            raise ValueError("fold the decoder in eval mode (batch norm uses running statistics)")
        self.activation = decoder.actvn  # the final one; the blocks' are ReLU (leaky or not)
        with torch.no_grad():
            self.in_weight = _weight(decoder.fc_p).contiguous()
            in_bias = decoder.fc_p.bias.clone()
            if decoder.z_dim:
                in_bias += decoder.fc_z(z)[0]
            self.in_bias = in_bias
            self.blocks = []
            shift = torch.zeros_like(in_bias)  # residual biases not yet added to the stream
            for k in range(5):
                block = getattr(decoder, f"block{k}")
                a0, b0 = _affine(block.bn_0, c)
                a1, b1 = _affine(block.bn_1, c)
                hidden_weight = (_weight(block.fc_0) * a1).contiguous()
                hidden_bias = a1 * block.fc_0.bias + b1
                self.blocks.append(
                    (
                        a0,
                        b0 + a0 * shift,
                        hidden_weight,
                        hidden_bias,
                        _weight(block.fc_1).contiguous(),
                    )
                )
                shift = shift + block.fc_1.bias
            a, b = _affine(decoder.bn, c)
            self.out_scale, self.out_shift = a, b + a * shift
            self.out_weight = _weight(decoder.fc_out).contiguous()
            self.out_bias = decoder.fc_out.bias.clone()

    @torch.no_grad()
    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """Logits (N,) of points p (N, dim)."""
        net = torch.addmm(self.in_bias, p, self.in_weight)
        for scale, shift, hidden_weight, hidden_bias, out_weight in self.blocks:
            hidden = torch.addcmul(shift, net, scale).relu_()
            hidden = torch.addmm(hidden_bias, hidden, hidden_weight).relu_()
            net.addmm_(hidden, out_weight)
        features = self.activation(torch.addcmul(self.out_shift, net, self.out_scale))
        return torch.addmm(self.out_bias, features, self.out_weight)[:, 0]
