"""``noisejump show`` and ``noisejump schedules``: pictures, and what the pictures show."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import noisejump as nj
from noisejump import stats
from noisejump.cli import main
from noisejump.processes import BlurringProcess
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
    rows = trajectory_rows(image, steps, seed=0)
    assert set(rows) == {f"{name}\n{path}" for name in ("isotropic", "pink", "blurring")
                         for path in ("closed form", "chain")}  # fmt: skip
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


def test_show_without_an_image_uses_the_built_in_photo_and_prints_the_path(tmp_path, capsys):
    from PIL import Image

    from noisejump.commands.show import built_in_image

    assert main(["show", "--steps", "0", "100", "--size", "16", "--out", str(tmp_path)]) == 0
    written = tmp_path / "trajectory.png"
    assert capsys.readouterr().out.strip() == str(written)
    assert Image.open(written).size[0] > 200
    assert Path(built_in_image()).name == "china.jpg"
    # a path without a suffix is written (and reported) with ".png", as matplotlib writes it
    assert main(["show", "--steps", "0", "--size", "8", "--out", str(tmp_path / "x" / "t")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "x" / "t.png")
    assert (tmp_path / "x" / "t.png").is_file()


def test_show_refuses_an_unknown_colour_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["show", "--colour", "purple"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --colour: invalid choice: 'purple'" in err and "'pink'" in err
    with pytest.raises(ValueError, match="colour must be one of"):
        trajectory_rows(torch.zeros(1, 3, 8, 8), [0], colour="purple")


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Per image of x (N, C, H, W): the energy of its orthonormal 2-D DCT-II coefficients
    whose radial frequency sqrt((k_y / H)^2 + (k_x / W)^2) exceeds 1/2, i.e. above half the
    Nyquist frequency (DCT index k of n points is k / 2n cycles per pixel; Nyquist is k = n)."""
    from noisejump.processes.blurring import dct_matrix

    h, w = x.shape[-2:]
    u = dct_matrix(h) @ x.double() @ dct_matrix(w).T
    k = ((torch.arange(h)[:, None] / h) ** 2 + (torch.arange(w)[None, :] / w) ** 2).sqrt()
    return (u**2 * (k > 0.5)).flatten(1).sum(1)


def blur_ratios(blurring, image, steps) -> list[float]:
    """HF energy of the blurring row's signal part over the isotropic row's, per step."""
    schedule = blurring.schedule
    ratios = []
    for t in steps:
        x_t, noise = blurring.q_sample(image, t, generator=torch.Generator().manual_seed(0))
        blurred = x_t - noise  # q_sample's noise is x_t - E[x_t | x0]: this is E[x_t | x0]
        plain = schedule.sqrt_alphas_cumprod[t].item() * image  # isotropic E[x_t | x0]
        ratios.append(float(high_frequency_energy(blurred) / high_frequency_energy(plain)))
    return ratios


def test_show_blurring_rows_visibly_blur():
    """What "visibly blurs" means here. Both rows add white noise of variance sigma_t^2
    (the blurring row's noise term U(sigma_t e) is white too), so the pictures differ only
    by their signal parts E[x_t | x0]: isotropic sqrt(abar_t) x0, blurring U(a_t * U^T x0).
    Comparing the noisy images themselves cannot show a blur: from t = 50 on the noise
    carries more high-frequency energy than the photo's detail (3x at t = 50 under the
    linear schedule), the same in both rows. The blurring rows blur when, at every
    column after t = 0 of show's defaults (50, 100, 200, 300, 500, 700, 999, the mid steps
    included), the high-frequency energy of their signal part is at most half that of the
    isotropic row's. Negative control: BlurringProcess's default sin^2 blur schedule, which
    the rows used before, keeps 90 % of it at t = 50 (the rows looked alike)."""
    from noisejump.commands.show import DEFAULT_STEPS, built_in_image
    from noisejump.train.pictures import load_image
    from noisejump.train.trajectories import trajectory_processes

    image = load_image(built_in_image(), 64)
    schedule = nj.get_schedule("linear", 1000)
    steps = [t for t in DEFAULT_STEPS if t > 0]
    shown = trajectory_processes(schedule, "pink", 64)["blurring"]
    assert max(blur_ratios(shown, image, steps)) <= 0.5
    assert blur_ratios(BlurringProcess(schedule), image, [50])[0] > 0.5  # control


def test_sample_grids_are_scaled_up_by_nearest_neighbour_and_captioned(tmp_path):
    import numpy as np
    from PIL import Image

    from noisejump.train.pictures import grid, sample_caption, save_grid

    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mosaic = grid(images)  # 2 x 2 tiles of 64 x 64, 1 px apart
    assert mosaic.shape == (2 * 65 + 1, 2 * 65 + 1, 3)
    tile = mosaic[1:65, 1:65, 0]
    blocks = tile.reshape(8, 8, 8, 8)  # (row, within, column, within)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every source pixel is an 8 x 8 block
    caption = sample_caption(4000, "ddim", 50, 0, "ema")
    assert caption == "checkpoint step 4000, ddim 50 steps, seed 0, ema weights"
    picture = Image.open(save_grid(images, tmp_path / "grid.png", caption=caption))
    assert picture.text["Description"] == caption
    pixels = np.asarray(picture.convert("L"))
    band = picture.height - mosaic.shape[0]
    assert band > 12 and (pixels[:band] < 128).any()  # the caption is drawn above the grid
    left = (picture.width - mosaic.shape[1]) // 2  # centred when the caption is wider
    below = pixels[band:, left : left + mosaic.shape[1]]
    assert (below == np.asarray(Image.fromarray(mosaic).convert("L"))).all()


def test_show_defaults_its_columns_to_the_schedules_steps(tmp_path, capsys):
    from noisejump.commands.show import DEFAULT_STEPS, default_steps

    assert default_steps(1000) == list(DEFAULT_STEPS)
    assert default_steps(10) == [0, 1, 2, 3, 5, 7, 9]  # the same fractions of T = 10
    assert default_steps(2) == [0, 1]
    # was "steps must be non-empty and in [0, 9], got [0, 50, ..., 999]", exit 2
    out = tmp_path / "t10.png"
    assert main(["show", "--diffusion-steps", "10", "--size", "8", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 0
