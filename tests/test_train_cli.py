"""``noisejump train/sample/evaluate`` from the command line: help, outputs and errors."""

from __future__ import annotations

import json

import pytest
import torch
from _train_helpers import cli_args, tiny_config

from noisejump.cli import main
from noisejump.noise import without_arguments

COMMANDS = ("train", "sample", "evaluate")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_describes_each_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: noisejump {command}" in text and "examples:" in text


def test_train_help_lists_the_library_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for choice in ("isotropic", "epsilon", "min_snr", "stratified", "logit_normal", "importance"):
        assert choice in text


def _train(run_dir, *extra, config=None):
    return main(["train", str(run_dir), "--quiet", *cli_args(config or tiny_config()), *extra])


def test_train_then_sample_writes_png_and_tensor(tmp_path, capsys):
    assert _train(tmp_path / "run", config=tiny_config(steps=4, final_samples=4)) == 0
    summary = json.loads(capsys.readouterr().out)
    for name in ("losses.json", "loss.png", "samples.png", "summary.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert summary["steps"] == 4
    out = tmp_path / "drawn"
    assert main(["sample", str(tmp_path / "run"), "--num", "5", "--steps", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    from PIL import Image
    from safetensors.torch import load_file

    grid = Image.open(out.with_suffix(".png"))
    assert grid.text["Description"] == "checkpoint step 4, ddim 3 steps, seed 0, ema weights"
    assert grid.size[0] >= 3 * 64  # 5 samples in 3 columns, each 8 x 8 drawn 64 x 64
    final = Image.open(tmp_path / "run" / "samples.png")
    assert final.text["Description"] == "checkpoint step 4, ddim 50 steps, seed 0, ema weights"
    samples = load_file(str(out.with_suffix(".safetensors")))["samples"]
    assert samples.shape == (5, 1, 8, 8) and samples.abs().max() <= 1


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_data_folder_errors(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    err = _error(capsys, ["train", str(tmp_path / "r1"), "--data", f"folder:{missing}"])
    assert "does not exist" in err and str(missing) in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    err = _error(capsys, ["train", str(tmp_path / "r2"), "--data", f"folder:{tmp_path / 'empty'}"])
    assert "contains no images" in err and ".png" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"this is not a PNG")
    err = _error(capsys, ["train", str(tmp_path / "r3"), "--data", f"folder:{tmp_path / 'bad'}"])
    assert "cannot read image" in err and "broken.png" in err
    err = _error(capsys, ["train", str(tmp_path / "r4"), "--data", "cifar"])
    assert "unknown data set 'cifar'" in err


def test_folder_of_images_trains(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "pictures").mkdir()
    generator = torch.Generator().manual_seed(0)
    for i, suffix in enumerate((".png", ".JPG", ".jpeg")):
        pixels = torch.randint(0, 256, (20 + 4 * i, 12, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(tmp_path / "pictures" / f"{i}{suffix}")
    config = tiny_config(steps=2, batch_size=4)
    assert _train(tmp_path / "run", "--data", f"folder:{tmp_path / 'pictures'}",
                  "--image-size", "8", config=config) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["steps"] == 2


def test_run_folder_and_config_errors(tmp_path, capsys):
    assert _train(tmp_path / "run", config=tiny_config(steps=4)) == 0
    capsys.readouterr()
    assert _train(tmp_path / "run", config=tiny_config(steps=8)) == 2
    assert "not empty; pass --resume" in capsys.readouterr().err
    assert _train(tmp_path / "run", "--resume", config=tiny_config(steps=8, channels=16)) == 2
    assert "channels: checkpoint 8 vs now 16" in capsys.readouterr().err
    err = _error(capsys, ["train", str(tmp_path / "z"), "--zero-terminal-snr"])
    assert "use --prediction v" in err
    err = _error(capsys, ["sample", str(tmp_path / "nothing")])
    assert "no checkpoint in" in err
    err = _error(capsys, ["evaluate", str(tmp_path / "nothing")])
    assert "no checkpoint in" in err


def test_out_of_range_options_are_refused_by_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "r"), "--steps", "0"])
    assert exit_.value.code == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "r"), "--noise", "purple"])
    assert "invalid choice: 'purple'" in capsys.readouterr().err


