"""A run back from its checkpoint: the trained model for sampling and evaluation
(``load_trained``), the options a resumed run takes from it (``saved_config``), and the
state it continues from (``resume_point``, ``check_resume``, ``load_training_state``).

Every checkpoint is verified as it is read (``checkpoint.load``); a checkpoint whose
state or weights do not fit the model its config describes is a ValueError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..categorical import CategoricalProcess
from ..processes import ForwardProcess
from . import checkpoint, data, distributed
from .config import TrainConfig, check_resume_config


@dataclass
class Trained:
    model: torch.nn.Module
    process: ForwardProcess | CategoricalProcess
    config: TrainConfig
    image_shape: tuple[int, int, int]
    step: int
    run_dir: Path


def load_trained(path, *, weights: str = "ema", device="cpu") -> Trained:
    """The model (``weights`` "ema" or "model") of a run folder's newest intact
    checkpoint or of a checkpoint directory, in eval mode on ``device``."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    found, tensors, state = checkpoint.resolve(path)
    config = config_of(state, found)
    image_shape = (state["image_shape"][0], state["image_shape"][1], state["image_shape"][2])
    model = config.build_model(image_shape)
    _load_weights(model, tensors[weights], found, weights)
    model.to(device).eval()
    return Trained(
        model, config.build_process(), config, image_shape, state["step"], found.parent.parent
    )


def config_of(state: dict, path: Path) -> TrainConfig:
    """The valid TrainConfig a checkpoint's state holds; ValueError naming the checkpoint."""
    try:
        config = TrainConfig.from_json(state["config"])
        config.validate()
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"checkpoint {path} holds a config noisejump cannot use: {error}"
        ) from None
    return config


def saved_config(run_dir) -> dict | None:
    """The config (JSON) of the newest checkpoint of ``run_dir`` whose ``state.json`` is
    intact, or None: what ``train --resume`` takes for the options it is not given.

    Only the state is read (``checkpoint.read_state``): ``resume_point`` verifies the
    tensors and may fall back to an older checkpoint, whose config differs at most in
    the options a resumed run may change (``RESUMABLE_CHANGES``).
    """
    for path in reversed(checkpoint.complete_checkpoints(Path(run_dir))):
        try:
            config = checkpoint.read_state(path)["config"]
        except ValueError:  # damaged (CheckpointDamaged) or of an unknown format
            continue
        return dict(config)
    return None


def resume_point(run_dir: Path, world: distributed.World) -> tuple[Path, dict, dict]:
    """(path, tensors, state) of the newest intact checkpoint of ``run_dir``. Rank 0 (the
    one writer) first removes stale temporaries and sets aside incomplete and damaged
    step directories; the others read after it."""
    if world.is_main:
        checkpoint.remove_temporaries(run_dir)
        checkpoint.set_aside_incomplete(run_dir)
        found = checkpoint.newest_intact(run_dir, set_aside=True)
    distributed.barrier(world)
    if not world.is_main:
        found = checkpoint.newest_intact(run_dir, set_aside=False)
    if found is None:
        damaged = sorted(p.name for p in checkpoint.checkpoint_dir(run_dir).glob("damaged-*"))
        detail = f" ({len(damaged)} damaged, set aside: {', '.join(damaged)})" if damaged else ""
        raise ValueError(f"--resume: no complete checkpoint in {str(run_dir)!r}{detail}")
    return found


def check_resume(
    state: dict, config: TrainConfig, path: Path, fingerprint: dict | None, allow_changed_data: bool
) -> TrainConfig:
    """The config the resumed run trains with; ValueError unless ``config`` may continue
    the checkpoint at ``path``: the same maths (``check_resume_config``), more steps than
    it holds (or exactly as many when the run never wrote its summary) and, unless
    ``allow_changed_data``, the same data.

    Two differences change no maths and are not refused. A data folder is compared
    resolved (``data.canonical``; older checkpoints stored the path as typed, and a
    relative one resolves against the current folder, as their resume read it). And
    ``bf16`` matters only on CUDA (autocast): elsewhere a different value is ignored with
    a warning and the saved one kept, for the run's later sessions on CUDA; on CUDA a
    changed ``bf16`` is refused like any other change of the maths.
    """
    saved = dict(state["config"])
    if isinstance(saved.get("data"), str):
        saved["data"] = data.canonical(saved["data"])
    if (
        isinstance(saved.get("bf16"), bool)
        and saved["bf16"] != config.bf16
        and torch.device(config.device).type != "cuda"
    ):
        checkpoint.warn(
            f"bf16 {config.bf16} has no effect on {config.device} (bfloat16 autocast is "
            f"only used on CUDA); the run keeps bf16 {saved['bf16']} from {path.name}"
        )
        config = replace(config, bf16=saved["bf16"])
    check_resume_config(saved, config, path)
    step, run_dir = state["step"], path.parent.parent
    if config.steps < step or (config.steps == step and finished(run_dir, step)):
        already = "already finished at" if config.steps == step else "is at"
        raise ValueError(
            f"--steps {config.steps}: the run in {str(run_dir)!r} {already} step {step} "
            f"({path.name}); pass --steps above {step} to train further"
        )
    if "data_fingerprint" not in state or state["data_fingerprint"] == fingerprint:
        return config
    was, now = state["data_fingerprint"] or {}, fingerprint or {}
    change = (
        f"{config.data}: {was.get('files')} files, {was.get('bytes')} bytes at {path.name}; "
        f"now {now.get('files')} files, {now.get('bytes')} bytes (or other names or times)"
    )
    if not allow_changed_data:
        raise ValueError(
            f"the data changed since checkpoint {path} ({change}); restore it, or pass "
            "--allow-changed-data to continue on the data as it is now"
        )
    checkpoint.warn(f"--allow-changed-data: continuing on changed data ({change})")
    return config


def finished(run_dir: Path, step: int) -> bool:
    """Whether ``run_dir`` holds the summary of a run that finished at ``step``."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(summary, dict)
        and summary.get("steps") == step
        and summary.get("status", "finished") == "finished"
    )


def load_training_state(model, ema, optimizer, sampler, tensors: dict, state: dict, path) -> None:
    """Weights, EMA, optimiser and sampler state of a checkpoint into the live objects;
    ValueError naming the checkpoint if a tensor's name or shape does not fit."""
    _load_weights(model, tensors["model"], path, "model")
    _load_weights(ema, tensors["ema"], path, "ema")
    params = list(model.parameters())
    for key, value in tensors["optimizer"].items():
        parts = key.split(".")
        index = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else len(params)
        if index >= len(params) or (value.ndim and value.shape != params[index].shape):
            raise ValueError(
                f"checkpoint {path}: optimizer tensor {key!r} of shape {tuple(value.shape)} "
                "does not fit the model its config describes"
            )
    optimizer.load_state_dict(checkpoint.optimizer_state(tensors["optimizer"], state["optimizer"]))
    expected = sampler.state_dict()
    saved = tensors["sampler"]
    if not expected and all(not bool(v.any()) for v in saved.values()):
        return  # a sampler without state (older checkpoints stored zeros for it)
    if set(saved) != set(expected) or any(saved[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(f"checkpoint {path}: the timestep sampler's state does not fit")
    sampler.load_state_dict(saved)


def _load_weights(model: torch.nn.Module, weights: dict, path, name: str) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ValueError(
            f"checkpoint {path}: the {name} weights do not fit the model its config "
            f"describes ({' '.join(line.strip() for line in first[:3])})"
        ) from None
