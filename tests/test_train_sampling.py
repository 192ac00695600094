"""The samplers: shapes, determinism, and their exact law for Gaussian data.

For data x0 ~ N(mu, s^2) per pixel, the ideal denoiser is linear in x_t,
E[x0 | x_t] = mu + g_t (x_t - signal_t mu) with g_t = signal_t s^2 / (signal_t^2 s^2 + sigma_t^2),
so each sampler step is an affine map plus (DDPM) Gaussian noise, and the law of the output
is N(m, v) with (m, v) from a float64 recursion written here from the papers (DDPM eq. 6-7,
DDIM eq. 12), independently of the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

import noisejump as nj
from noisejump import stats
from noisejump.train.config import TrainConfig
from noisejump.train.sampling import sample

MU, S = 0.0, 0.2  # |x0_hat| > 1 (where the sampler clips) is a 5-sigma event
ALPHA = 1e-3  # false-alarm rate of each law check (Bonferroni over its 4 p-values)
SHAPE = (4000, 1, 2, 5)  # 40 000 scalars: the variance's standard error is 0.7 %


class GaussianOracle(torch.nn.Module):
    """The ideal network for x0 ~ N(MU, S^2), in any prediction's parametrisation."""

    def __init__(self, schedule, prediction):
        super().__init__()
        self.signal = schedule.sqrt_alphas_cumprod
        self.sigma = schedule.sqrt_one_minus_alphas_cumprod
        self.prediction = prediction

    def forward(self, x, t):
        a = self.signal[t].view(-1, 1, 1, 1).to(x.dtype)
        b = self.sigma[t].view(-1, 1, 1, 1).to(x.dtype)
        x0 = MU + a * S**2 / (a * a * S**2 + b * b) * (x - a * MU)
        e = (x - a * x0) / b
        return {"epsilon": e, "v": a * e - b * x0, "sample": x0}[self.prediction]


def exact_law(schedule, sampler, steps=None):
    """(mean, variance) of the sampler's output for the oracle, x_T ~ N(0, 1), float64."""
    abar = schedule.alphas_cumprod.tolist()
    T = len(abar)
    keep = list(range(T)) if sampler == "ddpm" else _ddim_steps(T, steps)
    m, v = 0.0, 1.0
    for i in reversed(range(len(keep))):
        k = keep[i]
        a, b2 = math.sqrt(abar[k]), 1 - abar[k]
        gain = a * S**2 / (a * a * S**2 + b2)
        shift = MU * (1 - gain * a)  # x0_hat = gain x + shift
        if i == 0:
            return gain * m + shift, gain**2 * v
        prev = abar[keep[i - 1]]
        if sampler == "ddpm":  # Ho et al. 2020, eq. 7
            beta = 1 - abar[k] / prev
            c0, ct = math.sqrt(prev) * beta / b2, math.sqrt(1 - beta) * (1 - prev) / b2
            noise_var = (1 - prev) / b2 * beta
        else:  # Song et al. 2021, eq. 12, eta = 0
            c0 = math.sqrt(prev) - math.sqrt(1 - prev) * a / math.sqrt(b2)
            ct, noise_var = math.sqrt(1 - prev) / math.sqrt(b2), 0.0
        m, v = (c0 * gain + ct) * m + c0 * shift, (c0 * gain + ct) ** 2 * v + noise_var


def _ddim_steps(T, steps):
    return torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()


def law_rejected(x, mean, variance) -> bool:
    p = stats.gaussian_pvalues(
        x.reshape(-1, 1), torch.tensor([mean]), torch.tensor([[variance]], dtype=torch.float64)
    )
    return min(p.values()) < ALPHA / len(p)


@pytest.mark.parametrize(
    "sampler, prediction", [("ddpm", "epsilon"), ("ddpm", "v"), ("ddim", "sample")]
)
def test_sampler_output_has_its_exact_law_and_a_wrong_variance_is_rejected(sampler, prediction):
    schedule = nj.get_schedule("linear", 1000)
    process = nj.ForwardProcess(schedule)
    x = sample(
        GaussianOracle(schedule, prediction), process, SHAPE, sampler=sampler,
        prediction=prediction, seed=0, steps=50,
    )  # fmt: skip
    mean, variance = exact_law(schedule, sampler, steps=50)
    # The law is near the data's: DDPM within 5 % in variance (beta-tilde reverse variance
    # for T = 1000); DDIM's 50 Euler-like steps shrink it more (23 % here).
    assert abs(variance - S**2) < (0.05 if sampler == "ddpm" else 0.3) * S**2
    assert not law_rejected(x, mean, variance)
    # Negative control, same draws: the variance times 1.05 must be rejected.
    assert law_rejected(mean + (x - mean) * math.sqrt(1.05), mean, variance)


def test_sampling_shapes_and_determinism():
    config = TrainConfig(channels=8, diffusion_steps=20)
    process = config.build_process()
    torch.manual_seed(0)
    model = config.build_model((1, 8, 8))
    for p in model.parameters():  # a non-trivial network (the output layer starts at 0)
        torch.nn.init.normal_(p, std=0.05)
    for sampler in ("ddpm", "ddim"):
        first = sample(
            model, process, (3, 1, 8, 8), sampler=sampler, prediction="epsilon", seed=7, steps=5
        )
        again = sample(
            model, process, (3, 1, 8, 8), sampler=sampler, prediction="epsilon", seed=7, steps=5
        )
        other = sample(
            model, process, (3, 1, 8, 8), sampler=sampler, prediction="epsilon", seed=8, steps=5
        )
        assert first.shape == (3, 1, 8, 8) and first.dtype == torch.float32
        assert torch.equal(first, again)
        assert not torch.allclose(first, other)
        assert first.abs().max() <= 1.0
    assert model.training  # sampling put it back the way it found it


def test_sampler_bad_arguments():
    schedule = nj.get_schedule("linear", 10)
    process = nj.ForwardProcess(schedule)
    oracle = GaussianOracle(schedule, "epsilon")
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample(oracle, process, (1, 1, 2, 2), sampler="euler", prediction="epsilon", seed=0)
    with pytest.raises(ValueError, match=r"steps must be in \[1, 10\], got 11"):
        sample(
            oracle, process, (1, 1, 2, 2), sampler="ddim", prediction="epsilon", seed=0, steps=11
        )
