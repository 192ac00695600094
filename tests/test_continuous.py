"""Continuous-time processes: formulas against independent references, then statistics.

Exact checks compare float64 closed forms with a reference computed another way (the SDE's
moment ODE integrated by RK4, Gaussian conditioning, EDM's own identities). Statistical
checks use fixed seeds and a false-alarm rate ALPHA per check (Bonferroni over the k
p-values of one check); each has a negative control at the same n and seed.
"""

import math

import pytest
import torch

import noisejump as nj
from noisejump import stats
from noisejump.continuous import EDM, VPSDE, FlowMatching, LogSNR, SubVPSDE, resolution_shift
from noisejump.noise import get_noise

F64 = torch.float64
ALPHA = 1e-3  # false-alarm rate of one statistical check


def vp_log_snr(t):
    """lambda(t) of the VP-SDE written independently: log(1/(exp(I) - 1)), I = int beta."""
    integral = 0.1 * t + 0.5 * (20.0 - 0.1) * t**2
    return -torch.log(torch.expm1(integral))


SCHEDULES = {
    "vp": VPSDE(),
    "sub-vp": SubVPSDE(),
    "edm": EDM(),
    "flow": FlowMatching(),
    "log_snr": LogSNR(lambda t: 8.0 - 14.0 * t),
}
TIMES = {name: (5.0, 0.02, 0.5) if name == "edm" else (0.9, 0.3, 0.01) for name in SCHEDULES}


# ---- exact: formulas against independent references ---------------------------------------


