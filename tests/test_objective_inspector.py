"""The objective inspector (issue 11, item 5): w(lambda) = p(lambda) omega(lambda) c(lambda)
checked three ways: closed forms, equivalences, and Monte Carlo over keyed draws, each
with a negative control."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chi2

from noisejump import get_schedule
from noisejump.continuous import EDM, FlowMatching, LogSNR
from noisejump.objective import (
    LearnedUncertainty,
    conversion_factor,
    get_sampler,
    get_weighting,
    sample_time,
)
from noisejump.objective.inspector import implied_weighting, same_objective

F64 = torch.float64
LAM = torch.linspace(-19.5, 19.5, 391, dtype=F64)
#: chi-square tests reject at this false-alarm rate
FALSE_ALARM = 1e-4


def cosine() -> LogSNR:
    """signal = cos(pi t / 2): lambda(t) = -2 log tan(pi t / 2) (not the offset table)."""
    return LogSNR(lambda t: -2.0 * torch.log(torch.tan(math.pi * t / 2)), name="cosine")


def spread(ratio: torch.Tensor) -> float:
    """max / min - 1 of a ratio that should be constant."""
    return float(ratio.max() / ratio.min() - 1.0)


def gudermannian(x: float) -> float:
    return 2.0 * math.atan(math.tanh(x / 2.0))


# ---- closed forms ---------------------------------------------------------------------------


def test_cosine_uniform_epsilon_is_sech():
    w = implied_weighting(cosine(), sampler=get_sampler("uniform"), prediction="epsilon", lam=LAM)
    sech = 1.0 / torch.cosh(LAM / 2)
    # normalised over [-20, 20]: the integral of sech(lambda / 2) there is 4 gd(10)
    torch.testing.assert_close(w.weight, sech / (4.0 * gudermannian(10.0)), rtol=1e-9, atol=0)
    assert w.interval == (-20.0, 20.0)
    # the tails: 2 (gd(inf) - gd(10)) / (4 gd(10)) on each side, integrated to |lambda| = 50
    tail = (math.pi - 2 * gudermannian(10.0)) / (4 * gudermannian(10.0))
    assert w.mass_above == pytest.approx(tail, rel=1e-6)
    assert w.mass_below == pytest.approx(tail, rel=1e-6)
    # negative control: the same sampler with v is not sech
    v = implied_weighting(cosine(), sampler=get_sampler("uniform"), prediction="v", lam=LAM)
    assert spread(v.weight / sech) > 1.0


def test_cosine_uniform_v_and_flow_velocity_are_exp_minus_half_lambda():
    decay = torch.exp(-LAM / 2)
    v = implied_weighting(cosine(), sampler=get_sampler("uniform"), prediction="v", lam=LAM)
    flow = implied_weighting(
        FlowMatching(), sampler=get_sampler("uniform"), prediction="flow_velocity", lam=LAM
    )
    assert spread(v.weight / decay) < 1e-9
    assert spread(flow.weight / decay) < 1e-9
    # e^(-lambda/2) grows without bound towards lambda = -inf, which flow matching reaches
    assert flow.mass_below == math.inf and flow.mass_above < 1e-8
    # negative control: epsilon on the same sampler is not e^(-lambda/2)
    eps = implied_weighting(cosine(), sampler=get_sampler("uniform"), prediction="epsilon", lam=LAM)
    assert spread(eps.weight / decay) > 1.0


def test_the_library_cosine_table_is_not_the_continuous_cosine():
    """The offset ``cosine`` table of Nichol & Dhariwal is not sech(lambda/2): a control on
    the closed form's schedule."""
    table = implied_weighting(
        get_schedule("cosine", 1000), sampler=get_sampler("uniform"), prediction="epsilon", lam=LAM
    )
    inside = (LAM > table.interval[0] + 1) & (LAM < table.interval[1] - 1)
    assert spread(table.weight[inside] / (1.0 / torch.cosh(LAM[inside] / 2))) > 0.05


# ---- equivalences ---------------------------------------------------------------------------


def test_uniform_flow_velocity_is_cosine_v():
    flow = implied_weighting(
        FlowMatching(), sampler=get_sampler("uniform"), prediction="flow_velocity", lam=LAM
    )
    v = implied_weighting(cosine(), sampler=get_sampler("uniform"), prediction="v", lam=LAM)
    eps = implied_weighting(cosine(), sampler=get_sampler("uniform"), prediction="epsilon", lam=LAM)
    assert same_objective(flow, v)
    assert not same_objective(flow, eps)


@pytest.mark.parametrize("m, s, k", [(0.0, 1.0, 3.0), (-0.5, 0.7, 0.4)])
def test_shifted_logit_normal_is_logit_normal_with_mean_plus_log_shift(m, s, k):
    def inspect(schedule, mean):
        sampler = get_sampler("logit_normal", logit_mean=mean, logit_std=s)
        return implied_weighting(schedule, sampler=sampler, prediction="flow_velocity", lam=LAM)

    moved = inspect(FlowMatching(), m + math.log(k))
    assert same_objective(inspect(FlowMatching(shift=k), m), moved)
    assert same_objective(inspect(FlowMatching().shifted(k), m), moved)
    torch.testing.assert_close(
        inspect(FlowMatching(shift=k), m).weight, moved.weight, rtol=1e-9, atol=1e-300
    )
    # negative control: twice the log shift is another objective
    assert not same_objective(
        inspect(FlowMatching(shift=k), m), inspect(FlowMatching(), m + 2 * math.log(k))
    )


