"""``noisejump train`` with the objective's flags (issue 11, item 6) and ``noisejump
objective`` (item 5): continuous processes train, the objective is saved and checked on
resume, options that do not apply are refused, and the inspector's command finds the
presets' equal pairs."""

from __future__ import annotations

import json
import math

import pytest
from _train_helpers import tiny_config

from noisejump.cli import main
from noisejump.train.config import TrainConfig
from noisejump.train.loop import train
from noisejump.train.objective import PRESETS


def tiny(**values) -> TrainConfig:
    """``tiny_config`` with ``values``; a continuous process keeps the default T (the
    discrete schedule's options do not apply to it)."""
    if values.get("process", "ddpm") != "ddpm":
        values.setdefault("diffusion_steps", TrainConfig().diffusion_steps)
    return tiny_config(**values)


CONTINUOUS = {
    "sd3": PRESETS["sd3"][1],
    "edm": PRESETS["edm"][1],
    "vp": {"process": "vp", "prediction": "v", "weighting": "min_snr"},
}


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_continuous_presets_train_and_sample(tmp_path, name):
    config = tiny(steps=2, checkpoint_every=2, batch_size=4, final_samples=1, **CONTINUOUS[name])
    summary = train(config, tmp_path / name, progress=False)
    assert summary["status"] == "finished"
    assert all(math.isfinite(v) for v in json.loads((tmp_path / name / "losses.json").read_text()))
    assert (tmp_path / name / "samples.png").exists()
    saved = next((tmp_path / name / "checkpoints").glob("step-*"))
    state = json.loads((saved / "state.json").read_text())
    assert state["config"]["process"] == CONTINUOUS[name]["process"]


def test_resume_refuses_another_objective(tmp_path):
    config = tiny_config(steps=2, checkpoint_every=2, timestep_sampler="logit_normal", shift=2.0)
    train(config, tmp_path / "run", progress=False)
    changed = tiny_config(steps=4, checkpoint_every=2, timestep_sampler="logit_normal", shift=3.0)
    with pytest.raises(ValueError, match=r"shift: checkpoint 2.0 vs now 3.0"):
        train(changed, tmp_path / "run", resume=True, progress=False)
    changed = tiny_config(
        steps=4, checkpoint_every=2, timestep_sampler="logit_normal", shift=2.0, logit_std=0.5
    )
    with pytest.raises(ValueError, match=r"logit_std: checkpoint 1.0 vs now 0.5"):
        train(changed, tmp_path / "run", resume=True, progress=False)


def test_a_config_without_the_new_fields_reads_as_the_default_objective():
    values = TrainConfig().to_json()
    for key in ("process", "shift", "logit_mean", "max_weight", "input_perturbation"):
        values.pop(key)
    assert TrainConfig.from_json(values) == TrainConfig()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"process": "flow", "logit_mean": 1.0}, "--logit-mean does not apply"),
        ({"process": "vp", "schedule": "cosine"}, "--schedule does not apply"),
        ({"process": "edm", "timestep_sampler": "log_normal"}, "--prediction sample"),
        ({"process": "edm", "prediction": "sample"}, "--timestep-sampler log_normal"),
        ({"process": "flow", "timestep_sampler": "importance"}, "--process ddpm only"),
        ({"weighting": "edm2"}, "edm2 is learned"),
        ({"process": "flow", "prediction": "epsilon", "weighting": "debiased"}, "diverges"),
        ({"process": "wiener"}, "process must be one of"),
        ({"shift": 0.0}, "shift must be"),
        ({"time_offset": 0.1, "process": "flow"}, "--process ddpm and --noise isotropic"),
        ({"input_perturbation": 0.1, "time_offset": 0.1}, "not both"),
        ({"timestep_sampler": "mode", "mode_scale": 3.0}, "scale must be"),
    ],
)
def test_options_that_do_not_fit_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        tiny(**values).validate()


def test_cli_train_flags_reach_the_config(tmp_path, capsys):
    code = main([
        "train", str(tmp_path / "run"), "--process", "flow", "--timestep-sampler", "mode",
        "--mode-scale", "0.5", "--shift", "2", "--prediction", "v", "--weighting",
        "soft_min_snr", "--input-perturbation", "0.1", "--channels", "8", "--steps", "1",
        "--batch-size", "4", "--final-samples", "0", "--quiet",
    ])  # fmt: skip
    assert code == 0
    state = next((tmp_path / "run" / "checkpoints").glob("step-*")) / "state.json"
    config = json.loads(state.read_text())["config"]
    assert (config["process"], config["mode_scale"], config["shift"]) == ("flow", 0.5, 2.0)
    assert (config["weighting"], config["input_perturbation"]) == ("soft_min_snr", 0.1)


def test_objective_command_reports_presets_and_equal_pairs(tmp_path, capsys):
    out = tmp_path / "objective.png"
    flow = "--process flow --prediction flow_velocity --timestep-sampler logit_normal"
    shifted_mean = f"{flow} --logit-mean {math.log(3)!r}"  # = sd3's shift 3
    wrong_mean = f"{flow} --logit-mean {2 * math.log(3)!r}"
    code = main(["objective", *PRESETS, "--config", shifted_mean, "--config", wrong_mean,
                 "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and out.exists()
    assert text.count("90 % of w in lambda") == len(PRESETS) + 2
    assert "same objective: sd3 and config 1" in text
    assert "config 2" not in [
        line.split(" and ")[-1] for line in text.splitlines() if "same" in line
    ]
    code = main(["objective", "ddpm", "iddpm", "--out", str(out)])
    assert "no two configurations are the same objective" in capsys.readouterr().out


def test_objective_command_bad_input(tmp_path, capsys):
    assert main(["objective", "--config", "--bogus 1", "--out", str(tmp_path / "o.png")]) == 2
    assert "unrecognized arguments: --bogus 1" in capsys.readouterr().err
    edm2 = "--process edm --timestep-sampler log_normal --weighting edm2 --prediction sample"
    assert main(["objective", "--config", edm2, "--out", str(tmp_path / "o.png")]) == 0
    assert "not inspectable" in capsys.readouterr().out
    assert main(["objective", "--window", "5", "-5"]) == 2
    assert "--window needs LOW < HIGH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["objective", "sd4"])
    assert "unknown preset 'sd4'" in capsys.readouterr().err
