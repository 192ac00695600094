"""A run never loses good work: kill -9 and injected errors at every write point of a
checkpoint, damaged and incomplete checkpoints, a second writer, SIGINT and SIGTERM.
Each case ends with ``--resume`` and the check that the run equals an uninterrupted one.

Kills happen in a forked child (``in_child``): the same code path as a separate process,
without a new interpreter's seconds of start-up per case.
"""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest
import torch
from _train_helpers import cli_args, in_child, losses, one_thread, start_child, tiny_config

from noisejump.cli import main
from noisejump.train import checkpoint, faults
from noisejump.train.errors import CheckpointWriteError
from noisejump.train.loop import train

#: Two checkpoints (steps 4 and 8), only the newest kept: the second write prunes the first.
CONFIG = tiny_config(steps=8, checkpoint_every=4, keep_checkpoints=1)
WRITE_POINTS = [p for p in checkpoint.KILL_POINTS if p != "prune"]  # those that can fail


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> list[float]:
    """The losses of the uninterrupted run."""
    run = tmp_path_factory.mktemp("whole") / "run"
    with one_thread():
        train(CONFIG, run, progress=False)
    return losses(run)


def names(run_dir) -> list[str]:
    return sorted(p.name for p in checkpoint.checkpoint_dir(run_dir).iterdir())


def resume_and_compare(run_dir, whole) -> dict:
    """Resume, check the losses equal the uninterrupted run's, every checkpoint left is
    intact and nothing temporary remains."""
    summary = train(CONFIG, run_dir, resume=True, progress=False)
    assert losses(run_dir) == whole
    assert all(checkpoint.load(p) for p in checkpoint.complete_checkpoints(run_dir))
    assert not [n for n in names(run_dir) if n.startswith((".tmp", ".trash"))]
    return summary


def _train_child(run_dir, config=CONFIG):
    return lambda: train(config, run_dir, progress=False) and 0


@pytest.mark.parametrize("point", checkpoint.KILL_POINTS)
def test_kill_9_at_each_write_point_then_resume_loses_nothing(tmp_path, whole, point):
    run = tmp_path / "run"
    status = in_child(_train_child(run), env={faults.KILL_ENV: f"{point}@8"})
    assert status == -signal.SIGKILL
    complete = [p.name for p in checkpoint.complete_checkpoints(run)]
    renamed = checkpoint.KILL_POINTS.index(point) >= checkpoint.KILL_POINTS.index("rename")
    # Before the rename step 4 is the newest complete checkpoint; from the rename on,
    # step 8 is (and step 4 may be gone: it was pruned, which is allowed then).
    assert complete[-1] == ("step-00000008" if renamed else "step-00000004")
    checkpoint.load(run / "checkpoints" / complete[-1])  # intact
    summary = resume_and_compare(run, whole)
    assert summary["resumed_from"] == (8 if renamed else 4)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


#: ENOSPC (full disk) at every write point; EROFS (read-only folder) where it strikes
#: first. The serializer's own error (not an OSError) has its test below.
FAILURES = [(point, errno.ENOSPC) for point in WRITE_POINTS] + [("directory", errno.EROFS)]


