"""Atomic checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint is a directory ``RUN/checkpoints/step-NNNNNNNN`` holding

    model.safetensors       the weights being trained
    ema.safetensors         their exponential moving average
    optimizer.safetensors   every tensor of the optimiser state ("state.<param>.<name>")
    sampler.safetensors     the timestep sampler's state (loss history for importance)
    state.json              step, config, losses so far, optimiser hyper-parameters,
                            RNG and data-order state (both are functions of seed and step)

It is written into ``checkpoints/.tmp-step-NNNNNNNN-PID``, every file and the directory are
fsynced, and only then renamed into place (rename is atomic on POSIX) and the parent
fsynced. A crash or a full disk at any point leaves earlier checkpoints as they were and at
worst a ``.tmp-*`` directory, which ``latest`` ignores and the next save removes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

FORMAT_VERSION = 1
TENSOR_FILES = ("model", "ema", "optimizer", "sampler")
#: Environment variable read by the test suite's kill -9 hook (see ``save``).
KILL_AFTER_ENV = "NOISEJUMP_TEST_KILL_AFTER_CHECKPOINT"
#: Test hook: kill -9 in the middle of writing checkpoint N (after its first file).
KILL_DURING_ENV = "NOISEJUMP_TEST_KILL_DURING_CHECKPOINT"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(
    run_dir: Path,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically; then remove all but the newest ``keep``.

    ``tensors`` maps each name of ``TENSOR_FILES`` to a flat {name: tensor} dict.
    Raises OSError (naming the path; earlier checkpoints untouched) if the write fails.
    """
    from safetensors.torch import save_file

    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    temporary = root / f".tmp-step-{step:08d}-{os.getpid()}"
    if final.exists():
        raise ValueError(f"checkpoint {final} already exists; checkpoints are never overwritten")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir()
        for name in TENSOR_FILES:
            contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors[name].items()}
            save_file(contiguous, str(temporary / f"{name}.safetensors"))
            if os.environ.get(KILL_DURING_ENV) == str(step):  # test hook: die mid-write
                os.kill(os.getpid(), 9)
        text = json.dumps({"format_version": FORMAT_VERSION, **state}, indent=1)
        (temporary / "state.json").write_text(text)
        for file in temporary.iterdir():
            _fsync(file)
        _fsync(temporary)
        os.rename(temporary, final)
        _fsync(root)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise OSError(
            error.errno,
            f"could not write checkpoint {final} ({error.strerror or error}); "
            "earlier checkpoints are untouched",
        ) from error
    _prune(root, keep)
    if os.environ.get(KILL_AFTER_ENV) == str(step):  # test hook: die like kill -9
        os.kill(os.getpid(), 9)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (``.tmp-*`` directories are ignored)."""
    root = checkpoint_dir(run_dir)
    return _complete_in(root) if root.is_dir() else []


def _complete_in(root: Path) -> list[Path]:
    """The ``step-*`` directories of ``root`` that hold a ``state.json``, oldest first."""
    found = [p for p in root.glob("step-*") if (p / "state.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """(tensors, state) of the checkpoint directory ``path``; clear errors if damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "state.json").is_file():
        raise ValueError(f"{str(path)!r} is not a checkpoint directory (no state.json)")
    try:
        state = json.loads((path / "state.json").read_text())
        tensors = {name: load_file(str(path / f"{name}.safetensors")) for name in TENSOR_FILES}
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise ValueError(f"checkpoint {str(path)!r} is damaged or incomplete: {error}") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} has format version {state.get('format_version')!r}; "
            f"this noisejump reads version {FORMAT_VERSION}"
        )
    return tensors, state


def resolve(path) -> Path:
    """A checkpoint directory from a run folder (its latest) or a checkpoint directory."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    found = latest(path)
    if found is None:
        raise ValueError(
            f"no checkpoint in {str(path)!r}: expected a run folder with "
            "checkpoints/step-*/state.json or a checkpoint directory"
        )
    return found


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into safetensors tensors and JSON scalars."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param}.{name}"] = value
            else:
                scalars[f"{param}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state(tensors: dict, json_part: dict) -> dict:
    """Inverse of ``optimizer_tensors``: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, param, name = key.split(".", 2)
        state.setdefault(int(param), {})[name] = value
    for key, value in json_part["scalars"].items():
        param, name = key.split(".", 1)
        state.setdefault(int(param), {})[name] = value
    return {"state": state, "param_groups": json_part["param_groups"]}


def _prune(root: Path, keep: int) -> None:
    """Remove stale temporary directories and all but the newest ``keep`` checkpoints. An
    old checkpoint is renamed out of ``step-*`` first, so a kill during the deletion never
    leaves a half-deleted directory that looks complete."""
    for stale in (*root.glob(".tmp-step-*"), *root.glob(".trash-step-*")):
        shutil.rmtree(stale, ignore_errors=True)
    found = _complete_in(root)
    for old in found[: max(0, len(found) - keep)]:
        trash = root / f".trash-{old.name}"
        os.rename(old, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
