"""The noising benchmark runs end to end on a tiny batch and reports what it says."""

import json

import torch

from noisejump import cli
from noisejump.bench.noising import noising


def test_noising_report_has_every_variant_and_consistent_ratios():
    report = noising((2, 3, 8, 8), torch.float32, repeats=1, compile=False, chain=True)
    names = [row.name for row in report.rows]
    for expected in (
        "device copy",
        "torch.randn alone",
        "diffusers add_noise",
        "eager torch closed form",
        "noisejump keyed noise alone",
        "noisejump keyed q_sample, x_t and e",
        "noisejump keyed q_sample, x_t only",
        "train: keyed q_sample + F.mse_loss",
        "train: keyed_x_t + keyed_mse",
        "chain to t = 500",
    ):
        assert any(name.startswith(expected) for name in names), expected
    data = report.as_dict()
    assert data["limit_ms"] == 1.5 * data["copy_ms"] > 0
    diffusers = next(row for row in data["rows"] if row["name"].startswith("diffusers"))
    assert diffusers["ratio_to_diffusers"] == 1.0
    for row in data["rows"]:
        assert row["ms"] > 0
        assert row["ratio_to_limit"] == row["ms"] / data["limit_ms"]
    assert report.table().count("\n") == len(report.rows) + 1


def test_cli_runs_the_noising_suite_as_json(capsys):
    argv = ["bench", "--suite", "noising", "--batch", "2", "--shape", "4", "4"]
    assert cli.main(argv + ["--repeats", "1", "--no-compile", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shape"] == [2, 4, 4] and data["device"] == "cpu"
