"""``noisejump show`` and ``noisejump schedules``: pictures, and what the pictures show."""

from __future__ import annotations

import math

import pytest
import torch

import noisejump as nj
from noisejump import stats
from noisejump.cli import main
from noisejump.train.trajectories import trajectory_rows

ALPHA = 1e-3  # false-alarm rate of each statistical check


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    from sklearn.datasets import load_sample_images

    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    Image.fromarray(load_sample_images().images[1]).save(path)
    return path


def test_closed_form_and_chain_rows_both_have_the_marginal_law(photo):
    from noisejump.train.pictures import load_image

    image = load_image(photo, 64)  # 12 288 values: the variance has a 1.3 % standard error
    steps = [0, 300, 999]
    rows, notes = trajectory_rows(image, steps, seed=0)
    assert {"isotropic\nclosed form", "isotropic\nchain"} <= set(rows)
    schedule = nj.get_schedule("linear", 1000)
    signal = schedule.sqrt_alphas_cumprod[300].item()
    sigma = schedule.sqrt_one_minus_alphas_cumprod[300].item()
    for label in ("isotropic\nclosed form", "isotropic\nchain"):
        x_t = rows[label][1]
        assert x_t.shape == image.shape[1:]
        z = (x_t - signal * image[0]) / sigma  # N(0, I) under q(x_t | x0)
        assert min(stats.ks_normal(z), stats.variance_pvalue(z), stats.mean_pvalue(z)) > ALPHA / 3
        assert stats.variance_pvalue(z * math.sqrt(1.1)) < ALPHA / 3  # control: variance x 1.1
    assert not torch.equal(rows["isotropic\nclosed form"][1], rows["isotropic\nchain"][1])
    for note in notes:  # rows the library cannot draw yet are named, not faked
        assert "no " in note


def test_show_and_schedules_write_pngs(photo, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "trajectory.png"
    assert main(["show", str(photo), "--steps", "0", "100", "999", "--size", "16",
                 "--out", str(out)]) == 0  # fmt: skip
    assert Image.open(out).size[0] > 200
    out = tmp_path / "schedules.png"
    assert main(["schedules", "linear", "cosine", "--zero-terminal-snr", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 200


def test_show_errors(tmp_path, capsys):
    assert main(["show", str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["show", str(tmp_path / "bad.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    from PIL import Image

    Image.new("RGB", (10, 10)).save(tmp_path / "ok.png")
    assert main(["show", str(tmp_path / "ok.png"), "--steps", "1000"]) == 2
    assert "in [0, 999]" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["show", "schedules"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "examples:" in capsys.readouterr().out
