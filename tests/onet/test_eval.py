"""python -m onet.eval: the network's test-split metrics, checked against a direct computation."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch

from geomkit.errors import OutputExistsError
from geomkit.metrics import occupancy_iou
from onet import eval as onet_eval
from onet import train
from onet.checkpoints import load_model_weights
from onet.config import apply_overrides, load_config
from onet.data import build_dataset
from onet.models import build_model
from tests.helpers import assert_close
from tests.onet.conftest import TINY_MODEL, tiny_args


def tiny_config(dataset) -> dict:
    overrides = [*TINY_MODEL, f"data.path={dataset}"]
    return apply_overrides(load_config("configs/img/onet.yaml"), overrides)


def test_eval_writes_per_object_and_class_tables_that_match_the_network(tiny_shapenet, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(tiny_shapenet, out)
    assert train.main([*args, "--max-iterations", "3"]) == 0
    argv = [args[0], "--no-cuda", *args[3:], "--checkpoint", str(out / "model.pt")]
    assert onet_eval.main(argv) == 0

    rows = pickle.loads((out / "eval_full.pkl").read_bytes())
    cfg = tiny_config(tiny_shapenet)
    dataset = build_dataset(cfg, "test")
    assert [r["modelname"] for r in rows] == [m["model"] for m in dataset.models]
    model = build_model(cfg)
    load_model_weights(model, out / "model.pt")
    model.eval()
    for row, item in zip(rows, (dataset[i] for i in range(len(dataset))), strict=True):
        with torch.no_grad():
            logits = model(torch.as_tensor(item["points_iou"])[None], item["inputs"][None])
        predicted = torch.sigmoid(logits[0]).numpy() >= cfg["test"]["threshold"]
        expected = occupancy_iou(predicted, np.asarray(item["points_iou.occ"]) >= 0.5)
        assert_close(row["iou"], expected, atol=1e-12, what=row["modelname"])
        assert {"loss", "rec_error", "kl", "iou_voxels", "class name"} <= set(row)

    with open(out / "eval.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["class name"] for r in table][-1] == "mean"
    class_iou = [float(r["iou"]) for r in table[:-1]]
    assert_close(float(table[-1]["iou"]), np.mean(class_iou), rtol=1e-12, what="mean of classes")

    with pytest.raises(OutputExistsError, match="--overwrite"):
        onet_eval.main(argv)
    assert onet_eval.main([*argv, "--overwrite"]) == 0