@pytest.mark.parametrize("k", [2.0, 0.5])
def test_shifted_edm_log_normal_is_p_mean_plus_log_shift(k):
    def inspect(schedule, p_mean):
        sampler = get_sampler("log_normal", p_mean=p_mean, p_std=1.2)
        return implied_weighting(
            schedule, sampler=sampler, prediction="sample", weighting="edm", lam=LAM
        )

    shifted, moved = inspect(EDM().shifted(k), -1.2), inspect(EDM(), -1.2 + math.log(k))
    assert same_objective(shifted, moved)
    torch.testing.assert_close(shifted.weight, moved.weight, rtol=1e-9, atol=1e-300)
    assert not same_objective(shifted, inspect(EDM(), -1.2 - math.log(k)))  # the wrong sign


# ---- Monte Carlo: keyed draws against per-bin integrals of w ---------------------------------


def weighted_histogram_chi2(
    draw_schedule, schedule, sampler, prediction, weighting, n=100_000, bins=16, span=None
) -> float:
    """chi-square of the keyed draws' weight omega c per lambda bin against scale times
    the bin's integral of the normalised w (``implied_weighting`` of ``schedule``); the
    draws come from ``draw_schedule`` (the control passes another one). Bins split
    ``span`` (default: the central 98 % of w), each holding at least 100 draws."""
    implied = implied_weighting(
        schedule, sampler=sampler, prediction=prediction, weighting=weighting, lam=LAM
    )
    t, draw_weight = sample_time(draw_schedule, sampler, n, seed=2, keys=torch.arange(n), dtype=F64)
    if t.dtype.is_floating_point:
        lam = draw_schedule.log_snr(t)
    else:
        lam = draw_schedule.log_snr[t]
    omega = 1.0 if weighting is None else weighting.omega(lam, prediction)
    value = draw_weight.to(F64) * omega * conversion_factor(prediction, lam)
    if implied.step_log_snr is None:
        low, high = span or implied.central_interval(0.98)
        edges = torch.linspace(low, high, bins + 1, dtype=F64)
    else:  # whole steps per bin: edges halfway between steps' log-SNRs
        lam_k = implied.step_log_snr.flip(0)
        middle = 0.5 * (lam_k[1:] + lam_k[:-1])
        edges = middle[torch.linspace(0, len(middle) - 1, bins + 1).round().long()]
    expected = implied.scale * (implied.cdf(edges[1:]) - implied.cdf(edges[:-1]))
    index = torch.bucketize(lam, edges) - 1
    inside = (index >= 0) & (index < bins)
    sums = torch.zeros(bins, dtype=F64).index_add_(0, index[inside], value[inside]) / n
    squares = torch.zeros(bins, dtype=F64).index_add_(0, index[inside], value[inside] ** 2) / n
    variance = (squares - sums**2) / n
    counts = torch.bincount(index[inside], minlength=bins)
    assert int(counts.min()) >= 100, f"too few draws in a bin: {counts.tolist()}"
    return float(((sums - expected) ** 2 / variance).sum())


def threshold(bins: int = 16) -> float:
    return float(chi2.ppf(1 - FALSE_ALARM, bins))


def test_monte_carlo_flow_logit_normal_shift_velocity():
    sampler = get_sampler("logit_normal")
    schedule = FlowMatching(shift=3.0)
    span = (-7.0, 3.0)  # where the draws are: lambda ~ N(-2 ln 3, 2^2)
    chi = weighted_histogram_chi2(schedule, schedule, sampler, "flow_velocity", None, span=span)
    assert chi < threshold()
    # negative control: draws from shift 3.3 against the shift-3 objective
    wrong = FlowMatching(shift=3.3)
    chi = weighted_histogram_chi2(wrong, schedule, sampler, "flow_velocity", None, span=span)
    assert chi > threshold()


def test_monte_carlo_edm_log_normal_edm_weighting_sample():
    sampler = get_sampler("log_normal")
    weighting = get_weighting("edm")
    schedule = EDM()
    # where the draws are (lambda = -2 ln sigma ~ N(2.4, 2.4^2)); below, e^-lambda weights
    # rare draws heavily and a histogram of 1e5 draws says little
    span = (-3.0, 8.0)
    chi = weighted_histogram_chi2(schedule, schedule, sampler, "sample", weighting, span=span)
    assert chi < threshold()
    wrong = EDM().shifted(1.1)  # P_mean moved by ln 1.1
    chi = weighted_histogram_chi2(wrong, schedule, sampler, "sample", weighting, span=span)
    assert chi > threshold()


