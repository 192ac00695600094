"""DDP: 2 processes of 8 (torchrun, gloo) reproduce 1 process of 16, step by step."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from _train_helpers import cli_args, losses, one_thread, tiny_config

from noisejump.train import checkpoint, faults
from noisejump.train.loop import train


def test_two_gloo_processes_match_one_process(tmp_path):
    config = tiny_config(steps=4, checkpoint_every=4, batch_size=16)
    with one_thread():
        train(config, tmp_path / "one", progress=False)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "noisejump", "train", str(tmp_path / "two"), "--quiet", *cli_args(config),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = torch.tensor(losses(tmp_path / "one")), torch.tensor(losses(tmp_path / "two"))
    assert len(two) == 4
    # Same samples, timesteps and noise (keyed by global index and step); only the order
    # of float sums differs (gradient all-reduce), so agreement to float32 rounding.
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-6)
    # Negative control: a different seed (other draws) is far outside that tolerance.
    assert not torch.allclose(
        torch.tensor(_other_seed_losses(tmp_path, config)), one, rtol=1e-4, atol=1e-6
    )
    # Only rank 0 wrote: one set of files, weights equal to the 1-process run's.
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path / "two")] == ["step-00000004"]
    a, _ = checkpoint.load(checkpoint.latest(tmp_path / "one"))
    b, _ = checkpoint.load(checkpoint.latest(tmp_path / "two"))
    # Adam moves each weight by at most about lr per step; where a gradient entry is
    # near 0, the reordered sums can change m / sqrt(v) a lot, so weights agree to a small
    # share (2.5 %) of the whole movement budget lr * steps.
    budget = config.lr * config.steps
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=0.025 * budget)


def _other_seed_losses(tmp_path, config):
    other = tiny_config(**{**config.to_json(), "seed": config.seed + 1})
    train(other, tmp_path / "other", progress=False)
    return losses(tmp_path / "other")


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """SIGTERM reaches rank 1 alone during step 2: the ranks agree (one collective per
    step), rank 0 writes checkpoint 2, both exit 143; a 1-process resume continues it."""
    config = tiny_config(steps=4, checkpoint_every=4, batch_size=16)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "noisejump", "train", str(tmp_path / "two"), "--quiet", *cli_args(config),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", faults.SIGNAL_ENV: "SIGTERM@2/1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.count("stopped by SIGTERM after step 2") == 2, result.stderr[-3000:]
    assert "exitcode  : 143" in result.stderr  # torchrun's report of its workers
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path / "two")] == ["step-00000002"]
    with one_thread():
        train(config, tmp_path / "one", progress=False)
        assert train(config, tmp_path / "two", resume=True, progress=False)["resumed_from"] == 2
    torch.testing.assert_close(
        torch.tensor(losses(tmp_path / "two")), torch.tensor(losses(tmp_path / "one")),
        rtol=1e-4, atol=1e-6,
    )  # fmt: skip
