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
    # One table of processes: main's Gaussian ones first (ddpm the default), the tokens last.
    assert list(PROCESSES) == ["ddpm", "flow", "edm", "vp", "absorbing", "uniform"]


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
        (dict(process="gaussian"), "process must be one of \\['ddpm', 'flow', 'edm', 'vp', "),
        # The options of the Gaussian objective (samplers, shifts, weightings, perturbations).
        (dict(shift=3.0), "--shift does not apply to --process absorbing"),
        (dict(process="uniform", shift=2.0), "--shift does not apply to --process uniform"),
        (dict(process="uniform", weighting="min_snr"), "--weighting does not apply"),
        (dict(max_weight=5.0), "--max-weight does not apply"),
        (dict(input_perturbation=0.1), "--input-perturbation does not apply"),
        (dict(process="uniform", time_offset=0.1), "--time-offset does not apply"),
        (dict(t_min=0.1), "--t-min does not apply to --process absorbing"),
        (dict(timestep_sampler="importance"), "must be one of \\('uniform', 'stratified'\\)"),
        (dict(process="uniform", timestep_sampler="log_normal"), "a sampler on u"),
        (dict(process="uniform", timestep_sampler="uniform", logit_std=0.5), "--logit-std"),
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


@pytest.mark.parametrize(
    "overrides",
    [
        dict(process="uniform", diffusion_steps=50, timestep_sampler="mode"),
        dict(process="uniform", diffusion_steps=50, timestep_sampler="importance"),
        dict(process="uniform", diffusion_steps=50, t_min=0.2, t_max=0.8),
        dict(timestep_sampler="stratified"),
    ],
)
def test_token_runs_take_the_samplers_that_apply(overrides):
    config = _tiny(**overrides)
    config.validate()
    process = config.build_process()
    from noisejump.objective import sample_time

    sampler, generator = config.build_timestep_sampler(), torch.Generator().manual_seed(0)
    t, _ = sample_time(process, sampler, 8, generator=generator, dtype=torch.float64)
    if process.is_continuous:  # absorbing: t in MDLM's [t_min, 1], float64
        assert t.dtype == torch.float64 and bool(((t >= 1e-3) & (t <= 1)).all())
    else:
        assert t.dtype == torch.int64 and bool(((t >= 0) & (t < 50)).all())
    if "t_min" in overrides:  # u in [0.2, 0.8] of T = 50 steps
        assert bool(((t >= 9) & (t <= 40)).all())


def test_resume_alone_keeps_a_token_runs_options(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    config = _tiny("uniform", diffusion_steps=50, steps=2)
    assert main(["train", str(run), "--quiet", "--process", "uniform", *cli_args(config)]) == 0
    capsys.readouterr()
    # --resume with --steps only: the process, schedule and U-Net are the run's saved ones.
    assert main(["train", str(run), "--resume", "--quiet", "--steps", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["resumed_from"] == 2
    state = json.loads(next((run / "checkpoints").glob("step-*3/state.json")).read_text())
    assert (state["config"]["process"], state["config"]["diffusion_steps"]) == ("uniform", 50)

    # Another objective is refused before any data is read.
    def unread(spec):
        raise AssertionError(f"the tokens were read ({spec})")

    monkeypatch.setattr(tokens, "load_tokens", unread)
    changed = ["--steps", "4", "--timestep-sampler", "stratified"]
    assert main(["train", str(run), "--resume", "--quiet", *changed]) == 2
    assert "timestep_sampler: checkpoint 'uniform' vs now 'stratified'" in capsys.readouterr().err


def test_objective_refuses_token_processes(tmp_path, capsys):
    code = main(["objective", "--config", "--process absorbing", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--process absorbing trains tokens on its ELBO" in err and "ddpm, flow, edm, vp" in err
