"""The command line: help, the bench job on a tiny shape, and clear errors."""

import json
import subprocess
import sys

import pytest
import torch

from noisejump.cli import main


def test_help_lists_bench(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "bench" in capsys.readouterr().out


def test_bench_json_on_a_tiny_shape(capsys):
    argv = ["bench", "--batch", "2", "--shape", "3", "4", "--steps", "0", "5", "--repeats", "2"]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["t"] for row in report["rows"]] == [0, 5]
    assert report["shape"] == [2, 3, 4]
    assert all(row["closed_ms"] > 0 and row["chain_ms"] > 0 for row in report["rows"])


def test_bench_table(capsys):
    assert main(["bench", "--batch", "2", "--shape", "4", "--steps", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "closed form" in out


def test_bench_rejects_a_step_out_of_range(capsys):
    assert main(["bench", "--batch", "2", "--shape", "4", "--steps", "1000"]) == 2
    assert "t must be integers in [-1, 999], got 1000" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--batch", "0"], "must be a positive integer"),
        (["bench", "--steps", "-3"], "steps are >= 0"),
        (["bench", "--dtype", "int8"], "invalid choice"),
        pytest.param(
            ["bench", "--device", "cuda:0"],
            "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible"),
        ),
    ],
)
def test_bench_option_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "noisejump", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("noisejump ")


@pytest.mark.parametrize("command", ["train", "sample", "evaluate"])
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "argument --device: device must be cpu or cuda[:N], got 'gpu'"),
        pytest.param(
            "cuda",
            "argument --device: cuda requested but no CUDA device is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible"),
        ),
    ],
)
def test_device_is_checked_by_every_command_that_takes_one(
    capsys, tmp_path, command, device, message
):
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(tmp_path / "run"), "--device", device])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"noisejump {command}: error: {message}" + (
        f" (PyTorch {torch.__version__} is a CPU-only build)"
        if device == "cuda" and not torch.version.cuda
        else ""
    )
    assert not (tmp_path / "run").exists()


def test_an_argument_error_is_one_line_and_a_pointer_to_help(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "run"), "--lr", "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "noisejump train: error: argument --lr: must be a finite number > 0, got -1",
        "See 'noisejump train --help'.",
    ]
    with pytest.raises(SystemExit):
        main(["trian"])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("noisejump: error: argument COMMAND: invalid")
    assert lines[1] == "See 'noisejump --help'." and "usage" not in lines[0]


class _ClosedPipe:
    """A stdout whose reader has gone: every write raises BrokenPipeError."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_a_closed_stdout_ends_quietly_with_141(monkeypatch, capsys):
    from noisejump.cli import EXIT_BROKEN_PIPE

    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["verify", "--list"]) == EXIT_BROKEN_PIPE == 141
    assert main(["--version"]) == 141  # argparse's own printing, then SystemExit
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["verify", "--n", "20"], ["--help"]])
def test_a_real_broken_pipe_leaves_no_traceback(argv):
    """`noisejump verify | head -1` with the reader gone before the report is written."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has exited: the report's write gets EPIPE
    result = subprocess.run(
        [sys.executable, "-m", "noisejump", *argv], stdout=write_end, stderr=subprocess.PIPE,
        text=True, timeout=120,
    )  # fmt: skip
    os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""
