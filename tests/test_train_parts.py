"""The pieces of the training loop: keyed draws, timestep samplers, loss weights, data."""

from __future__ import annotations

import math

import pytest
import torch

import noisejump as nj
from noisejump import stats
from noisejump.objective import (
    get_sampler,
    keyed_uniform,
    loss_weights,
    min_snr_weight,
    sample_time,
)
from noisejump.objective.samplers import IMPORTANCE_HISTORY
from noisejump.rng import training_keys
from noisejump.train import data
from noisejump.train.unet import UNet

ALPHA = 1e-3  # false-alarm rate of each statistical check


def test_keyed_uniforms_do_not_depend_on_the_batch_split():
    keys = training_keys(torch.arange(100, 116), step=7)
    whole = keyed_uniform(3, keys)
    halves = torch.cat([keyed_uniform(3, keys[:8]), keyed_uniform(3, keys[8:])])
    assert torch.equal(whole, halves)
    assert not torch.equal(whole, keyed_uniform(3, training_keys(torch.arange(100, 116), 8)))


def test_keyed_uniforms_are_uniform_and_a_skewed_law_is_rejected():
    u = keyed_uniform(0, training_keys(torch.arange(20_000), step=0))
    identity = lambda x: x  # noqa: E731  (the U(0, 1) CDF)
    assert stats.kolmogorov_pvalue(stats.ks_statistic(u, identity), len(u)) > ALPHA
    skewed = u**1.1  # named perturbation: another law on (0, 1)
    assert stats.kolmogorov_pvalue(stats.ks_statistic(skewed, identity), len(u)) < ALPHA