@pytest.mark.parametrize("noise", without_arguments())
def test_every_listed_noise_choice_builds_for_the_digits(noise):
    """Every --noise choice makes noise for (1, 8, 8) digit images (no missing parameter)."""
    process = tiny_config(noise=noise).build_process()
    x_t, _ = process.q_sample(torch.zeros(2, 1, 8, 8), torch.tensor([3, 50]))
    assert x_t.shape == (2, 1, 8, 8) and torch.isfinite(x_t).all()


def test_a_schedule_shorter_than_the_ddim_default_still_samples(tmp_path, capsys):
    config = tiny_config(steps=2, diffusion_steps=10, final_samples=4, noise="pink")
    assert _train(tmp_path / "run", "--noise", "pink", config=config) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (tmp_path / "run" / "samples.png").exists() and summary["steps"] == 2
    assert main(["sample", str(tmp_path / "run"), "--num", "2", "--out", str(tmp_path / "s")]) == 0


def test_an_empty_folder_path_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)  # was: folder: read the current folder, silently
    Image.new("L", (8, 8)).save(tmp_path / "here.png")
    assert main(["train", "run", "--data", "folder:"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "noisejump train: error: data 'folder:' names no folder; write folder:PATH "
        "(folder:. for the current folder)"
    ]
    assert not (tmp_path / "run").exists()


def _pictures(folder, count=4):
    from PIL import Image

    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        pixels = torch.randint(0, 256, (8, 8), generator=generator, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")


def test_one_folder_spelt_three_ways_is_the_same_data_on_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _pictures(tmp_path / "x")
    config = tiny_config(steps=2, checkpoint_every=2, batch_size=4)
    data = ["--data", "folder:./x/", "--image-size", "8"]
    assert _train("run", *data, config=config) == 0
    capsys.readouterr()
    for i, spelling in enumerate(("folder:x", f"folder:{tmp_path / 'x'}"), start=1):
        more = tiny_config(steps=2 + 2 * i, checkpoint_every=2, batch_size=4)
        # was "data: checkpoint folder:./x/ vs now folder:x", exit 2
        assert _train("run", "--resume", "--data", spelling, "--image-size", "8",
                      config=more) == 0, capsys.readouterr().err  # fmt: skip
        assert json.loads(capsys.readouterr().out)["resumed_from"] == 2 * i
    # Another folder under the same relative name is another data set.
    (tmp_path / "elsewhere").mkdir()
    _pictures(tmp_path / "elsewhere" / "x")
    monkeypatch.chdir(tmp_path / "elsewhere")
    more = tiny_config(steps=8, checkpoint_every=2, batch_size=4)
    assert _train(tmp_path / "run", "--resume", "--data", "folder:x", "--image-size", "8",
                  config=more) == 2  # fmt: skip
    assert f"data: checkpoint 'folder:{tmp_path / 'x'}' vs now" in capsys.readouterr().err


@pytest.mark.parametrize(("first", "then"), [([], ["--no-bf16"]), (["--no-bf16"], [])])
def test_bf16_changes_nothing_on_the_cpu_and_does_not_block_resume(tmp_path, capsys, first, then):
    """bfloat16 autocast is used on CUDA only: on the CPU --no-bf16 trains the same run,
    and a resume with or without it continues the run (it was refused as a changed
    option)."""
    assert _train(tmp_path / "a", *first, config=tiny_config(steps=2, checkpoint_every=2)) == 0
    if then:  # the same run with and without --no-bf16 (the losses once are enough)
        assert _train(tmp_path / "b", *then, config=tiny_config(steps=2)) == 0
        losses = [json.loads((tmp_path / r / "losses.json").read_text()) for r in ("a", "b")]
        assert losses[0] == losses[1]
    capsys.readouterr()
    assert _train(tmp_path / "a", "--resume", *then, config=tiny_config(steps=3)) == 0
    err = capsys.readouterr().err
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["resumed_from"] == 2
    if then:  # given, and different from the run's: said to have no effect
        assert "bf16 False has no effect on cpu" in err and "keeps bf16 True" in err
    else:  # not given: the run's own value, nothing to say
        assert "bf16" not in err
