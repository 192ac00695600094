"""Shared set-up for the training tests: a tiny, fast configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from noisejump.train.config import TrainConfig


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread, as the training subprocesses and forked children run: the
    same float sums, so their losses equal an in-process run's exactly."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def tiny_config(**overrides) -> TrainConfig:
    """A U-Net of width 8 on the digits, T = 100, no final samples: about 10 ms a step."""
    values = dict(
        channels=8,
        channel_mult=(1, 2),
        diffusion_steps=100,
        batch_size=16,
        steps=8,
        checkpoint_every=4,
        warmup_steps=0,
        lr=2e-3,
        final_samples=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def cli_args(config: TrainConfig) -> list[str]:
    """The ``noisejump train`` options that reproduce ``config``."""
    return [
        "--channels", str(config.channels),
        "--channel-mult", *map(str, config.channel_mult),
        "--diffusion-steps", str(config.diffusion_steps),
        "--batch-size", str(config.batch_size),
        "--steps", str(config.steps),
        "--checkpoint-every", str(config.checkpoint_every),
        "--warmup-steps", str(config.warmup_steps),
        "--lr", str(config.lr),
        "--final-samples", str(config.final_samples),
        "--seed", str(config.seed),
    ]  # fmt: skip


def losses(run_dir: Path) -> list[float]:
    return json.loads((Path(run_dir) / "losses.json").read_text())


def in_child(function, env: dict[str, str] | None = None, stderr: Path | None = None) -> int:
    """Run ``function()`` in a forked copy of this process and return its exit status as
    ``subprocess`` reports it (-N: killed by signal N; else the value it returned)."""
    import os

    _, status = os.waitpid(start_child(function, env, stderr), 0)
    return os.waitstatus_to_exitcode(status)


def start_child(function, env: dict[str, str] | None = None, stderr: Path | None = None) -> int:
    """Start ``function()`` in a forked copy of this process; return its pid.

    A fork starts in microseconds with torch, the data and the package already imported,
    where a new interpreter takes seconds; the child runs one thread (no OpenMP pool is
    inherited half-made), sets ``env``, writes its stderr to ``stderr`` and exits with
    the value ``function`` returns (99 if it raised).
    """
    import os
    import sys
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            torch.set_num_threads(1)
            os.environ.update(env or {})
            if stderr is not None:
                sys.stderr = open(stderr, "w")  # noqa: SIM115 (flushed before _exit)
            code = function()
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 0)
    return pid