def test_stratified_puts_one_sample_in_each_stratum_across_ranks():
    T, B = 1000, 16
    schedule, sampler = nj.get_schedule("linear", T), get_sampler("stratified")
    positions = torch.arange(B)
    keys = training_keys(positions, 0)
    t, w = sample_time(schedule, sampler, B, seed=0, keys=keys, positions=positions, global_batch=B)
    assert torch.equal(t * B // T, positions) and torch.equal(w, torch.ones(B))
    # rank 1 of 2 draws its own strata
    rank1, _ = sample_time(
        schedule, sampler, 8, seed=0, keys=keys[8:], positions=positions[8:], global_batch=B
    )
    assert torch.equal(rank1, t[8:])


def test_uniform_and_logit_normal_ranges():
    schedule, keys = nj.get_schedule("linear", 1000), training_keys(torch.arange(4000), 0)
    uniform = sample_time(schedule, get_sampler("uniform"), 4000, seed=0, keys=keys)[0]
    logit = sample_time(schedule, get_sampler("logit_normal"), 4000, seed=0, keys=keys)[0]
    for t in (uniform, logit):
        assert t.dtype == torch.int64 and t.min() >= 0 and t.max() <= 999
    # logit-normal(0, 1) puts 68 % of its mass in sigmoid([-1, 1]) T = [269, 731).
    inside = ((logit >= 269) & (logit < 731)).double().mean()
    assert abs(inside - 0.6827) < 4 * math.sqrt(0.6827 * 0.3173 / 4000)
    assert abs(((uniform >= 269) & (uniform < 731)).double().mean() - 0.462) < 0.04


def test_importance_sampler_favours_large_losses_and_stays_unbiased():
    T = 10
    schedule, sampler = nj.get_schedule("linear", T), get_sampler("importance", num_steps=T)
    keys = torch.arange(500)
    t, w = sample_time(schedule, sampler, 500, seed=0, keys=keys)
    assert torch.equal(w, torch.ones(500))  # uniform until warm
    for _ in range(IMPORTANCE_HISTORY):
        steps = torch.arange(T)
        sampler.update(steps, (steps + 1).double())  # loss grows with t
    p = sampler.probabilities()
    assert torch.all(p[1:] > p[:-1]) and math.isclose(float(p.sum()), 1.0)
    t, w = sample_time(schedule, sampler, 500, seed=0, keys=keys)
    # E_p[w f(t)] = mean_t f(t): the weight 1 / (T p_t) keeps the loss unbiased.
    f = torch.arange(T, dtype=torch.float64) ** 2
    assert math.isclose(float((p * (1 / (T * p)) * f).sum()), float(f.mean()), rel_tol=1e-9)
    torch.testing.assert_close(w.double(), 1 / (T * p[t]), rtol=1e-6, atol=0)
    state = sampler.state_dict()
    again = get_sampler("importance", num_steps=T)
    again.load_state_dict(state)
    assert torch.equal(again.probabilities(), p)
    with pytest.raises(ValueError, match="has 10 steps but the schedule has 20"):
        sample_time(nj.get_schedule("linear", 20), sampler, 4, seed=0, keys=keys[:4])


def test_min_snr_weights_match_the_paper_and_are_finite_at_zero_snr():
    gamma = 5.0
    snr = torch.tensor([0.0, 0.5, 5.0, 20.0, math.inf], dtype=torch.float64)
    expected = {
        "epsilon": [1.0, 1.0, 1.0, 0.25, 0.0],
        "v": [0.0, 0.5 / 1.5, 5 / 6, 5 / 21, 0.0],
        "sample": [0.0, 0.5, 5.0, 5.0, 5.0],
    }
    for prediction, values in expected.items():
        weight = min_snr_weight(snr[:4], gamma, prediction)
        assert torch.isfinite(weight).all()
        torch.testing.assert_close(weight, torch.tensor(values[:4], dtype=torch.float64))
    import noisejump as nj

    zero_snr = nj.get_schedule("linear", 50, rescale_zero_terminal_snr=True)
    w = loss_weights(zero_snr, torch.tensor([0, 49]), "min_snr", gamma, "v")
    assert torch.isfinite(w).all() and w[1] == 0
    assert torch.equal(loss_weights(zero_snr, torch.tensor([3]), "uniform", gamma, "v"),
                       torch.ones(1))  # fmt: skip
    with pytest.raises(ValueError, match="weighting must be one of"):
        loss_weights(zero_snr, torch.tensor([3]), "snr", gamma, "v")


def test_digits_split_is_fixed_and_disjoint():
    train, train_labels, held, held_labels = data.digits_split()
    assert train.shape == (1500, 1, 8, 8) and held.shape == (297, 1, 8, 8)
    assert train.min() == -1 and train.max() == 1
    assert sorted(set(held_labels.tolist())) == list(range(10))
    distances = torch.cdist(held.flatten(1), train.flatten(1))
    assert torch.equal(data.digits_split()[2], held)
    assert (distances.min(1).values == 0).sum() <= 3  # only exact duplicates in the data set


def test_data_order_is_a_permutation_per_epoch_and_splits_across_ranks():
    order = data.DataOrder(10, seed=4)
    epoch0 = order.image_indices(torch.arange(10))
    epoch1 = order.image_indices(torch.arange(10, 20))
    assert sorted(epoch0.tolist()) == list(range(10)) == sorted(epoch1.tolist())
    assert not torch.equal(epoch0, epoch1)
    straddling = order.image_indices(torch.arange(5, 15))
    assert torch.equal(straddling, torch.cat([epoch0[5:], epoch1[:5]]))
    one = data.global_indices(3, 16, rank=0, world_size=1)
    two = torch.cat([data.global_indices(3, 16, rank=r, world_size=2) for r in (0, 1)])
    assert torch.equal(one, two) and torch.equal(one, torch.arange(48, 64))


def test_unet_shapes_and_zero_initial_output():
    model = UNet(in_channels=3, channels=8, channel_mult=(1, 2, 2), image_size=16,
                 attention_resolutions=(8,))  # fmt: skip
    x = torch.randn(2, 3, 16, 16)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape and torch.count_nonzero(out) == 0
    with pytest.raises(ValueError, match="divisible by 2"):
        UNet(channel_mult=(1, 2, 2, 2), image_size=12)


def test_photo_crops_are_fixed_rgb_images_in_range():
    photos = data.load_images("photos", image_size=16)
    assert photos.shape == (data.PHOTO_CROPS, 3, 16, 16) and photos.dtype == torch.float32
    assert photos.min() >= -1 and photos.max() <= 1 and photos.std() > 0.1
    assert torch.equal(data.load_images("photos", image_size=16)[:4], photos[:4])
    with pytest.raises(ValueError, match="image_size for digits is 8"):
        data.load_images("digits", image_size=16)
