"""Atomic, verified checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint is a directory ``RUN/checkpoints/step-NNNNNNNN`` holding

    model.safetensors       the weights being trained
    ema.safetensors         their exponential moving average
    optimizer.safetensors   every tensor of the optimiser state ("state.<param>.<name>")
    sampler.safetensors     the timestep sampler's state (loss history for importance)
    state.json              step, config, losses so far, optimiser hyper-parameters,
                            RNG and data-order state (both are functions of seed and step),
                            the data fingerprint; "sha256": the SHA-256 of each tensor file;
                            "state_sha256": the SHA-256 of the rest of state.json (its
                            canonical JSON: sorted keys, no spaces)

Writing (``save``). The files go into ``checkpoints/.tmp-step-NNNNNNNN-PID``, each fsynced
as it is written, then the directory is fsynced, renamed into place (rename is atomic on
POSIX) and the parent fsynced; only then are older checkpoints pruned, each renamed to
``.trash-step-*`` before it is deleted. ``KILL_POINTS`` names every point in between (the
test suite kills or fails the process at each). Any failure, the serializer's own
``SafetensorError`` included, removes the temporary directory and raises
``CheckpointWriteError`` (an OSError); earlier checkpoints are never touched.

Reading (``load``) checks the state's shape, every checksum and that every tensor is
finite; a checkpoint that fails is *damaged* (``CheckpointDamaged``). ``newest_intact``
walks back from the newest checkpoint to the newest intact one: ``train --resume`` (the
run's one writer) sets each damaged one aside as ``damaged-step-NNNNNNNN``; ``sample``
and ``evaluate`` only skip it. A ``step-*`` directory without ``state.json`` is
*incomplete*; ``train --resume`` sets it aside as ``incomplete-step-NNNNNNNN``. Nothing
set aside is ever deleted, and every step is reported on stderr.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch

from . import faults, files
from .errors import CheckpointWriteError

FORMAT_VERSION = 2
#: Format 1 (before checksums) is still read, unverified, with a warning.
UNVERIFIED_VERSIONS = (1,)
TENSOR_FILES = ("model", "ema", "optimizer", "sampler")
#: Every write and rename point of ``save``, in order; ``faults.reached`` runs after each.
KILL_POINTS = (
    "directory",
    *(f"{name}.safetensors" for name in TENSOR_FILES),
    "state.json",
    "fsync",
    "rename",
    "prune",
)
#: Keys ``state.json`` must hold, with their JSON types.
STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "step": int,
    "config": dict,
    "image_shape": list,
    "losses": list,
    "train_seconds": (int, float),
    "optimizer": dict,
}


class CheckpointDamaged(ValueError):
    """A checkpoint whose files are unreadable, fail their checksum, hold non-finite
    tensors or a state of the wrong shape."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` of ``run_dir`` lives once complete."""
    return checkpoint_dir(run_dir) / f"step-{step:08d}"


def warn(message: str) -> None:
    """One line on stderr: what happened to a checkpoint and what is used instead."""
    print(f"noisejump: warning: {message}", file=sys.stderr, flush=True)