@pytest.mark.parametrize("point, code", FAILURES)
def test_an_error_at_each_write_point_is_one_line_and_keeps_earlier_checkpoints(
    tmp_path, whole, point, code, monkeypatch, capsys
):
    def fail_at_checkpoint_8(at, step):
        if (at, step) == (point, 8):
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(faults, "reached", fail_at_checkpoint_8)
    run = tmp_path / "run"
    assert main(["train", str(run), "--quiet", *cli_args(CONFIG), "--keep-checkpoints", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "could not write checkpoint" in err and "earlier checkpoints are untouched" in err
    after_rename = point == "rename"  # the directory is in place; pruning never started
    expected = ["step-00000004", "step-00000008"] if after_rename else ["step-00000004"]
    assert names(run) == expected  # no temporary directory left to fill the disk
    monkeypatch.undo()
    resume_and_compare(run, whole)


def test_the_serializers_own_error_is_caught(tmp_path, whole, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    real = safetensors.torch.save
    calls = []

    def fails_on_the_second_checkpoint(tensors, *args, **kwargs):
        calls.append(1)
        if len(calls) > len(checkpoint.TENSOR_FILES):
            raise SafetensorError("Error while serializing: IoError(No space left on device)")
        return real(tensors, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save", fails_on_the_second_checkpoint)
    with pytest.raises(CheckpointWriteError, match="earlier checkpoints are untouched"):
        train(CONFIG, tmp_path / "run", progress=False)
    assert names(tmp_path / "run") == ["step-00000004"]  # no temporary directory left
    monkeypatch.undo()
    resume_and_compare(tmp_path / "run", whole)


def test_a_full_disk_at_the_summary_keeps_the_final_checkpoint(tmp_path, whole, monkeypatch):
    from noisejump.train import files

    real = files.replace

    def full_at_summary(path, data):
        if path.name == "summary.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(files, "replace", full_at_summary)
    with pytest.raises(OSError, match="summary.json .*the checkpoints are intact"):
        train(CONFIG, tmp_path / "run", progress=False)
    monkeypatch.undo()
    assert resume_and_compare(tmp_path / "run", whole)["resumed_from"] == 8


def _flip(path, offset_from_end: int, count: int = 8) -> None:
    """Overwrite ``count`` bytes with 0xFF, ``offset_from_end`` bytes before the end (in
    a safetensors file: inside the tensor data, past the header)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end : -offset_from_end + count] = b"\xff" * count
    path.write_bytes(bytes(data))


def _flip_one_bit(path, offset_from_end: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01  # a finite weight changes in its last bits
    path.write_bytes(bytes(data))


def _change_a_loss(path) -> None:
    """One digit of the first loss in state.json: still valid JSON of the right shape."""
    text = path.read_text()
    at = text.index('"losses"') + text[text.index('"losses"') :].index(".") + 2
    path.write_text(text[:at] + chr(ord(text[at]) ^ 0x01) + text[at + 1 :])


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "model 8 bytes 0xFF": lambda c: _flip(c / "model.safetensors", 64),
    "ema one bit": lambda c: _flip_one_bit(c / "ema.safetensors"),
    "optimizer truncated": lambda c: _truncate(c / "optimizer.safetensors"),
    "state.json one digit": lambda c: _change_a_loss(c / "state.json"),
    "state.json truncated": lambda c: _truncate(c / "state.json"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_set_aside_and_the_intact_one_used(tmp_path, whole, damage, capsys):
    run = tmp_path / "run"
    train(tiny_config(steps=8, checkpoint_every=4, final_samples=0), run, progress=False)
    newest = run / "checkpoints" / "step-00000008"
    DAMAGE[damage](newest)
    with pytest.raises(checkpoint.CheckpointDamaged, match="is damaged"):
        checkpoint.load(newest)
    # sample skips it (a reader never renames) and draws finite samples from step 4.
    assert main(["sample", str(run), "--num", "4", "--steps", "2", "--out", str(run / "s")]) == 0
    err = capsys.readouterr().err
    assert "step-00000008 is damaged" in err and "step-00000004" in err
    from safetensors.torch import load_file

    assert torch.isfinite(load_file(str(run / "s.safetensors"))["samples"]).all()
    assert newest.is_dir()
    # The explicit directory is an error, not a silent fallback.
    assert main(["sample", str(newest), "--out", str(tmp_path / "t")]) == 2
    assert "is damaged" in capsys.readouterr().err
    # train --resume sets it aside (kept, renamed) and continues from step 4.
    (run / "summary.json").unlink()
    summary = train(CONFIG, run, resume=True, progress=False)
    assert summary["resumed_from"] == 4 and losses(run) == whole
    assert "set aside as damaged-step-00000008" in capsys.readouterr().err
    assert (run / "checkpoints" / "damaged-step-00000008").is_dir()


def test_every_checkpoint_damaged_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(steps=4, checkpoint_every=4), run, progress=False)
    _flip(run / "checkpoints" / "step-00000004" / "model.safetensors", 64)
    assert main(["evaluate", str(run), "--num", "4"]) == 2
    assert "no intact checkpoint" in capsys.readouterr().err
    assert main(["train", str(run), "--resume", "--quiet", *cli_args(tiny_config())]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_an_incomplete_step_directory_is_set_aside_and_never_blocks_resume(tmp_path, whole, capsys):
    run = tmp_path / "run"
    train(tiny_config(steps=8, checkpoint_every=4), run, progress=False)
    (run / "summary.json").unlink()
    (run / "checkpoints" / "step-00000008" / "state.json").unlink()
    for _ in range(2):  # today every later --resume failed with "already exists"
        summary = train(CONFIG, run, resume=True, progress=False)
        assert losses(run) == whole
        (run / "summary.json").unlink()
    assert summary["resumed_from"] == 8  # the second resume: from the rewritten step 8
    assert "has no state.json (incomplete); set aside as incomplete-step-00000008" in (
        capsys.readouterr().err
    )
    kept = run / "checkpoints" / "incomplete-step-00000008"
    assert (kept / "model.safetensors").is_file()  # renamed, never deleted


def test_a_second_writer_exits_at_once_naming_the_first(tmp_path, whole, capsys):
    run = tmp_path / "run"
    paused_read, paused_write = os.pipe()
    never_read, never_write = os.pipe()

    def pause_in_step_6(step, rank):
        if step == 6:  # after checkpoint 4, holding the lock
            os.write(paused_write, b"1")
            os.read(never_read, 1)

    def first_writer():
        faults.in_step = pause_in_step_6  # only in this forked child
        return train(CONFIG, run, progress=False) and 0

    pid = start_child(first_writer)
    os.read(paused_read, 1)
    before = names(run)
    for extra in ([], ["--resume"]):  # a new run or a resume: both wait for nobody
        code = main(["train", str(run), "--quiet", *cli_args(CONFIG), *extra])
        err = capsys.readouterr().err
        assert code == 1 and f"in use by process {pid}" in err and err.count("\n") == 1, err
    assert names(run) == before  # the second writer touched nothing
    os.kill(pid, signal.SIGKILL)  # kill -9 leaves no stale lock
    os.waitpid(pid, 0)
    assert resume_and_compare(run, whole)["resumed_from"] == 4
    for fd in (paused_read, paused_write, never_read, never_write):
        os.close(fd)


@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, whole, name, code):
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    args = ["train", str(run), "--quiet", *cli_args(CONFIG), "--keep-checkpoints", "1"]
    status = in_child(lambda: main(args), env={faults.SIGNAL_ENV: f"{name}@6"}, stderr=log)
    err = log.read_text()
    assert status == code, err
    assert "Traceback" not in err
    assert f"stopped by {name} after step 6" in err and f"noisejump train {run} --resume" in err
    assert [p.name for p in checkpoint.complete_checkpoints(run)] == ["step-00000006"]
    assert checkpoint.load(run / "checkpoints" / "step-00000006")[1]["step"] == 6
    assert resume_and_compare(run, whole)["resumed_from"] == 6


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, whole):
    run, log = tmp_path / "run", tmp_path / "stderr.txt"

    def twice_in_step_6(step, rank):
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second acts at once

    def child():
        faults.in_step = twice_in_step_6  # only in this forked child
        return main(["train", str(run), "--quiet", *cli_args(CONFIG)])

    assert in_child(child, stderr=log) == 130
    err = log.read_text()
    assert "stopped at once (second interrupt)" in err and "Traceback" not in err, err
    assert [p.name for p in checkpoint.complete_checkpoints(run)] == ["step-00000004"]
    assert resume_and_compare(run, whole)["resumed_from"] == 4


def test_a_checkpoint_from_before_checksums_is_read_with_a_warning(tmp_path, whole, capsys):
    run = tmp_path / "run"
    train(tiny_config(steps=4, checkpoint_every=4), run, progress=False)
    state_file = run / "checkpoints" / "step-00000004" / "state.json"
    state = json.loads(state_file.read_text())
    for key in ("sha256", "state_sha256", "data_fingerprint", "step_seconds", "noise_seconds"):
        del state[key]  # what format 1 wrote
    state_file.write_text(json.dumps({**state, "format_version": 1}))
    summary = train(CONFIG, run, resume=True, progress=False)
    assert summary["resumed_from"] == 4 and losses(run) == whole
    assert "written before checksums: not verified" in capsys.readouterr().err


def _signal_at_third_evaluation(name, calls):
    """During the final sampling: the process signals itself at the sampler's third
    network evaluation; ``calls`` counts the evaluations made."""
    from noisejump.train import sampling

    real = sampling._predict_x0

    def counted(*args, **kwargs):
        count = int(calls.read_text()) + 1 if calls.exists() else 1
        calls.write_text(str(count))
        if count == 3:
            os.kill(os.getpid(), signal.Signals[name])
        return real(*args, **kwargs)

    sampling._predict_x0 = counted


def _signal_while_writing_the_last_checkpoint(name, calls):
    """Between the last step's agreement on signals and the end of its checkpoint write."""

    def at_state_json_8(point, step):
        if (point, step) == ("state.json", 8):
            os.kill(os.getpid(), signal.Signals[name])

    faults.reached = at_state_json_8


@pytest.mark.parametrize(
    "when", [_signal_at_third_evaluation, _signal_while_writing_the_last_checkpoint]
)
@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_after_the_last_step_stops_at_once_and_resume_finishes_the_run(
    tmp_path, whole, when, name, code, capsys
):
    run, log, calls = tmp_path / "run", tmp_path / "stderr.txt", tmp_path / "calls"
    config = tiny_config(steps=8, checkpoint_every=4, final_samples=4)

    def child():
        when(name, calls)  # only in this forked child
        return main(["train", str(run), "--quiet", *cli_args(config)])

    status = in_child(child, stderr=log)
    err = log.read_text()
    assert status == code and "Traceback" not in err, err
    assert f"stopped by {name} after step 8, the last," in err
    assert (
        f"to write the summary and the final samples, run `noisejump train {run} --resume`" in err
    )
    if when is _signal_at_third_evaluation:
        assert (
            calls.read_text() == "3"
        )  # of DDIM's 50: it stopped in the evaluation it got the signal
    assert not (run / "summary.json").exists() and not (run / "samples.png").exists()
    assert checkpoint.load(run / "checkpoints" / "step-00000008")[1]["step"] == 8
    # --resume alone (every option from the run) writes what is missing and nothing else.
    capsys.readouterr()
    assert main(["train", str(run), "--resume", "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed_from"] == 8
    assert summary["steps"] == 8 and (run / "samples.png").stat().st_size > 0
    assert losses(run) == whole


def test_resume_alone_continues_with_every_option_the_run_saved(tmp_path, whole, capsys):
    """``--resume`` without --steps or any other option: the saved run's values (it was
    the defaults: a refusal listing a dozen changed options)."""
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    args = ["train", str(run), "--quiet", *cli_args(CONFIG), "--keep-checkpoints", "1"]
    assert in_child(lambda: main(args), env={faults.SIGNAL_ENV: "SIGINT@6"}, stderr=log) == 130
    assert main(["train", str(run), "--resume", "--quiet"]) == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == 6 and summary["steps"] == 8
    assert losses(run) == whole
    assert [p.name for p in checkpoint.complete_checkpoints(run)] == ["step-00000008"]
    # Once finished, --resume alone has nothing to do, and says which option would.
    capsys.readouterr()
    assert main(["train", str(run), "--resume", "--quiet"]) == 2
    assert "pass --steps above 8 to train further" in capsys.readouterr().err