def moment_ode(drift, diffusion2, t_end, steps=1000):
    """(mean factor, variance) of dx = f(t) x dt + g(t) dw from x(0) = x0, by RK4 in float64:
    dm/dt = f m, dv/dt = 2 f v + g^2 (Sarkka & Solin 2019, eq. 6.2)."""

    def rhs(t, y):
        m, v = y
        return torch.stack([drift(t) * m, 2 * drift(t) * v + diffusion2(t)])

    y, h = torch.tensor([1.0, 0.0], dtype=F64), t_end / steps
    for k in range(steps):
        t = torch.tensor(k * h, dtype=F64)
        k1 = rhs(t, y)
        k2 = rhs(t + h / 2, y + h / 2 * k1)
        k3 = rhs(t + h / 2, y + h / 2 * k2)
        k4 = rhs(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y[0], y[1]


@pytest.mark.parametrize("sub", [False, True], ids=["vp", "sub-vp"])
def test_vp_marginals_solve_the_sde_moment_equations(sub):
    schedule = SubVPSDE() if sub else VPSDE()

    def beta(t):
        return 0.1 + t * (20.0 - 0.1)

    def diffusion2(t):
        integral = 0.1 * t + 0.5 * (20.0 - 0.1) * t**2
        return beta(t) * (1 - torch.exp(-2 * integral)) if sub else beta(t)

    for t_end in (0.05, 0.5, 1.0):
        mean, variance = moment_ode(lambda t: -0.5 * beta(t), diffusion2, t_end)
        signal, sigma = schedule.signal_sigma(t_end)
        # RK4 with h = 1e-3 has a global error O(h^4): well inside 1e-8 relative.
        torch.testing.assert_close(signal, mean, rtol=1e-8, atol=0)
        torch.testing.assert_close(sigma**2, variance, rtol=1e-8, atol=0)


def test_vp_small_t_keeps_every_digit():
    """sigma^2 = 1 - exp(-I) ~ I - I^2/2 at t = 1e-9; a naive 1 - exp(-I) keeps ~7 digits."""
    t = torch.tensor(1e-9, dtype=F64)
    integral = 0.1 * t + 0.5 * 19.9 * t**2
    series = integral - integral**2 / 2
    _, sigma = VPSDE().signal_sigma(t)
    torch.testing.assert_close(sigma**2, series, rtol=1e-14, atol=0)
    naive = 1 - torch.exp(-integral)
    assert abs(float(naive / series) - 1) > 1e-9  # the control: what expm1 avoids


def test_log_snr_of_the_vp_function_is_the_vp_sde():
    """Two independent routes to the same process: sigmoid(lambda) vs exp(-I)."""
    t = torch.linspace(0.001, 1.0, 50, dtype=F64)
    mine, reference = LogSNR(vp_log_snr).signal_sigma(t), VPSDE().signal_sigma(t)
    for a, b in zip(mine, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_edm_and_flow_marginals_are_their_definitions():
    sigma = torch.tensor([1e-3, 0.5, 80.0], dtype=F64)
    signal, scale = EDM().signal_sigma(sigma)
    torch.testing.assert_close(signal, torch.ones_like(sigma))
    torch.testing.assert_close(scale, sigma)
    t = torch.tensor([1e-8, 0.25, 1.0], dtype=F64)
    signal, scale = FlowMatching().signal_sigma(t)
    torch.testing.assert_close(signal, 1 - t, rtol=1e-14, atol=0)
    torch.testing.assert_close(scale, t, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_transitions_compose_to_the_marginal(name):
    """q(x_t | x_s) after q(x_s | x0) is q(x_t | x0): alpha_{t|s} signal_s = signal_t and
    alpha_{t|s}^2 sigma_s^2 + sigma^2_{t|s} = sigma_t^2; and s = t is the identity."""
    schedule = SCHEDULES[name]
    t_hi, t_mid, _ = TIMES[name]
    s, t = torch.tensor([t_mid, -1.0]), torch.tensor([t_hi, t_mid])
    alpha, sigma2 = schedule.transition(s, t, "cpu")
    signal_s, sigma_s = schedule.signal_sigma(s)
    signal_t, sigma_t = schedule.signal_sigma(t)
    torch.testing.assert_close(alpha * signal_s, signal_t, rtol=1e-12, atol=0)
    torch.testing.assert_close(alpha**2 * sigma_s**2 + sigma2, sigma_t**2, rtol=1e-12, atol=0)
    alpha, sigma2 = schedule.transition(t, t, "cpu")
    assert bool((alpha == 1).all()) and bool((sigma2 == 0).all())


@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior_is_gaussian_conditioning(name):
    """Mean and variance of q(x_s | x_t, x0), checked against conditioning the joint Gaussian
    (x_s, x_t) given x0: cov(x_s, x_t) = alpha_{t|s} sigma_s^2."""
    schedule = SCHEDULES[name]
    t, s, _ = TIMES[name]
    process = nj.ForwardProcess(schedule)
    x0, x_t = torch.randn(2, 3, 4, dtype=F64).unbind(0)
    mean, variance = process.q_posterior(x0, x_t, t, s=s)
    (signal_s, sigma_s), (signal_t, sigma_t) = schedule.signal_sigma(s), schedule.signal_sigma(t)
    covariance = (signal_t / signal_s) * sigma_s**2
    expected_mean = signal_s * x0 + covariance / sigma_t**2 * (x_t - signal_t * x0)
    torch.testing.assert_close(mean, expected_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(variance, sigma_s**2 - covariance**2 / sigma_t**2)


def test_q_sample_applies_the_marginal_per_sample():
    process = nj.ForwardProcess(VPSDE())
    x0 = torch.randn(3, 2, 5, dtype=F64)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64)
    x_t, noise = process.q_sample(x0, t)
    signal, sigma = VPSDE().signal_sigma(t.reshape(-1, 1, 1))
    torch.testing.assert_close(x_t, signal * x0 + sigma * noise)
    torch.testing.assert_close(x_t[0], x0[0])  # t = 0 is the data


def test_edm_preconditioning_satisfies_its_design_identities():
    """EDM Appendix B.6: unit-variance network input and training target, lambda c_out^2 = 1."""
    edm, sigma_data = EDM(), 0.5
    sigma = torch.tensor([0.002, 0.3, 1.0, 80.0], dtype=F64)
    c_skip, c_out, c_in = edm.c_skip(sigma), edm.c_out(sigma), edm.c_in(sigma)
    one = torch.ones_like(sigma)
    torch.testing.assert_close(c_in**2 * (sigma**2 + sigma_data**2), one)
    target_variance = ((1 - c_skip) ** 2 * sigma_data**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_variance, one)
    torch.testing.assert_close(edm.loss_weight(sigma) * c_out**2, one)
    torch.testing.assert_close(edm.c_noise(sigma), torch.log(sigma) / 4)


def test_flow_velocity_is_the_path_derivative_and_not_v():
    process = nj.ForwardProcess(FlowMatching())
    x0 = torch.randn(2, 8, dtype=F64)
    x_t, noise = process.q_sample(x0, 0.3)
    h = 1e-6
    x_later, _ = process.q_sample(x0, 0.3 + h, noise=noise)
    velocity = process.flow_velocity(x0, noise)
    torch.testing.assert_close(velocity, (x_later - x_t) / h, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(velocity, process.v_target(x0, noise, 0.3))
    with pytest.raises(TypeError, match="flow_velocity"):
        nj.ForwardProcess(VPSDE()).flow_velocity(x0, noise)


def test_shifts():
    flow = FlowMatching(shift=3.0)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    torch.testing.assert_close(flow.shift_time(t), torch.tensor([0.0, 0.75, 1.0], dtype=F64))
    assert resolution_shift(4 * 4096, 4096) == 2.0


# ---- statistical, each with a negative control -----------------------------------------


def channel_scaled():
    """Diagonal S with per-channel variances (1, 4, 0.25) for events of shape (3, n)."""
    return get_noise("diagonal", variance=torch.tensor([1.0, 4.0, 0.25]).reshape(3, 1))


def whitened_residuals(schedule, noise, t, variance_factor=1.0):
    """z = (x_t - signal_t x0) / (sigma_t sqrt(S)) for 4096 draws at per-sample times."""
    generator = torch.Generator().manual_seed(0)
    process = nj.ForwardProcess(schedule, noise)
    x0 = torch.randn(4096, 3, 16, generator=generator, dtype=F64)
    x_t, _ = process.q_sample(x0, t, generator=generator)
    signal, sigma = schedule.signal_sigma(t.reshape(-1, 1, 1))
    std = process.noise.variance((3, 16)).sqrt() * math.sqrt(variance_factor)
    return (x_t - signal * x0) / (sigma * std)


@pytest.mark.parametrize("name", SCHEDULES)
def test_q_sample_has_the_stated_law_with_correlated_noise(name):
    """196k whitened residuals: mean, variance and KS p-values above ALPHA / 3; the same
    draws whitened with a variance 5% too small must be rejected."""
    t_hi, _, t_lo = TIMES[name]
    t = torch.linspace(t_lo, t_hi, 4096, dtype=F64)
    z = whitened_residuals(SCHEDULES[name], channel_scaled(), t)
    p = [stats.mean_pvalue(z), stats.variance_pvalue(z), stats.ks_normal(z)]
    assert min(p) > ALPHA / 3, p
    wrong = whitened_residuals(SCHEDULES[name], channel_scaled(), t, variance_factor=1 / 1.05)
    assert stats.variance_pvalue(wrong) < ALPHA / 3


@pytest.mark.parametrize(
    "schedule",
    [SubVPSDE(), SubVPSDE().shifted(0.5), FlowMatching().shifted(3.0)],
    ids=["sub-vp", "sub-vp*0.5", "flow*3"],
)
def test_closed_form_matches_a_chain_of_exact_transitions(schedule):
    """q_sample at t = 0.3 against 12 successive q_sample_from jumps (the continuous chain),
    two-sample KS on 8 projections (p > ALPHA / 8); the chain stopped two jumps early
    (t = 0.25) must be rejected at the same n and seed. Shifted schedules (issue 11) too."""
    process, n = nj.ForwardProcess(schedule), 4000
    generator = torch.Generator().manual_seed(1)
    x0 = torch.linspace(-2.0, 2.0, 6, dtype=F64).expand(n, 6)  # one x0: the law given x0
    closed, _ = process.q_sample(x0, 0.3, generator=generator)
    grid = torch.linspace(0.0, 0.3, 13, dtype=F64).tolist()
    x, path = x0, []
    for s, t in zip([-1.0] + grid[1:-1], grid[1:], strict=True):
        x, _ = process.q_sample_from(x, s, t, generator=generator)
        path.append(x)
    p = stats.projection_pvalues(closed, path[-1])
    assert min(p) > ALPHA / len(p), p
    p_short = stats.projection_pvalues(closed, path[-3])
    assert min(p_short) < ALPHA / len(p_short)


@pytest.mark.parametrize("kind", ["edm", "flow"])
def test_training_time_samplers(kind):
    """EDM: ln sigma ~ N(-1.2, 1.2^2); flow: logit t ~ N(0, 1). Mean, variance and KS
    p-values of 50000 draws above ALPHA / 3; a standard deviation 5% off must be rejected."""
    generator = torch.Generator().manual_seed(2)
    if kind == "edm":
        normal = (torch.log(EDM().sample_t(50000, generator=generator)) + 1.2) / 1.2
    else:
        t = FlowMatching().sample_t(50000, generator=generator)
        normal = torch.log(t) - torch.log1p(-t)

    def pvalues(z):
        return [stats.mean_pvalue(z), stats.variance_pvalue(z), stats.ks_normal(z)]

    assert min(pvalues(normal)) > ALPHA / 3
    assert min(pvalues(normal * 1.05)) < ALPHA / 3


# ---- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1.5, -0.1, float("nan"), torch.tensor([0.2, 1.01])])
def test_time_outside_unit_interval_is_refused(t):
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"t must be a float in \[0, 1\]"):
        nj.ForwardProcess(FlowMatching()).q_sample(x0, t)


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.inf, -0.5])
def test_edm_sigma_must_be_positive(sigma):
    process, x0 = nj.ForwardProcess(EDM()), torch.randn(2, 3)
    if sigma in (0.0, -1.0):  # the data (sigma 0, or the clean marker -1): no noise added
        x_t, noise = process.q_sample(x0, sigma, seed=0, keys=torch.arange(2))
        assert torch.equal(x_t, x0)
    else:
        with pytest.raises(ValueError, match=r"sigma in \[0, 1e\+15\] \(or -1 for the data\)"):
            process.q_sample(x0, sigma)
    with pytest.raises(ValueError, match="sigma must be a positive finite float"):
        EDM().c_skip(sigma)


@pytest.mark.parametrize("shift", [0.0, -2.0, math.nan])
def test_shift_must_be_positive(shift):
    with pytest.raises(ValueError, match="shift must be a positive finite float"):
        FlowMatching(shift=shift)


def test_bad_schedules_and_calls():
    with pytest.raises(ValueError, match="strictly decrease"):
        LogSNR(lambda t: 5.0 * torch.cos(6 * t))
    with pytest.raises(ValueError, match="finite inside"):
        LogSNR(lambda t: torch.where(t == 0.5, math.nan, 1 - t))
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        VPSDE(beta_min=20.0, beta_max=0.1)
    process, x0 = nj.ForwardProcess(VPSDE()), torch.zeros(2, 3)
    with pytest.raises(TypeError, match="continuous-time"):
        process.q_sample_loop(x0, 0.5)
    with pytest.raises(ValueError, match="needs s"):
        process.q_posterior(x0, x0, 0.5)
    with pytest.raises(ValueError, match="3 times but the sample's batch"):
        process.q_sample(x0, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"need s <= t"):
        process.q_sample_from(x0, 0.6, 0.5)


class MonotoneLogSNR(torch.nn.Module):
    """A learned log-SNR in the spirit of VDM (Kingma et al. 2021, App. H): an affine map
    of t with a negative slope kept by softplus, so lambda strictly decreases."""

    def __init__(self):
        super().__init__()
        self.slope = torch.nn.Parameter(torch.tensor(2.5, dtype=F64))
        self.offset = torch.nn.Parameter(torch.tensor(6.0, dtype=F64))

    def forward(self, t):
        return self.offset - torch.nn.functional.softplus(self.slope) * 8.0 * t


def test_learned_log_snr_is_a_process_and_gets_gradients():
    module = MonotoneLogSNR()
    process = nj.ForwardProcess(LogSNR(module, name="learned"))
    x0 = torch.randn(4, 3, dtype=F64)
    t = torch.tensor([0.0, 0.2, 0.6, 1.0], dtype=F64)
    x_t, noise = process.q_sample(x0, t)
    lam = module(t).detach().reshape(-1, 1)
    expected = torch.sigmoid(lam).sqrt() * x0 + torch.sigmoid(-lam).sqrt() * noise
    torch.testing.assert_close(x_t.detach(), expected)
    x_t.pow(2).sum().backward()  # VDM trains lambda through the loss
    assert module.slope.grad is not None and module.slope.grad != 0
    assert module.offset.grad is not None and module.offset.grad != 0


@pytest.mark.parametrize(
    "page", ["getting-started.md", "continuous.md", "migration/k-diffusion.md"]
)
def test_documented_snippets_run(page):
    """The Python blocks of a docs page run in order (x0, batch and model stand in for the
    reader's own), so the documentation cannot drift from the API."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / page).read_text()
    namespace = {"batch": 4, "x0": torch.randn(4, 3, 8, 8), "model": lambda x, c: 0.5 * x}
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