def save(
    run_dir: Path,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically; then remove all but the newest ``keep``.

    ``tensors`` maps each name of ``TENSOR_FILES`` to a flat {name: tensor} dict.
    Raises CheckpointWriteError (naming the path; earlier checkpoints untouched) if the
    write fails.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save as serialize

    root = checkpoint_dir(run_dir)
    final = step_dir(run_dir, step)
    temporary = root / f".tmp-step-{step:08d}-{os.getpid()}"
    if final.exists():
        raise ValueError(f"checkpoint {final} already exists; checkpoints are never overwritten")
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        faults.reached("directory", step)
        digests = {}
        for name in TENSOR_FILES:
            flat = {k: v.detach().cpu().contiguous() for k, v in tensors[name].items()}
            digests[f"{name}.safetensors"] = files.write(
                temporary / f"{name}.safetensors", serialize(flat)
            )
            faults.reached(f"{name}.safetensors", step)
        files.write(temporary / "state.json", _state_text(state, digests))
        faults.reached("state.json", step)
        files.fsync(temporary)
        faults.reached("fsync", step)
        os.rename(temporary, final)
        faults.reached("rename", step)
        files.fsync(root)
    except (OSError, SafetensorError) as error:
        shutil.rmtree(temporary, ignore_errors=True)
        reason = getattr(error, "strerror", None) or error
        raise CheckpointWriteError(
            getattr(error, "errno", None) or 0,
            f"could not write checkpoint {final} ({reason}); earlier checkpoints are untouched",
        ) from error
    except BaseException:  # a second Ctrl-C: no temporary directory is left behind
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _prune(root, keep, step)
    return final


def _state_text(state: dict, digests: dict[str, str]) -> bytes:
    body = {"format_version": FORMAT_VERSION, **state, "sha256": digests}
    body["state_sha256"] = _state_digest(body)
    return files.strict_json(body)


def _state_digest(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (``.tmp-*`` directories are ignored)."""
    root = checkpoint_dir(run_dir)
    return _complete_in(root) if root.is_dir() else []


def _complete_in(root: Path) -> list[Path]:
    """The ``step-*`` directories of ``root`` that hold a ``state.json``, oldest first."""
    found = [p for p in root.glob("step-*") if (p / "state.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (not verified; see ``newest_intact``)."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """(tensors, state) of the checkpoint directory ``path``, verified.

    Raises CheckpointDamaged if a file is unreadable, fails its SHA-256, holds a
    non-finite tensor or a state of the wrong shape; ValueError if ``path`` is no
    checkpoint or was written by a newer format.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    state = read_state(path)
    if state.get("format_version") in UNVERIFIED_VERSIONS:
        warn(
            f"checkpoint {path} has format {state['format_version']}, written before "
            "checksums: not verified"
        )
    else:
        _verify_files(path, state)
    try:
        tensors = {name: load_file(str(path / f"{name}.safetensors")) for name in TENSOR_FILES}
    except (OSError, SafetensorError) as error:
        raise CheckpointDamaged(f"checkpoint {path} is damaged: {error}") from None
    for name, part in tensors.items():
        bad = [k for k, v in part.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise CheckpointDamaged(
                f"checkpoint {path} is damaged: {name}.safetensors holds non-finite "
                f"values in {bad[:3]}"
            )
    return tensors, state


def read_state(path: Path) -> dict:
    """The ``state.json`` of checkpoint ``path``, its own SHA-256 and its shape checked
    (the tensor files are not read: ``load`` verifies them). CheckpointDamaged or
    ValueError as ``load``."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise ValueError(f"{str(path)!r} is not a checkpoint directory (no state.json)")
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointDamaged(f"checkpoint {path} is damaged: state.json: {error}") from None
    if not isinstance(state, dict):
        raise CheckpointDamaged(
            f"checkpoint {path} is damaged: state.json holds a {type(state).__name__}, "
            "not an object"
        )
    version = state.get("format_version")
    if version == FORMAT_VERSION:
        body = {k: v for k, v in state.items() if k != "state_sha256"}
        if state.get("state_sha256") != _state_digest(body):
            raise CheckpointDamaged(f"checkpoint {path} is damaged: state.json fails its SHA-256")
    elif version not in UNVERIFIED_VERSIONS:
        raise ValueError(
            f"checkpoint {str(path)!r} has format version {version!r}; "
            f"this noisejump reads versions {(*UNVERIFIED_VERSIONS, FORMAT_VERSION)}"
        )
    _check_shape(path, state)
    return state


def _verify_files(path: Path, state: dict) -> None:
    """Each tensor file's SHA-256 against what ``save`` recorded in the state."""
    digests = state.get("sha256")
    if not isinstance(digests, dict) or set(digests) != {f"{n}.safetensors" for n in TENSOR_FILES}:
        raise CheckpointDamaged(f"checkpoint {path} is damaged: state.json lists no checksums")
    for name, expected in digests.items():
        try:
            actual = files.sha256(path / name)
        except OSError as error:
            raise CheckpointDamaged(f"checkpoint {path} is damaged: {error}") from None
        if actual != expected:
            raise CheckpointDamaged(f"checkpoint {path} is damaged: {name} fails its SHA-256")


def _check_shape(path: Path, state: dict) -> None:
    for key, kind in STATE_KEYS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CheckpointDamaged(
                f"checkpoint {path} is damaged: state.json key {key!r} is missing or not "
                f"{_type_name(kind)} (got {type(state.get(key)).__name__})"
            )
    shape, losses = state["image_shape"], state["losses"]
    if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise CheckpointDamaged(f"checkpoint {path} is damaged: image_shape {shape!r}")
    if len(losses) != state["step"] or not all(
        isinstance(v, (int, float)) and math.isfinite(v) for v in losses
    ):
        raise CheckpointDamaged(
            f"checkpoint {path} is damaged: {len(losses)} losses for step {state['step']}, "
            "or a loss that is not a finite number"
        )
    if not {"param_groups", "scalars"} <= set(state["optimizer"]):
        raise CheckpointDamaged(f"checkpoint {path} is damaged: optimizer state incomplete")


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", dict: "an object", list: "a list"}
    return " or ".join(names[k] for k in kinds)


def newest_intact(run_dir: Path, *, set_aside: bool) -> tuple[Path, dict, dict] | None:
    """(path, tensors, state) of the newest checkpoint of ``run_dir`` that loads intact,
    or None. Each damaged one on the way is reported and, with ``set_aside`` (only the
    run's writer may), renamed to ``damaged-step-*``."""
    skipped = False
    for path in reversed(complete_checkpoints(run_dir)):
        try:
            tensors, state = load(path)
        except CheckpointDamaged as error:
            if set_aside:
                warn(f"{error}; set aside as {_set_aside(path, 'damaged').name}")
            else:
                warn(f"{error}; skipped (`noisejump train --resume` sets it aside)")
            skipped = True
            continue
        if skipped:
            warn(f"using the newest intact checkpoint, {path}")
        return path, tensors, state
    return None


def set_aside_incomplete(run_dir: Path) -> list[Path]:
    """Rename each ``step-*`` directory without a ``state.json`` (a crash, a file removed
    by hand) to ``incomplete-step-*``, report it and return the new paths."""
    root = checkpoint_dir(run_dir)
    moved = []
    for path in sorted(root.glob("step-*")) if root.is_dir() else []:
        if path.is_dir() and not (path / "state.json").is_file():
            moved.append(_set_aside(path, "incomplete"))
            warn(f"{path} has no state.json (incomplete); set aside as {moved[-1].name}")
    return moved


def remove_temporaries(run_dir: Path) -> None:
    """Delete what a killed writer leaves: ``.tmp-step-*`` (a checkpoint never renamed
    into place) and ``.trash-step-*`` (one being pruned). Only the run's writer calls it."""
    root = checkpoint_dir(run_dir)
    for stale in (*root.glob(".tmp-step-*"), *root.glob(".trash-step-*")):
        shutil.rmtree(stale, ignore_errors=True)


def _set_aside(path: Path, why: str) -> Path:
    """Rename ``path`` to ``WHY-NAME`` (``WHY-NAME.2``, ... if taken); never delete it."""
    target = path.with_name(f"{why}-{path.name}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{why}-{path.name}.{n}")
    os.rename(path, target)
    return target


def resolve(path) -> tuple[Path, dict, dict]:
    """(checkpoint directory, tensors, state) from a run folder (its newest intact
    checkpoint, damaged ones skipped) or from a checkpoint directory (which must be
    intact)."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path, *load(path)
    found = newest_intact(path, set_aside=False)
    if found is None:
        if complete_checkpoints(path):
            raise ValueError(f"no intact checkpoint in {str(path)!r}: every one is damaged")
        raise ValueError(
            f"no checkpoint in {str(path)!r}: expected a run folder with "
            "checkpoints/step-*/state.json or a checkpoint directory"
        )
    return found


def inside_checkpoint(path: Path, run_dir: Path) -> Path | None:
    """The checkpoint directory (or ``checkpoints/`` of ``run_dir``) that would contain
    a file written at ``path``, or None."""
    root = checkpoint_dir(run_dir).resolve()
    for folder in Path(path).resolve().parents:
        if folder == root or (folder / "state.json").is_file():
            return folder
    return None


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


def _prune(root: Path, keep: int, step: int) -> None:
    """Remove stale temporary directories and all but the newest ``keep`` checkpoints
    (the one just written is the newest, so it is never pruned). An old checkpoint is
    renamed out of ``step-*`` first, so a kill during the deletion never leaves a
    half-deleted directory that looks complete. Failures here only warn: the new
    checkpoint is already safe."""
    remove_temporaries(root.parent)
    found = _complete_in(root)
    for old in found[: max(0, len(found) - keep)]:
        trash = root / f".trash-{old.name}"
        try:
            os.rename(old, trash)
        except OSError as error:
            warn(f"could not prune {old} ({error.strerror or error}); it is kept")
            continue
        faults.reached("prune", step)
        shutil.rmtree(trash, ignore_errors=True)
