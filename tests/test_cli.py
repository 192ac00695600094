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
        (["bench", "--batch", "0"], "must be an integer in [1, 65536], got 0"),
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


@pytest.mark.parametrize(
    "command", ["train", "objective", "sample", "evaluate", "show", "bench", "verify"]
)
def test_an_unknown_option_of_a_subcommand_points_to_its_own_help(capsys, tmp_path, command):
    positional = [str(tmp_path / "run")] if command in ("train", "sample", "evaluate") else []
    with pytest.raises(SystemExit) as exit_info:
        main([command, *positional, "--stpes"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"noisejump {command}: error: unrecognized arguments: --stpes",
        f"See 'noisejump {command} --help'.",
    ]
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):  # before the command: the top level's own error
        main(["--stpes", "3", "verify"])
    assert capsys.readouterr().err.splitlines()[1] == "See 'noisejump --help'."


#: (argv, the option, its bound): each size option one past its documented bound.
TOO_BIG = [
    (["train", "R", "--channels", "100000"], "--channels", 1024),
    (["train", "R", "--channel-mult", "1", "17"], "--channel-mult", 16),
    (["train", "R", "--num-blocks", "17"], "--num-blocks", 16),
    (["train", "R", "--image-size", "1025"], "--image-size", 1024),
    (["train", "R", "--attention-resolutions", "2048"], "--attention-resolutions", 1024),
    (["train", "R", "--diffusion-steps", "100001"], "--diffusion-steps", 100_000),
    (["train", "R", "--batch-size", "65537"], "--batch-size", 65_536),
    (["train", "R", "--final-samples", "65537"], "--final-samples", 65_536),
    (["sample", "R", "--num", "65537"], "--num", 65_536),
    (["evaluate", "R", "--num", "65537"], "--num", 65_536),
    (["show", "--size", "100000"], "--size", 1024),
    (["show", "--diffusion-steps", "100001"], "--diffusion-steps", 100_000),
    (["schedules", "--diffusion-steps", "100001"], "--diffusion-steps", 100_000),
    (["bench", "--batch", "65537"], "--batch", 65_536),
    (["verify", "--n", "65537"], "--n", 65_536),
]


@pytest.mark.parametrize(("argv", "option", "bound"), TOO_BIG)
def test_size_options_are_refused_above_their_documented_bound(
    capsys, tmp_path, argv, option, bound
):
    argv = [str(tmp_path / a) if a == "R" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    low = 0 if option == "--final-samples" else 1
    assert f"argument {option}: must be an integer in [{low}, {bound}]" in err, err
    assert not (tmp_path / "R").exists()
    with pytest.raises(SystemExit):
        main([argv[0], "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # the bound, as --help states it
    assert f"at most {bound}" in help_text


def test_benchs_whole_tensor_is_bounded(capsys):
    assert main(["bench", "--batch", "65536", "--shape", "3", "256", "256"]) == 2
    assert "is 12884901888 elements; at most 2^30" in capsys.readouterr().err


def test_photos_larger_than_their_crops_are_a_clear_error(tmp_path, capsys):
    from sklearn.datasets import load_sample_images

    from noisejump.train.data import PHOTO_MAX_SIZE

    # Crops span up to 4 x size pixels of the photos: the bound is what the photos allow.
    assert PHOTO_MAX_SIZE == min(min(p.shape[:2]) for p in load_sample_images().images) // 4
    argv = ["train", str(tmp_path / "run"), "--data", "photos", "--image-size", "107"]
    assert main(argv) == 2  # was "error: high <= 0", from NumPy's random crop
    err = capsys.readouterr().err
    assert "image_size for photos must be at most 106" in err and "got 107" in err


@pytest.mark.parametrize(
    ("allocate", "said"),
    [
        (lambda: torch.empty(2**50), "could not allocate 4.0 PiB"),  # PyTorch's CPU allocator
        (lambda: __import__("numpy").empty(2**50), "could not allocate 8.00 PiB"),  # NumPy's
    ],
)
def test_an_allocation_failure_is_one_line(monkeypatch, capsys, allocate, said):
    from noisejump.bench import chain

    monkeypatch.setattr(chain, "chain_vs_closed", lambda *args, **kwargs: allocate())
    assert main(["bench", "--batch", "2", "--shape", "4"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"noisejump bench: error: out of memory: {said}; choose smaller sizes (their bounds "
        "are in 'noisejump bench --help')"
    ]


def test_other_runtime_errors_are_not_taken_for_a_full_memory(monkeypatch):
    from noisejump.bench import chain

    def fails(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(chain, "chain_vs_closed", fails)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["bench", "--batch", "2", "--shape", "4"])
