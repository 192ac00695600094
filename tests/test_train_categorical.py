"""``noisejump train --process absorbing|uniform``: token runs through train, sample,
evaluate and resume; the options a token run refuses."""

from __future__ import annotations

import json

import pytest
import torch
from _train_helpers import cli_args, one_thread, tiny_config

from noisejump.categorical import CategoricalProcess
from noisejump.cli import main
from noisejump.train import categorical as tokens
from noisejump.train.config import PROCESSES, TrainConfig
from noisejump.train.data import digits_split
from noisejump.train.loop import train


def _tiny(process="absorbing", **overrides):
    values = dict(process=process, steps=4, checkpoint_every=2, final_samples=0)
    if process == "absorbing":  # continuous time: the default T, which it does not use
        values["diffusion_steps"] = TrainConfig().diffusion_steps
    values.update(overrides)
    return tiny_config(**values)


def test_the_digits_are_tokens_and_back_exactly():
    images = digits_split()[0]
    tokens_ = tokens.load_tokens("digits")
    assert tokens_.dtype == torch.int64 and tokens_.shape == images.shape
    assert tokens_.min() == 0 and tokens_.max() == 16
    assert torch.equal(tokens.tokens_to_images(tokens_), images)


def test_token_run_trains_samples_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    config = _tiny(final_samples=4)
    assert main(["train", str(run), "--quiet", "--process", "absorbing", *cli_args(config)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and (run / "samples.png").exists()
    state = json.loads(next((run / "checkpoints").glob("step-*/state.json")).read_text())
    assert state["config"]["process"] == "absorbing"
    out = tmp_path / "drawn"
    assert main(["sample", str(run), "--num", "3", "--steps", "5", "--out", str(out)]) == 0
    from PIL import Image
    from safetensors.torch import load_file

    assert "ancestral 5 steps" in Image.open(out.with_suffix(".png")).text["Description"]
    samples = load_file(str(out.with_suffix(".safetensors")))["samples"]
    levels = (samples + 1) * 8
    assert samples.shape == (3, 1, 8, 8) and torch.equal(levels, levels.round())
    assert levels.min() >= 0 and levels.max() <= 16  # no mask left, only digit levels
    capsys.readouterr()
    code = main(["evaluate", str(run), "--num", "30", "--steps", "4", "--json"])
    scores = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and scores["sampler"] == "ancestral" and scores["sampler_steps"] == 4
    assert scores["num_samples"] == 30 and len(scores["digit_histogram"]) == 10
    assert main(["sample", str(run), "--sampler", "ddim"]) == 2  # a token run has one sampler
    assert "sampler must be one of ('ancestral',) for a token run" in capsys.readouterr().err


def test_uniform_run_is_resumable_to_the_same_losses(tmp_path):
    config = _tiny("uniform", diffusion_steps=50, steps=4)
    with one_thread():
        straight = train(config, tmp_path / "straight", progress=False)
        train(_tiny("uniform", diffusion_steps=50, steps=2), tmp_path / "split", progress=False)
        resumed = train(config, tmp_path / "split", resume=True, progress=False)
    losses = [json.loads((tmp_path / d / "losses.json").read_text()) for d in ("straight", "split")]
    assert losses[0] == losses[1] and len(losses[0]) == 4
    assert straight["status"] == resumed["status"] == "finished"


def test_resume_refuses_another_process(tmp_path):
    with one_thread():
        train(_tiny("absorbing", steps=2), tmp_path / "run", progress=False)
        with pytest.raises(ValueError, match="process: checkpoint 'absorbing' vs now 'uniform'"):
            train(_tiny("uniform", steps=4), tmp_path / "run", resume=True, progress=False)


def test_a_config_without_process_is_a_ddpm_run():
    saved = TrainConfig().to_json()
    del saved["process"]  # checkpoints written before the option
    assert TrainConfig.from_json(saved).process == "ddpm"
    assert isinstance(_tiny().build_process(), CategoricalProcess)
    assert list(PROCESSES)[:3] == ["ddpm", "absorbing", "uniform"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(prediction="v"), "--prediction does not apply to --process absorbing"),
        (dict(schedule="cosine"), "--schedule does not apply to --process absorbing"),
        (dict(diffusion_steps=50), "--diffusion-steps does not apply"),
        (dict(process="uniform", prediction="sample"), "--prediction does not apply"),
        (dict(noise="pink"), "--noise does not apply"),
        (dict(timestep_sampler="logit_normal"), "must be one of \\('uniform', 'stratified'\\)"),
        (dict(data="photos"), "--data 'photos' has no token form"),
        (dict(process="gaussian"), "process must be one of \\['ddpm', 'absorbing', 'uniform'"),
    ],
)
def test_token_runs_refuse_gaussian_options(overrides, match):
    with pytest.raises(ValueError, match=match):
        _tiny(**overrides).validate()


def test_train_help_lists_the_processes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in PROCESSES:
        assert name in text
