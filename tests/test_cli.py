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
    assert "t must be integers in [0, 999], got 1000" in capsys.readouterr().err


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
