"""What a run reads and writes: range-checked flags, resume rules, the data fingerprint,
folder images (16-bit, EXIF, alpha), sample outputs, file permissions, the shape of a
state file, strict JSON, and divergence made visible."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat

import numpy as np
import pytest
import torch
from _train_helpers import cli_args, losses, one_thread, tiny_config

from noisejump.cli import main
from noisejump.train import checkpoint, data, divergence, faults
from noisejump.train.config import TrainConfig
from noisejump.train.divergence import DivergenceWatch
from noisejump.train.errors import Diverged
from noisejump.train.loop import train


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def strict(path) -> object:
    """The JSON of ``path``; fails on NaN or Infinity (which Python's json accepts)."""

    def refuse(token):
        raise AssertionError(f"{path} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _exit_code(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "inf", "finite"),
        ("--lr", "nan", "finite"),
        ("--lr", "5", "lr must be in (0, 1]"),
        ("--grad-clip", "inf", "finite"),
        ("--ema-halflife-ksamples", "nan", "finite"),
        ("--snr-gamma", "-1", "finite number > 0"),
        ("--seed", "-1", "[0, 2^32)"),
        ("--seed", str(2**32), "[0, 2^32)"),
    ],
)
def test_non_finite_and_out_of_range_flags_are_refused_before_any_work(
    tmp_path, capsys, flag, value, message
):
    code, err = _exit_code(["train", str(tmp_path / "run"), flag, value], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "run").exists()


def test_sample_and_evaluate_seeds_are_range_checked(tmp_path, capsys):
    for command in ("sample", "evaluate"):
        code, err = _exit_code([command, str(tmp_path), "--seed", "-1"], capsys)
        assert code == 2 and "[0, 2^32)" in err


