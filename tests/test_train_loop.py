"""The training loop: it learns and it resumes exactly (crashes: test_train_crashes.py)."""

from __future__ import annotations

import pytest
import torch
from _train_helpers import losses, one_thread, tiny_config

from noisejump.train import checkpoint
from noisejump.train.loop import train


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_loss_decreases_on_digits_and_not_without_learning(tmp_path):
    # Deterministic (fixed seed, keyed draws): the loss of the zero-initialised model starts
    # near E|e|^2 = 1. 40 steps must cut the mean of the last 10 losses below 70 % of the
    # first 10; the control with lr = 1e-9 (no learning, same data and noise) must not.
    config = tiny_config(steps=40, checkpoint_every=40)
    trained = train(config, tmp_path / "learn", progress=False)
    train(tiny_config(steps=40, checkpoint_every=40, lr=1e-9), tmp_path / "frozen", progress=False)
    learn, still = losses(tmp_path / "learn"), losses(tmp_path / "frozen")
    assert len(learn) == 40 and trained["steps"] == 40
    first, last = sum(learn[:10]) / 10, sum(learn[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    assert sum(still[-10:]) / 10 > 0.7 * sum(still[:10]) / 10
    assert 0.0 < trained["noise_share"] < 1.0


def test_resume_equals_uninterrupted_run(tmp_path):
    config = tiny_config(steps=8, checkpoint_every=4)
    rng_state = torch.get_rng_state()
    train(config, tmp_path / "whole", progress=False)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is untouched
    train(tiny_config(steps=4, checkpoint_every=4), tmp_path / "split", progress=False)
    summary = train(config, tmp_path / "split", resume=True, progress=False)
    assert summary["resumed_from"] == 4
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    whole, _ = checkpoint.load(checkpoint.latest(tmp_path / "whole"))
    split, _ = checkpoint.load(checkpoint.latest(tmp_path / "split"))
    for part in ("model", "ema", "optimizer"):
        for name, tensor in whole[part].items():
            assert torch.equal(tensor, split[part][name]), (part, name)


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    train(
        tiny_config(steps=6, checkpoint_every=2, keep_checkpoints=2), tmp_path / "r", progress=False
    )
    names = [p.name for p in checkpoint.complete_checkpoints(tmp_path / "r")]
    assert names == ["step-00000004", "step-00000006"]


def test_run_folder_errors(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty; pass --resume"):
        train(tiny_config(), tmp_path / "busy", progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="no complete checkpoint"):
        train(tiny_config(), tmp_path / "fresh", resume=True, progress=False)
    train(tiny_config(steps=4), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"another config \(lr: checkpoint 0.002 vs now 0.001"):
        train(tiny_config(steps=8, lr=1e-3), tmp_path / "run", resume=True, progress=False)


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    train(tiny_config(steps=4), tmp_path / "run", progress=False)
    found = checkpoint.latest(tmp_path / "run")
    (found / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="model.safetensors fails its SHA-256"):
        checkpoint.load(found)


def test_epsilon_prediction_refused_at_zero_terminal_snr(tmp_path):
    with pytest.raises(ValueError, match="use --prediction v"):
        train(tiny_config(zero_terminal_snr=True), tmp_path / "r", progress=False)
    summary = train(
        tiny_config(zero_terminal_snr=True, prediction="v", weighting="min_snr", steps=4),
        tmp_path / "v",
        progress=False,
    )
    assert all(torch.isfinite(torch.tensor(losses(tmp_path / "v"))))
    assert summary["final_loss_mean_last_100"] > 0