def test_monte_carlo_discrete_min_snr_v():
    """A discrete schedule's draws land on steps: bins of steps against their masses."""
    schedule = get_schedule("linear", 40)
    sampler = get_sampler("logit_normal", logit_mean=0.3)
    weighting = get_weighting("min_snr", gamma=5.0)
    assert weighted_histogram_chi2(schedule, schedule, sampler, "v", weighting) < threshold()
    wrong = get_schedule("linear", 40).shifted(1.15)
    assert weighted_histogram_chi2(wrong, schedule, sampler, "v", weighting) > threshold()


# ---- discrete processes, ends and bad input ----------------------------------------------------


def test_discrete_step_masses_are_the_sampler_mass_times_omega_c():
    schedule = get_schedule("linear", 50)
    sampler = get_sampler("beta", a=2.0, b=3.0)
    weighting = get_weighting("p2", gamma=1.0, k=1.0)
    w = implied_weighting(
        schedule, sampler=sampler, prediction="sample", weighting=weighting, lam=LAM
    )
    edges = torch.arange(51, dtype=F64) / 50
    mass = sampler.cdf(edges[1:]) - sampler.cdf(edges[:-1])
    raw = mass * weighting.omega(schedule.log_snr, "sample") * torch.exp(-schedule.log_snr)
    torch.testing.assert_close(w.step_mass, raw / raw.sum(), rtol=1e-12, atol=0)
    assert w.step_mass.sum().item() == pytest.approx(1.0)
    # the cells' density integrates to 1 over the steps' cells
    fine = torch.linspace(w.interval[0], w.interval[1], 200_001, dtype=F64)
    dense = implied_weighting(
        schedule, sampler=sampler, prediction="sample", weighting=weighting, lam=fine
    )
    assert float(torch.trapezoid(dense.weight, fine)) == pytest.approx(1.0, abs=1e-3)


def test_importance_sampling_is_the_uniform_objective():
    schedule = get_schedule("linear", 20)
    importance = get_sampler("importance", num_steps=20)
    a = implied_weighting(schedule, sampler=importance, prediction="epsilon", lam=LAM)
    b = implied_weighting(schedule, sampler=get_sampler("uniform"), prediction="epsilon", lam=LAM)
    assert torch.equal(a.step_mass, b.step_mass)


def test_zero_terminal_snr_end_is_reported_not_nan():
    schedule = get_schedule("linear", 100, rescale_zero_terminal_snr=True)
    min_snr = implied_weighting(
        schedule, sampler=get_sampler("uniform"), prediction="v", weighting="min_snr", lam=LAM
    )
    # omega_v c_v = min(SNR, 5) e^-lambda -> 1 at lambda = -inf: the last step's mass
    expected = 0.01 * 1.0 / min_snr.scale
    assert min_snr.mass_below == pytest.approx(expected, rel=1e-12)
    plain = implied_weighting(schedule, sampler=get_sampler("uniform"), prediction="v", lam=LAM)
    assert plain.mass_below == math.inf  # c_v = 1 + e^-lambda is infinite at SNR 0
    assert bool(torch.isfinite(plain.weight).all())


def test_bad_input_is_refused_clearly():
    uniform = get_sampler("uniform")
    flow = FlowMatching()
    with pytest.raises(ValueError, match="not inspectable"):
        implied_weighting(EDM(), sampler=get_sampler("log_normal"), prediction="sample",
                          weighting=LearnedUncertainty(), lam=LAM)  # fmt: skip
    with pytest.raises(ValueError, match="flow_velocity"):
        implied_weighting(
            get_schedule("linear", 10), sampler=uniform, prediction="flow_velocity", lam=LAM
        )
    with pytest.raises(ValueError, match="zero-terminal-SNR"):
        schedule = get_schedule("linear", 10, rescale_zero_terminal_snr=True)
        implied_weighting(schedule, sampler=uniform, prediction="epsilon", lam=LAM)
    with pytest.raises(ValueError, match="lam must hold finite"):
        implied_weighting(flow, sampler=uniform, prediction="v", lam=[0.0, math.nan])
    with pytest.raises(ValueError, match="window must be finite with low < high"):
        implied_weighting(flow, sampler=uniform, prediction="v", lam=LAM, window=(5, -5))
    with pytest.raises(TypeError, match="sampler must be a TimestepSampler"):
        implied_weighting(flow, sampler="uniform", prediction="v", lam=LAM)
    with pytest.raises(ValueError, match="EDM.* takes a noise level"):
        implied_weighting(EDM(), sampler=uniform, prediction="sample", lam=LAM)
    with pytest.raises(ValueError, match="prediction must be one of"):
        implied_weighting(flow, sampler=uniform, prediction="x0", lam=LAM)
    with pytest.raises(ValueError, match="misses the log-SNR range"):
        implied_weighting(EDM(), sampler=get_sampler("log_normal"), prediction="sample",
                          lam=LAM, window=(-200.0, -100.0))  # fmt: skip
    with pytest.raises(ValueError, match="same lam grid"):
        a = implied_weighting(flow, sampler=uniform, prediction="v", lam=LAM)
        same_objective(a, implied_weighting(flow, sampler=uniform, prediction="v", lam=LAM[1:]))