def test_config_validation_names_the_bad_value():
    for bad, message in [
        (dict(lr=math.inf), "lr must be a finite number > 0, got inf"),
        (dict(grad_clip=math.nan), "grad_clip must be a finite number > 0"),
        (dict(steps=True), "steps must be a positive integer, got True"),
        (dict(warmup_steps=-1), "warmup_steps must be an integer >= 0, got -1"),
        (dict(seed=2**40), "seed must be an integer in [0, 2^32)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            tiny_config(**bad).validate()


def test_resume_with_no_more_steps_is_refused_and_the_summary_kept(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(run), "--quiet", *cli_args(tiny_config(steps=8))]) == 0
    capsys.readouterr()
    summary = (run / "summary.json").read_bytes()
    for steps, words in ((4, "is at step 8"), (8, "already finished at step 8")):
        argv = ["train", str(run), "--resume", "--quiet", *cli_args(tiny_config(steps=steps))]
        code, err = _exit_code(argv, capsys)
        assert code == 2 and words in err and "pass --steps above 8" in err
    assert (run / "summary.json").read_bytes() == summary  # never overwritten with zeros
    values = strict(run / "summary.json")
    assert values["status"] == "finished" and values["samples_per_second"] > 0
    assert 0 < values["noise_share"] < 1
    for name in ("losses.json", "summary.json"):
        strict(run / name)
    strict(run / "checkpoints" / "step-00000008" / "state.json")


def _png_folder(folder, count=3):
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(folder / f"{i}.png")


def test_changed_folder_data_is_refused_on_resume_unless_allowed(tmp_path, capsys):
    folder, run = tmp_path / "pictures", tmp_path / "run"
    _png_folder(folder)
    config = tiny_config(steps=2, checkpoint_every=2, batch_size=2, data=f"folder:{folder}",
                         image_size=8)  # fmt: skip
    train(config, run, progress=False)
    more = tiny_config(**{**config.to_json(), "steps": 4})
    info = (folder / "1.png").stat()
    os.utime(folder / "1.png", ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # touched
    with pytest.raises(ValueError, match="the data changed since checkpoint .*allow-changed-data"):
        train(more, run, resume=True, progress=False)
    os.utime(folder / "1.png", ns=(info.st_atime_ns, info.st_mtime_ns))
    _png_folder(tmp_path / "extra", 1)
    (tmp_path / "extra" / "0.png").rename(folder / "3.png")  # one more image
    with pytest.raises(ValueError, match="3 files, .* now 4 files"):
        train(more, run, resume=True, progress=False)
    summary = train(more, run, resume=True, progress=False, allow_changed_data=True)
    assert summary["resumed_from"] == 2
    assert "continuing on changed data" in capsys.readouterr().err
    # The new data is now the run's: a further resume on it needs no flag.
    assert train(tiny_config(**{**config.to_json(), "steps": 6}), run, resume=True,
                 progress=False)["resumed_from"] == 4  # fmt: skip


def _load_folder(folder) -> torch.Tensor:
    return data.load_images(f"folder:{folder}", image_size=4)


def test_sixteen_bit_pngs_are_scaled_by_their_range(tmp_path):
    from PIL import Image

    (tmp_path / "deep").mkdir()
    for value in (1000, 32768, 65535):
        pixels = np.full((4, 4), value, dtype=np.uint16)
        Image.fromarray(pixels).save(tmp_path / "deep" / f"{value:05d}.png")
    with Image.open(tmp_path / "deep" / "01000.png") as image:
        assert image.mode.startswith("I")  # Pillow reads it as 16-bit
    images = _load_folder(tmp_path / "deep")
    assert images.shape == (3, 3, 4, 4)
    expected = torch.tensor([1000, 32768, 65535]) / 65535 * 2 - 1
    torch.testing.assert_close(images.mean((1, 2, 3)), expected.float(), rtol=0, atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    (tmp_path / "turned").mkdir()
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[:, 2:] = 255  # stored: left half black, right half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 3  # Orientation: rotate 180 degrees to display
    image.save(tmp_path / "turned" / "a.jpg", exif=exif, quality=100)
    shown = _load_folder(tmp_path / "turned")[0, 0]
    assert shown[:, :2].mean() > 0.9 and shown[:, 2:].mean() < -0.9  # displayed: white, black


def test_transparent_pixels_are_composited_on_white(tmp_path):
    from PIL import Image

    (tmp_path / "alpha").mkdir()
    pixels = np.zeros((4, 4, 4), dtype=np.uint8)  # transparent black
    pixels[:2] = (255, 0, 0, 255)  # top: opaque red
    Image.fromarray(pixels, "RGBA").save(tmp_path / "alpha" / "a.png")
    loaded = _load_folder(tmp_path / "alpha")[0]
    assert data.ALPHA_BACKGROUND == (255, 255, 255)
    torch.testing.assert_close(loaded[:, 2:], torch.ones(3, 2, 4))  # white, not black
    torch.testing.assert_close(
        loaded[:, :2], torch.tensor([1.0, -1, -1]).view(3, 1, 1).expand(3, 2, 4)
    )


def _run_with_samples(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(run), "--quiet", *cli_args(tiny_config(steps=4))]) == 0
    capsys.readouterr()
    return run


def test_sample_never_writes_inside_a_checkpoint(tmp_path, capsys):
    run = _run_with_samples(tmp_path, capsys)
    step = run / "checkpoints" / "step-00000004"
    before = (step / "model.safetensors").read_bytes()
    for out in (step / "model", run / "checkpoints" / "drawn"):
        code, err = _exit_code(["sample", str(run), "--num", "2", "--out", str(out)], capsys)
        assert code == 2 and "inside checkpoint folder" in err
    assert (step / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in step.iterdir()) == [
        "ema.safetensors", "model.safetensors", "optimizer.safetensors",
        "sampler.safetensors", "state.json",
    ]  # fmt: skip


def test_checkpoints_and_samples_have_the_permissions_of_the_pngs(tmp_path, capsys):
    previous = os.umask(0o022)
    try:
        run = tmp_path / "run"
        config = tiny_config(steps=2, final_samples=2)
        assert main(["train", str(run), "--quiet", *cli_args(config)]) == 0
        out = tmp_path / "drawn"
        assert main(["sample", str(run), "--num", "2", "--steps", "2", "--out", str(out)]) == 0
    finally:
        os.umask(previous)
    png_mode = stat.S_IMODE((run / "samples.png").stat().st_mode)
    assert png_mode == 0o644
    written = [*(run / "checkpoints" / "step-00000002").iterdir(), out.with_suffix(".safetensors"),
               run / "summary.json", run / "losses.json"]  # fmt: skip
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == png_mode, path


def _rewrite_state(step_dir, change) -> None:
    """Apply ``change(state)`` and re-sign state.json as ``save`` would (an independent
    re-implementation: SHA-256 of the canonical JSON without "state_sha256")."""
    state = json.loads((step_dir / "state.json").read_text())
    state = change(state)
    if isinstance(state, dict):
        body = {k: v for k, v in state.items() if k != "state_sha256"}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        state["state_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (step_dir / "state.json").write_text(json.dumps(state))


def _without(key):
    return lambda state: {k: v for k, v in state.items() if k != key}


def _bigger_ema(step_dir):
    """The EMA weights (those ``sample`` reads) with one tensor one element longer."""

    def change(state):
        from safetensors.torch import load_file, save

        tensors = load_file(str(step_dir / "ema.safetensors"))
        name = next(iter(tensors))
        tensors[name] = torch.zeros(tensors[name].numel() + 1)
        data_ = save(tensors)
        (step_dir / "ema.safetensors").write_bytes(data_)
        state["sha256"]["ema.safetensors"] = hashlib.sha256(data_).hexdigest()
        return state

    return change


@pytest.mark.parametrize(
    "shape, message",
    [
        ("a list", "state.json holds a list, not an object"),
        ("no losses", "key 'losses' is missing or not a list"),
        ("step a string", "key 'step' is missing or not an integer"),
        ("wrong-size weights", "the ema weights do not fit the model its config describes"),
    ],
)
def test_a_state_of_the_wrong_shape_is_a_clear_error(tmp_path, capsys, shape, message):
    run = _run_with_samples(tmp_path, capsys)
    step = run / "checkpoints" / "step-00000004"
    change = {
        "a list": lambda state: [state],
        "no losses": _without("losses"),
        "step a string": lambda state: {**state, "step": "4"},
        "wrong-size weights": _bigger_ema(step),
    }[shape]
    _rewrite_state(step, change)
    code, err = _exit_code(["sample", str(step), "--num", "2", "--out", str(tmp_path / "s")],
                           capsys)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err, err
    assert err.count("\n") == 1


@pytest.fixture
def live_parameters(monkeypatch) -> list[torch.nn.Parameter]:
    """The parameters of the model the next ``train`` builds (filled when it builds it)."""
    found: list[torch.nn.Parameter] = []
    real = TrainConfig.build_model

    def build_and_keep(self, shape):
        model = real(self, shape)
        found[:] = list(model.parameters())
        return model

    monkeypatch.setattr(TrainConfig, "build_model", build_and_keep)
    return found


def _poison_in_step(monkeypatch, parameters, at: int, value: float) -> None:
    """After the update of step ``at``, one weight becomes ``value``."""

    def poison(step, rank):
        if step == at:
            with torch.no_grad():
                parameters[0].view(-1)[0] = value

    monkeypatch.setattr(faults, "in_step", poison)


def test_a_non_finite_loss_stops_before_any_checkpoint(
    tmp_path, monkeypatch, capsys, live_parameters
):
    _poison_in_step(monkeypatch, live_parameters, 6, math.nan)  # step 7's loss is NaN
    run = tmp_path / "run"
    argv = ["train", str(run), "--quiet", *cli_args(tiny_config(steps=8)),
            "--keep-checkpoints", "1"]  # fmt: skip
    code, err = _exit_code(argv, capsys)
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1, err
    assert "training diverged: the loss is nan at step 7" in err
    assert [p.name for p in checkpoint.complete_checkpoints(run)] == ["step-00000004"]
    checkpoint.load(run / "checkpoints" / "step-00000004")  # finite and intact
    summary = strict(run / "summary.json")
    assert summary["status"] == "diverged" and summary["steps"] == 6
    assert summary["divergence"] == {"kind": "non-finite loss", "step": 7, "loss": "nan"}
    assert len(strict(run / "losses.json")) == 6


def test_non_finite_weights_stop_before_the_checkpoint_and_nothing_is_pruned(
    tmp_path, monkeypatch, live_parameters
):
    _poison_in_step(monkeypatch, live_parameters, 8, math.inf)  # step 8's loss is finite
    with pytest.raises(Diverged, match="the weights are not finite at step 8"):
        train(tiny_config(steps=8, keep_checkpoints=1), tmp_path / "run", progress=False)
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path / "run")] == ["step-00000004"]
    assert strict(tmp_path / "run" / "summary.json")["divergence"]["kind"] == "non-finite weights"


def test_divergence_watch_flags_growth_by_its_stated_rule():
    assert (divergence.WINDOW, divergence.FACTOR) == (50, 10.0)

    def first_flag(values):
        watch = DivergenceWatch()
        for step, value in enumerate(values, 1):
            watch.update(step, value)
        return watch.summary()

    # 100 steps at 1, then 15: the window mean passes 10 when n of its 50 losses are 15,
    # 15 n + (50 - n) > 500, i.e. n = 33: step 133.
    assert first_flag([1.0] * 100 + [15.0] * 50)["first_step"] == 133
    # Negative controls: growth to 9x never trips it, nor does a lone spike of 400x.
    assert first_flag([1.0] * 100 + [9.0] * 100) is None
    assert first_flag([1.0] * 100 + [400.0] + [1.0] * 60) is None
    # The stated bound for one batch: (x + 49) / 50 > 10 needs x > 451.
    assert first_flag([1.0] * 100 + [460.0] + [1.0] * 60)["first_step"] == 101
    watch = DivergenceWatch()
    watch.update(1, math.nan)
    assert watch.flag == "DIVERGED: loss is nan"


def test_loss_growth_is_flagged_in_the_progress_line_and_the_summary(tmp_path, monkeypatch, capsys):
    from noisejump.train import loop

    real_weights = loop.loss_weights
    calls = []

    def hundredfold_after_step_55(*args):
        calls.append(1)
        return real_weights(*args) * (100.0 if len(calls) > 55 else 1.0)

    config = tiny_config(steps=64, checkpoint_every=64)
    monkeypatch.setattr(loop, "loss_weights", hundredfold_after_step_55)
    summary = train(config, tmp_path / "grows", progress=True)
    err = capsys.readouterr().err
    values = losses(tmp_path / "grows")
    means = [sum(values[k - 50 : k]) / 50 for k in range(50, len(values) + 1)]
    first = next(50 + i for i, m in enumerate(means) if m > 10 * min(means[: i + 1]))
    assert summary["divergence"]["kind"] == "loss growth"
    assert summary["divergence"]["first_step"] == first
    assert f"step {first}/64" in err and "DIVERGING: 50-step mean loss" in err
    assert strict(tmp_path / "grows" / "summary.json")["divergence"]["first_step"] == first
    # Negative control: the same run without the growth is not flagged.
    monkeypatch.undo()
    assert train(config, tmp_path / "steady", progress=False)["divergence"] is None
