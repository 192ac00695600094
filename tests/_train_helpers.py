"""Shared set-up for the training tests: a tiny, fast configuration."""

from __future__ import annotations

import json
from pathlib import Path

from noisejump.train.config import TrainConfig


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
