"""``evaluate``: the Frechet distance is right, and each check catches what it is for."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from _train_helpers import tiny_config

from noisejump.train.data import digits_split
from noisejump.train.evaluate import evaluate_run, frechet_distance, score_digits
from noisejump.train.loop import train


def test_frechet_distance_matches_the_sqrtm_formula_and_translation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(200, 6)) * 2.0 + 0.5
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert np.isclose(frechet_distance(a, b), expected, rtol=1e-8)
    assert abs(frechet_distance(a, a)) < 1e-8
    shift = np.arange(6.0)
    assert np.isclose(frechet_distance(a + shift, a), (shift**2).sum(), rtol=1e-8)


def test_real_held_out_digits_pass_and_copies_or_blanks_fail():
    train_images, _, held_images, _ = digits_split()
    real = score_digits(held_images)
    assert all(real["checks"].values()), real
    assert real["classifier_held_out_accuracy"] > 0.95
    copies = score_digits(train_images[:500])  # a model that memorised its data
    assert copies["nearest_train_median_samples"] == 0
    assert not copies["checks"]["nearest_ratio >= 0.5"]
    blank = score_digits(torch.full((500, 1, 8, 8), -1.0) + 0.01 * torch.randn(500, 1, 8, 8))
    assert not blank["checks"]["fd_ratio <= 1.5"]
    assert not blank["checks"]["all ten digits"]


def test_evaluate_run_scores_a_digits_run_and_refuses_other_data(tmp_path):
    train(tiny_config(steps=2), tmp_path / "digits", progress=False)
    scores = evaluate_run(tmp_path / "digits", num_samples=20, steps=2)
    assert scores["num_samples"] == 20 and scores["step"] == 2
    assert len(scores["digit_histogram"]) == 10 and sum(scores["digit_histogram"]) == 20
    from PIL import Image

    (tmp_path / "pictures").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "pictures" / f"{i}.png")
    config = tiny_config(steps=1, batch_size=2, data=f"folder:{tmp_path / 'pictures'}",
                         image_size=8)  # fmt: skip
    train(config, tmp_path / "folder", progress=False)
    with pytest.raises(ValueError, match="evaluate scores models of the digits"):
        evaluate_run(tmp_path / "folder", num_samples=4, steps=2)
