"""A trained model back from its checkpoint, for sampling and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..processes import ForwardProcess
from . import checkpoint
from .config import TrainConfig


@dataclass
class Trained:
    model: torch.nn.Module
    process: ForwardProcess
    config: TrainConfig
    image_shape: tuple[int, int, int]
    step: int
    run_dir: Path


def load_trained(path, *, weights: str = "ema", device="cpu") -> Trained:
    """The model (``weights`` "ema" or "model") of a run folder's latest checkpoint or of
    a checkpoint directory, in eval mode on ``device``."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    found = checkpoint.resolve(path)
    tensors, state = checkpoint.load(found)
    config = TrainConfig.from_json(state["config"])
    image_shape = tuple(state["image_shape"])
    model = config.build_model(image_shape)
    model.load_state_dict(tensors[weights])
    model.to(device).eval()
    return Trained(
        model, config.build_process(), config, image_shape, state["step"], found.parent.parent
    )
