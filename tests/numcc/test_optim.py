"""NU-MCC's learning-rate rule, schedule and weight-decay groups."""

from __future__ import annotations

import math

import pytest
import torch

from numcc.args import get_args_parser
from numcc.optim import absolute_lr, build_optimizer, lr_at, set_lr


def test_lr_rule_and_schedule():
    args = get_args_parser().parse_args([])
    lr = absolute_lr(args, world_size=4)
    assert lr == pytest.approx(1e-4)  # 4 GPUs x 16 x 8 = 512: the paper's setting
    assert absolute_lr(get_args_parser().parse_args(["--lr", "3e-4"]), 4) == 3e-4
    assert lr_at(0.0, args, lr) == 0 and lr_at(2.5, args, lr) == pytest.approx(lr / 2)
    assert lr_at(5.0, args, lr) == pytest.approx(lr)
    assert lr_at(52.5, args, lr) == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_at(100.0, args, lr) == pytest.approx(0.0, abs=1e-15)


def test_no_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    args = get_args_parser().parse_args([])
    optimizer = build_optimizer(model, args, 1e-3)
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(model[0].weight), id(model[2].weight)}
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    set_lr(optimizer, 5e-5)
    assert all(g["lr"] == 5e-5 for g in optimizer.param_groups)
