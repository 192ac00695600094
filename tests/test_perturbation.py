"""Input-side perturbations (issue 11, item 4): input perturbation (Ning et al. 2023,
diffusers' --input_perturbation), the offset noise of diffusers and kohya-ss, and
time-dependent offset noise (Kutsuna 2024) with its chain, all keyed like q_sample."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

import noisejump as nj
from noisejump.continuous import FlowMatching
from noisejump.loss import keyed_mse
from noisejump.noise import Offset, diffusers_offset_noise, kohya_offset_noise
from noisejump.objective import InputPerturbation, TimeDependentOffset
from noisejump.objective.perturbation import INPUT_PERTURBATION_STREAM, OFFSET_STREAM
from noisejump.rng import keyed_normal

SCHEDULE = nj.get_schedule("linear", 1000)
SEED = 17


def _batch(shape=(4, 3, 4, 4), dtype=torch.float32):
    generator = torch.Generator().manual_seed(5)
    x0 = torch.randn(shape, generator=generator).to(dtype)
    t = torch.tensor([0, 100, 600, 999])[: shape[0]]
    keys = torch.arange(shape[0]) + 2**35
    return x0, t, keys


# ---- input perturbation ---------------------------------------------------------------------


@pytest.mark.parametrize("noise", [None, "pink"], ids=["isotropic", "pink"])
def test_input_perturbation_keeps_the_target_and_perturbs_the_input(noise):
    process = nj.ForwardProcess(SCHEDULE, noise=noise)
    x0, t, keys = _batch()
    y_t, target = InputPerturbation(0.1).q_sample(process, x0, t, seed=SEED, keys=keys)
    x_t, e = process.q_sample(x0, t, seed=SEED, keys=keys)
    assert torch.equal(target, e)  # the target is q_sample's noise, bit for bit
    xi = keyed_normal(x0.shape, seed=SEED, keys=keys, stream=INPUT_PERTURBATION_STREAM)
    signal, sigma = (c.reshape(-1, 1, 1, 1) for c in SCHEDULE.marginal(t, "cpu", torch.float64))
    expected = signal * x0.double() + sigma * (e.double() + 0.1 * xi.double())
    torch.testing.assert_close(y_t.double(), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(y_t, x_t, atol=1e-3)  # negative control: it is perturbed
    unperturbed, _ = InputPerturbation(0.0).q_sample(process, x0, t, seed=SEED, keys=keys)
    torch.testing.assert_close(unperturbed, x_t, rtol=0, atol=1e-6)


def test_input_perturbation_matches_diffusers_and_is_keyed_per_sample():
    process = nj.ForwardProcess(SCHEDULE)
    x0, t, keys = _batch()
    y_t, noise = InputPerturbation(0.1).q_sample(process, x0, t, seed=SEED, keys=keys)
    # diffusers: new_noise = noise + input_perturbation * randn_like(noise); add_noise
    xi = keyed_normal(x0.shape, seed=SEED, keys=keys, stream=INPUT_PERTURBATION_STREAM)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    theirs = scheduler.add_noise(x0, noise + 0.1 * xi, t)  # float32 tables: ours are float64
    torch.testing.assert_close(theirs, y_t, atol=1e-5, rtol=1e-5)
    part, _ = InputPerturbation(0.1).q_sample(process, x0[1:3], t[1:3], seed=SEED, keys=keys[1:3])
    assert torch.equal(part, y_t[1:3])
    # the keyed loss against the same keys regenerates the unperturbed target e
    loss = keyed_mse(process, noise, t, seed=SEED, keys=keys)
    assert loss < 1e-12


@pytest.mark.parametrize("gamma", [-0.1, math.inf, "0.1", True])
def test_input_perturbation_refuses_a_bad_gamma(gamma):
    with pytest.raises(ValueError, match="input perturbation: gamma must be a finite number >= 0"):
        InputPerturbation(gamma)


# ---- the offset noise of diffusers and kohya-ss ---------------------------------------------


def test_trainer_offset_noise_is_the_raw_offset_family():
    """diffusers and kohya: noise + noise_offset * randn(B, C, 1, 1), as input and target."""
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(2, 4, 8, 8, generator=generator)
    offset = torch.randn(2, 4, 1, 1, generator=generator)
    theirs = noise + 0.1 * offset
    white = torch.cat([noise.flatten(2), offset.flatten(2)], dim=-1)
    for family in (diffusers_offset_noise(0.1), kohya_offset_noise(0.1)):
        assert isinstance(family, Offset) and not family.normalize
        assert torch.equal(family.apply(white, noise.shape), theirs)
    assert not torch.equal(Offset(0.1).apply(white, noise.shape), theirs)  # normalised: not it
    x0 = torch.randn(2, 4, 8, 8, generator=generator)
    t = torch.tensor([10, 900])
    process = nj.ForwardProcess(SCHEDULE, noise=diffusers_offset_noise(0.1))
    x_t, _ = process.q_sample(x0, t, noise=theirs)
    scheduler = DDPMScheduler(num_train_timesteps=1000)  # float32 tables: ours are float64
    torch.testing.assert_close(x_t, scheduler.add_noise(x0, theirs, t), atol=1e-5, rtol=1e-5)


# ---- time-dependent offset noise ---------------------------------------------------------------

SHORT = nj.get_schedule("linear", 50)


def test_balanced_psi_makes_the_elbo_target_the_input_noise():
    balanced = TimeDependentOffset(SCHEDULE, 0.1)
    torch.testing.assert_close(balanced.phi, balanced.psi, rtol=1e-10, atol=0)
    snr = SCHEDULE.snr
    torch.testing.assert_close(balanced.psi, (snr[-1] / snr).sqrt(), rtol=1e-12, atol=0)
    assert balanced.psi[-1] == 1.0
    plain = TimeDependentOffset(SCHEDULE, 0.1, psi="constant")  # diffusers' input noise
    assert plain.phi[0] == plain.psi[0] == 1.0
    assert (plain.phi[1:] - plain.psi[1:]).abs().min() > 1e-3  # its ELBO target differs


def test_closed_form_is_the_chain_exactly_in_its_mean():
    """chain(x0, xi) - chain(0, 0) with the same draws e_k is signal_t x0 + s m_t xi: the
    chain's sqrt(alpha_k) steps and increments d_k add up to the closed form's abar_t."""
    offset = TimeDependentOffset(SHORT, 0.7, psi="constant")
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 2, 5, dtype=torch.float64, generator=generator)
    xi = torch.randn(3, 2, dtype=torch.float64, generator=generator)
    t = torch.tensor([0, 17, 49])
    walk = offset.q_sample_loop(x0, t, generator=torch.Generator().manual_seed(9), offset=xi)
    zero = offset.q_sample_loop(
        torch.zeros_like(x0), t, generator=torch.Generator().manual_seed(9), offset=0 * xi
    )
    signal = SHORT.sqrt_alphas_cumprod[t].reshape(-1, 1, 1)
    mean = signal * x0 + 0.7 * offset.offset_mean[t].reshape(-1, 1, 1) * xi[..., None]
    torch.testing.assert_close(walk - zero, mean, rtol=0, atol=1e-12)
    # negative control: with abar_k in place of alpha_k the increments do not add up
    wrong = offset.offset_mean - SHORT.sqrt_alphas_cumprod * torch.cat(
        [torch.zeros(1, dtype=torch.float64), offset.offset_mean[:-1]]
    )
    assert (wrong[1:] - offset.increments[1:]).abs().max() > 1e-2


def test_chain_covariance_is_the_closed_form_s_and_not_a_fresh_offset_per_step():
    """Within a channel, Cov(x_t) = sigma_t^2 I + s^2 m_t^2 1 1^T over (e, xi) (the
    diagonal is DDPM's, tested with the process). The
    off-diagonal mean of the sample covariance of the chain (one xi per chain) is tested
    against s^2 m_t^2 with a 5-sigma bound; the negative control draws a fresh xi at every
    step (a different process: s^2 sum_k (abar_t / abar_k) d_k^2)."""
    offset = TimeDependentOffset(SHORT, 1.0)
    n, t = 8000, 40
    x0 = torch.zeros(n, 1, 2, dtype=torch.float64)
    walk = offset.q_sample_loop(x0, t, generator=torch.Generator().manual_seed(3))
    abar = SHORT.alphas_cumprod
    expected = float(offset.offset_mean[t] ** 2)
    wrong = float((abar[t] / abar[: t + 1] * offset.increments[: t + 1] ** 2).sum())
    pairs = (walk[:, 0, 0] * walk[:, 0, 1]).numpy()
    mean, error = pairs.mean(), pairs.std() / math.sqrt(n)
    assert abs(mean - expected) < 5 * error
    assert abs(wrong - expected) > 10 * error  # the control is far outside the bound
    # and the closed form's keyed draws have the same covariance
    x_t, _ = offset.q_sample(x0.float(), t, seed=SEED, keys=torch.arange(n))
    closed = (x_t[:, 0, 0] * x_t[:, 0, 1]).double().numpy()
    assert abs(closed.mean() - expected) < 5 * closed.std() / math.sqrt(n)


def test_time_dependent_offset_is_keyed_like_q_sample():
    offset = TimeDependentOffset(SCHEDULE, 0.3)
    x0, t, keys = _batch()
    x_t, noise = offset.q_sample(x0, t, seed=SEED, keys=keys)
    e = nj.ForwardProcess(SCHEDULE).q_sample(x0, t, seed=SEED, keys=keys)[1]
    xi = keyed_normal((4, 3), seed=SEED, keys=keys, stream=OFFSET_STREAM)
    shift = 0.3 * offset.psi[t].reshape(-1, 1).float() * xi
    torch.testing.assert_close(noise, e + shift[..., None, None], rtol=0, atol=1e-6)
    signal, sigma = (c.reshape(-1, 1, 1, 1) for c in SCHEDULE.marginal(t, "cpu", torch.float32))
    torch.testing.assert_close(x_t, signal * x0 + sigma * noise, rtol=0, atol=1e-6)
    assert torch.equal(offset.target_noise(x0, t, seed=SEED, keys=keys), noise)  # balanced
    part, _ = offset.q_sample(x0[2:], t[2:], seed=SEED, keys=keys[2:])
    assert torch.equal(part, x_t[2:])
    none = TimeDependentOffset(SCHEDULE, 0.0).q_sample(x0, t, seed=SEED, keys=keys)
    plain = nj.ForwardProcess(SCHEDULE).q_sample(x0, t, seed=SEED, keys=keys)
    assert torch.equal(none[1], plain[1]) and torch.equal(none[0], plain[0])


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((SCHEDULE.rescale_zero_terminal_snr(), 0.1), ValueError, "needs SNR_T > 0"),
        ((SCHEDULE, -0.1), ValueError, r"strength must be a finite number in \[0, 1000\]"),
        ((SCHEDULE, 0.1, "linear"), ValueError, "psi must be 'balanced', 'constant'"),
        ((SCHEDULE, 0.1, torch.ones(3)), ValueError, r"shape \(1000,\)"),
        ((SCHEDULE, 0.1, torch.full((1000,), math.nan)), ValueError, "psi must be finite"),
        ((FlowMatching(), 0.1), TypeError, "walks a discrete chain"),
    ],
)
def test_time_dependent_offset_refuses_bad_input(arguments, error, message):
    with pytest.raises(error, match=message):
        TimeDependentOffset(*arguments)


def test_time_dependent_offset_refuses_bad_samples():
    offset = TimeDependentOffset(SCHEDULE, 0.1)
    with pytest.raises(ValueError, match=r"shape \(B, C, ...\)"):
        offset.q_sample(torch.zeros(4, 3), 5, seed=1, keys=torch.arange(4))
    with pytest.raises(ValueError, match="one step per sample"):
        offset.q_sample(
            torch.zeros(2, 3, 4),
            torch.zeros(2, 3, 1, dtype=torch.int64),
            seed=1,
            keys=torch.arange(2),
        )
