"""ONet checkpoints: the authors' layout, strict loading, and ImageNet weights for the encoders.

Files hold ``model`` (the state dict), ``optimizer``, ``epoch_it``, ``it`` and ``loss_val_best``
as the authors' ``model.pt`` / ``model_best.pt`` do, so their files load here and ours load in
im2mesh; ours add ``rng`` (and ``step``) so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from efficientnet_pytorch.utils import url_map as EFFICIENTNET_URLS
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights

from geomkit.checkpoint import (
    load_checkpoint,
    load_state_dict_strict,
    restore_training_state,
    save_checkpoint,
    training_state,
    unwrap,
)
from geomkit.errors import CheckpointError
from geomkit.weights import find_weight_file, torchvision_weight_file
from onet.models.encoders import EfficientNetEncoder, Resnet18, Resnet50
from onet.noisypixel import LIGHTNING_GLOBALS, is_lightning, load_lightning_weights

# The files torchvision names resnet18-f37072fd.pth and resnet50-0676ba61.pth; pass the older
# resnet18-5c106cde.pth / resnet50-19c8e357.pth explicitly if that is the one you have.
RESNET_WEIGHTS = {
    Resnet18: ResNet18_Weights.IMAGENET1K_V1,
    Resnet50: ResNet50_Weights.IMAGENET1K_V1,
}


def load_imagenet_encoder(model: nn.Module, path: str | Path | None = None) -> Path:
    """Load ImageNet weights into the image encoder's ``features``, leaving its new ``fc`` /
    ``_fc`` as initialised (the 1000-way classifier is dropped, as ONet and project-noisypixel
    replaced it). ``path`` None: the file's download name in the weight folders
    (:mod:`geomkit.weights`); nothing is downloaded. Returns the file used.

    Raises:
        CheckpointError: the model has no image encoder, or the file is missing or mismatched.
    """
    encoder = unwrap(model).encoder
    if isinstance(encoder, EfficientNetEncoder):
        return _load_efficientnet(encoder, path)
    if type(encoder) not in RESNET_WEIGHTS:
        names = "resnet18, resnet-18, resnet-50, efficientnet-b0/b1/b5/b7"
        raise CheckpointError(f"ImageNet weights need an image encoder ({names})")
    file = torchvision_weight_file(RESNET_WEIGHTS[type(encoder)], path)
    state = load_checkpoint(file)
    load_state_dict_strict(
        encoder.features, state, rules=[(r"fc\.", None)], source=f"ImageNet weights {file}"
    )
    return file


def _load_efficientnet(encoder: EfficientNetEncoder, path: str | Path | None) -> Path:
    """efficientnet_pytorch's ImageNet file (its download name, e.g. efficientnet-b0-355c32eb.pth)
    into ``encoder.features``: every key but ``_fc.*``, strictly."""
    url = EFFICIENTNET_URLS[f"efficientnet-{encoder.variant}"]
    source = f"efficientnet_pytorch's ImageNet weights for efficientnet-{encoder.variant} ({url})"
    file = find_weight_file(path, url.rsplit("/", 1)[-1], source)
    features = encoder.features
    state = {k: v for k, v in load_checkpoint(file).items() if not k.startswith("_fc.")}
    state.update({f"_fc.{k}": v for k, v in features._fc.state_dict().items()})
    load_state_dict_strict(features, state, source=f"ImageNet weights {file}")
    return file


def load_model_weights(model: nn.Module, path: str | Path) -> dict:
    """Load the ``model`` entry of a checkpoint (the authors' or ours) strictly; returns the
    whole checkpoint. A bare state dict (no ``model`` entry) is accepted too, and so is a
    project-noisypixel Lightning ``.ckpt`` (see :mod:`onet.noisypixel`)."""
    checkpoint = load_checkpoint(path, extra_safe_globals=LIGHTNING_GLOBALS)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} is not a dict")
    if is_lightning(checkpoint):
        load_lightning_weights(model, checkpoint, f"checkpoint {path}")
        return checkpoint
    state = checkpoint.get("model", checkpoint)
    load_state_dict_strict(unwrap(model), state, source=f"checkpoint {path}")
    return checkpoint


def save_training(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch_it: int,
    it: int,
    metric_val_best: float,
) -> None:
    """Everything needed to resume, in the authors' layout plus the RNG states."""
    state = training_state(
        model, optimizer, step=it, epoch_it=epoch_it, it=it, loss_val_best=float(metric_val_best)
    )
    save_checkpoint(path, state)


def restore_training(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, int, float]:
    """Resume from ``path``: returns (epoch_it, it, metric_val_best)."""
    checkpoint = load_checkpoint(path)
    for key in ("model", "optimizer", "epoch_it", "it", "loss_val_best"):
        if key not in checkpoint:
            raise CheckpointError(f"checkpoint {path} has no {key!r} to resume from")
    restore_training_state(checkpoint, model, optimizer, source=f"checkpoint {path}")
    return int(checkpoint["epoch_it"]), int(checkpoint["it"]), float(checkpoint["loss_val_best"])


def resolve_model_file(cfg: dict, given: str | None) -> Path:
    """The model file to load: ``given``, else test.model_file resolved as the authors'
    CheckpointIO does (relative names inside training.out_dir).

    Raises:
        CheckpointError: the file does not exist, or test.model_file is a URL.
    """
    out_dir = Path(cfg["training"]["out_dir"])
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path} (given with --checkpoint)")
        return path
    name = str(cfg["test"]["model_file"])
    if name.startswith(("http://", "https://")):
        raise CheckpointError(
            f"test.model_file is a URL ({name}); nothing is downloaded here: download the file, "
            f"put it in {out_dir} and set test.model_file to its name, or pass --checkpoint PATH"
        )
    path = Path(name).expanduser()
    if not (path.is_absolute() or path.exists()):
        path = out_dir / path
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path} (test.model_file {name!r}, looked up in "
            f"training.out_dir {str(out_dir)!r}); train a model first, put the file there, "
            "or pass --checkpoint PATH"
        )
    return path
