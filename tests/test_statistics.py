"""The closed form and the chain agree in distribution; each check rejects a named perturbation.

Every check uses a fixed seed and a family-wise false-alarm rate ALPHA = 1e-3, split over
the p-values of one check with Bonferroni. A negative control at the same n and seed must
produce at least one p-value below its threshold.
"""

import pytest
import torch

import noisejump as nj
from noisejump import stats

ALPHA = 1e-3
N = 400  # samples per check
SHAPE = (3, 8, 8)  # d = 192 per sample


@pytest.fixture(scope="module")
def process():
    return nj.ForwardProcess(nj.get_schedule("linear", 1000))


def x0_batch(seed=0):
    """One clean image repeated: every row of x_t then has the same law."""
    image = torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return image.expand(N, *SHAPE).contiguous()


def law_pvalues(process, x0, t, samples, two_sample=True):
    """p-values of ``samples`` against the closed-form law N(signal_t x0, sigma_t^2 I), and of
    two-sample KS on random projections against fresh closed-form draws."""
    n, d = len(samples), x0[0].numel()
    signal, sigma = process.schedule.marginal(t, "cpu", torch.float64)
    mean = (signal * x0[0].double()).flatten()
    cov = sigma**2 * torch.eye(d, dtype=torch.float64)
    pvalues = list(stats.gaussian_pvalues(samples.reshape(n, d), mean, cov).values())
    if two_sample:
        closed, _ = process.q_sample(x0, t, generator=torch.Generator().manual_seed(123))
        pvalues += stats.projection_pvalues(samples.reshape(n, d), closed.reshape(n, d))
    return pvalues


def rejects(pvalues):
    return min(pvalues) < ALPHA / len(pvalues)


@pytest.mark.parametrize("t", [0, 10, 100, 999])
def test_chain_matches_closed_form(process, t):
    x0 = x0_batch()
    chain = process.q_sample_loop(x0, t, generator=torch.Generator().manual_seed(t))
    assert not rejects(law_pvalues(process, x0, t, chain))


def test_chain_with_per_sample_steps_matches_closed_form(process):
    x0 = x0_batch()
    t = torch.tensor([3, 250] * (N // 2))
    chain = process.q_sample_loop(x0, t, generator=torch.Generator().manual_seed(5))
    for k in (3, 250):
        rows = t == k
        assert not rejects(law_pvalues(process, x0[rows], k, chain[rows], two_sample=False))


def test_negative_control_step_off_by_one(process):
    """The chain run to t = 11 must be told apart from the closed form at t = 10."""
    x0 = x0_batch()
    wrong = process.q_sample_loop(x0, 11, generator=torch.Generator().manual_seed(10))
    assert rejects(law_pvalues(process, x0, 10, wrong))


def test_negative_control_variance_times_1_05(process):
    """Closed-form samples whose noise variance is 5% too large must be rejected."""
    x0 = x0_batch()
    t = 100
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t)) * 1.05**0.5
    wrong, _ = process.q_sample(x0, t, noise=noise)
    assert rejects(law_pvalues(process, x0, t, wrong))


def test_closed_form_passes_its_own_law(process):
    """The same checks accept the unperturbed closed form at the same n and seed."""
    x0 = x0_batch()
    t = 100
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
    right, _ = process.q_sample(x0, t, noise=noise)
    assert not rejects(law_pvalues(process, x0, t, right))
