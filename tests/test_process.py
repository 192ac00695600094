"""ForwardProcess: exact coefficients, diffusers equality, dtypes, bad input, properties."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import noisejump as nj
from noisejump.noise import NoiseFamily

T = 1000
F64 = torch.float64


@pytest.fixture(scope="module")
def process():
    return nj.ForwardProcess(nj.get_schedule("linear", T))


def column(values, ndim):
    return values.reshape((-1,) + (1,) * (ndim - 1))


class ZeroNoise(NoiseFamily):
    """A degenerate family (S = 0): the chain then returns its mean operator applied to x0."""

    def apply(self, white, shape=None):
        return torch.zeros_like(white)


# ---- exactness in float64 ---------------------------------------------------------------


def test_closed_form_coefficients_equal_the_chain_products():
    schedule = nj.get_schedule("cosine", T)
    alphas, betas = schedule.alphas, schedule.betas
    # chain: M_t = prod sqrt(alpha_k), C_t = alpha_t C_{t-1} + beta_t (DESIGN.md, section 1)
    mean, var = torch.ones((), dtype=F64), torch.zeros((), dtype=F64)
    means, variances = [], []
    for k in range(T):
        mean, var = mean * alphas[k].sqrt(), alphas[k] * var + betas[k]
        means.append(mean)
        variances.append(var)
    signal, sigma = schedule.marginal(torch.arange(T), "cpu", F64)
    torch.testing.assert_close(signal, torch.stack(means), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(sigma**2, torch.stack(variances), rtol=1e-12, atol=1e-15)


def test_chain_mean_operator_is_the_closed_form_signal():
    schedule = nj.get_schedule("linear", T)
    chain = nj.ForwardProcess(schedule, noise=ZeroNoise())
    x0 = torch.randn(4, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 7, 500, 999])
    signal, _ = schedule.marginal(t, "cpu", F64)
    torch.testing.assert_close(
        chain.q_sample_loop(x0, t), column(signal, 3) * x0, rtol=1e-12, atol=0
    )


def test_q_sample_from_composes_to_q_sample():
    schedule = nj.get_schedule("linear", T)
    s, t = torch.tensor([-1, 0, 10, 400]), torch.tensor([0, 5, 999, 401])
    alpha_ts, sigma2_ts = schedule.transition(s, t, "cpu")
    signal_s, sigma2_s = schedule.transition(-1, s, "cpu")
    signal_t, sigma2_t = schedule.transition(-1, t, "cpu")
    torch.testing.assert_close(alpha_ts * signal_s, signal_t, rtol=1e-13, atol=0)
    torch.testing.assert_close(sigma2_ts + alpha_ts**2 * sigma2_s, sigma2_t, rtol=1e-13, atol=0)


def test_q_sample_from_with_given_noise_is_its_formula(process):
    x_s = torch.randn(3, 5, dtype=F64)
    noise = torch.randn(3, 5, dtype=F64)
    abar = process.schedule.alphas_cumprod
    x_t, returned = process.q_sample_from(x_s, 10, 300, noise=noise)
    ratio = abar[300] / abar[10]
    torch.testing.assert_close(x_t, ratio.sqrt() * x_s + (1 - ratio).sqrt() * noise)
    assert returned is noise
    x0_jump, _ = process.q_sample_from(x_s, -1, 300, noise=noise)
    torch.testing.assert_close(x0_jump, process.q_sample(x_s, 300, noise=noise)[0])


def gaussian_conditional(s, t, abar):
    """q(x_s | x_t, x0) by conditioning the joint Gaussian of (x_s, x_t) given x0 (scalar)."""
    ab_s = 1.0 if s < 0 else abar[s]
    ab_t = abar[t]
    var_s, var_t = 1 - ab_s, 1 - ab_t
    cov_st = math.sqrt(ab_t / ab_s) * var_s  # x_t = sqrt(ab_t/ab_s) x_s + independent noise
    gain = cov_st / var_t
    # mean = sqrt(ab_s) x0 + gain (x_t - sqrt(ab_t) x0)
    return math.sqrt(ab_s) - gain * math.sqrt(ab_t), gain, var_s - gain * cov_st


@pytest.mark.parametrize(("s", "t"), [(-1, 0), (0, 1), (9, 10), (100, 999), (-1, 500), (3, 700)])
def test_posterior_equals_gaussian_conditioning(process, s, t):
    abar = process.schedule.alphas_cumprod.tolist()
    coef_x0, coef_xt, var = gaussian_conditional(s, t, abar)
    x0 = torch.randn(2, 4, dtype=F64)
    x_t = torch.randn(2, 4, dtype=F64)
    mean, variance = process.q_posterior(x0, x_t, t, s=s if s != t - 1 else None)
    torch.testing.assert_close(mean, coef_x0 * x0 + coef_xt * x_t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(variance, torch.tensor(var, dtype=F64), rtol=1e-10, atol=1e-15)


def test_posterior_is_ddpm_eq_7_and_x0_at_step_zero(process):
    schedule = process.schedule
    abar, betas, alphas = schedule.alphas_cumprod, schedule.betas, schedule.alphas
    t = torch.tensor([0, 1, 50, 999])
    x0, x_t = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    mean, variance = process.q_posterior(x0, x_t, t)
    abar_prev = torch.cat([torch.ones(1, dtype=F64), abar[:-1]])[t]
    coef_x0 = abar_prev.sqrt() * betas[t] / (1 - abar[t])
    coef_xt = alphas[t].sqrt() * (1 - abar_prev) / (1 - abar[t])
    expected = column(coef_x0, 2) * x0 + column(coef_xt, 2) * x_t
    torch.testing.assert_close(mean, expected, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(
        variance.flatten(), (1 - abar_prev) * betas[t] / (1 - abar[t]), rtol=1e-10, atol=0
    )
    assert torch.equal(mean[0], x0[0]) and variance.flatten()[0] == 0


def test_targets_and_their_inverse(process):
    x0 = torch.randn(3, 2, 4, 4, dtype=F64)
    t = torch.tensor([0, 300, 999])
    x_t, noise = process.q_sample(x0, t)
    v = process.v_target(x0, noise, t)
    abar = column(process.schedule.alphas_cumprod[t], 4)
    torch.testing.assert_close(v, abar.sqrt() * noise - (1 - abar).sqrt() * x0)
    for prediction, output in (("epsilon", noise), ("v", v), ("sample", x0)):
        torch.testing.assert_close(process.predict_x0(x_t, output, t, prediction), x0)


def test_epsilon_prediction_refused_at_zero_terminal_snr():
    schedule = nj.get_schedule("linear", T, rescale_zero_terminal_snr=True)
    process = nj.ForwardProcess(schedule)
    x0 = torch.randn(2, 3)
    x_t, noise = process.q_sample(x0, T - 1)
    with pytest.raises(ValueError, match="prediction='v'"):
        process.predict_x0(x_t, noise, T - 1, "epsilon")
    v = process.v_target(x0, noise, T - 1)
    torch.testing.assert_close(process.predict_x0(x_t, v, T - 1, "v"), x0)


# ---- diffusers --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_q_sample_equals_diffusers_add_noise_in_float32(name):
    diffusers = pytest.importorskip("diffusers")
    reference = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=name)
    process = nj.ForwardProcess(nj.get_schedule(name, T))
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(16, 3, 8, 8, generator=g)
    noise = torch.randn(16, 3, 8, 8, generator=g)
    t = torch.randint(0, T, (16,), generator=g)
    ours, _ = process.q_sample(x0, t, noise=noise)
    torch.testing.assert_close(ours, reference.add_noise(x0, noise, t), rtol=0, atol=1e-5)
    v_ref = reference.get_velocity(x0, noise, t)
    torch.testing.assert_close(process.v_target(x0, noise, t), v_ref, rtol=0, atol=1e-5)


# ---- dtypes -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_gets_float32_coefficients(dtype):
    """At small t, sqrt(1 - abar) rounded to bfloat16 first is 0 or far off; ours is not."""
    schedule = nj.get_schedule("linear", T)
    process = nj.ForwardProcess(schedule)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(64, 3, 16, 16, generator=g).to(dtype)
    t = torch.arange(21).repeat_interleave(4)[:64]
    x_t, noise = process.q_sample(x0[: len(t)], t, generator=g)
    abar = column(schedule.alphas_cumprod[t], 4)
    exact = abar.sqrt() * x0[: len(t)].double() + (1 - abar).sqrt() * noise.double()
    assert x_t.dtype == dtype and noise.dtype == dtype
    # within one rounding of the float64 formula (of the returned noise)
    spacing = torch.finfo(dtype).eps * exact.abs().clamp_min(torch.finfo(dtype).tiny)
    assert ((x_t.double() - exact).abs() <= spacing).all()
    moved = (x_t.double() - x0[: len(t)].double()).abs().mean()
    exact_moved = (exact - x0[: len(t)].double()).abs().mean()
    assert abs(moved / exact_moved - 1) < 0.05


def test_low_precision_negative_control():
    """The naive path (coefficients rounded to bfloat16 first) fails the same 5% check."""
    schedule = nj.get_schedule("linear", T)
    x0 = torch.randn(21, 3, 16, 16, generator=torch.Generator().manual_seed(2)).bfloat16()
    noise = torch.randn(21, 3, 16, 16, generator=torch.Generator().manual_seed(3)).bfloat16()
    t = torch.arange(21)
    abar = column(schedule.alphas_cumprod[t], 4)
    naive = abar.bfloat16().sqrt() * x0 + (1 - abar.bfloat16()).sqrt() * noise
    exact = abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()
    moved = (naive.double() - x0.double()).abs().mean()
    exact_moved = (exact - x0.double()).abs().mean()
    assert abs(moved / exact_moved - 1) > 0.05


def test_float64_stays_float64(process):
    x0 = torch.randn(2, 3, dtype=F64)
    x_t, noise = process.q_sample(x0, 5)
    assert x_t.dtype == noise.dtype == F64
    abar = process.schedule.alphas_cumprod[5]
    torch.testing.assert_close(
        x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise, rtol=1e-12, atol=1e-14
    )


# ---- behaviour ----------------------------------------------------------------------------


def test_inputs_are_not_mutated_and_generator_reproduces(process):
    x0 = torch.randn(4, 3, 5)
    noise = torch.randn(4, 3, 5)
    t = torch.tensor([1, 2, 3, 4])
    copies = [x0.clone(), noise.clone(), t.clone()]
    process.q_sample(x0, t, noise=noise)
    process.q_sample_loop(x0, t)
    process.q_posterior(x0, x0, t)
    process.trajectory(x0, [1, 5])
    for original, copy in zip((x0, noise, t), copies, strict=True):
        assert torch.equal(original, copy)
    a = process.q_sample(x0, t, generator=torch.Generator().manual_seed(9))
    b = process.q_sample(x0, t, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    "t", [7, torch.tensor(7), torch.tensor([7, 7, 7]), torch.tensor(7, dtype=torch.int32)]
)
def test_step_forms_agree(process, t):
    x0, noise = torch.randn(3, 2, 2), torch.randn(3, 2, 2)
    x_t, _ = process.q_sample(x0, t, noise=noise)
    torch.testing.assert_close(x_t, process.q_sample(x0, 7, noise=noise)[0], rtol=0, atol=0)


def test_trajectory_is_consistent_successive_jumps(process):
    x0 = torch.randn(2, 3, dtype=F64)
    steps = [0, 10, 500, 999]
    path = process.trajectory(x0, steps, generator=torch.Generator().manual_seed(4))
    assert path.shape == (4, 2, 3)
    # replay: the same generator draws the same increments in the same order
    g = torch.Generator().manual_seed(4)
    x, previous = x0, -1
    for i, k in enumerate(steps):
        x, _ = process.q_sample_from(x, previous, k, generator=g)
        torch.testing.assert_close(path[i], x)
        previous = k


# ---- bad input ----------------------------------------------------------------------------


def test_bad_steps(process):
    x0 = torch.randn(4, 3)
    cases = [
        # -1 is the data (a clean element), allowed; nothing below it is
        (ValueError, r"t must be integers in \[-1, 999\], got 1000", 1000),
        (ValueError, r"got -2", -2),
        (ValueError, r"values in \[-2, 1\]", torch.tensor([-2, 1, 0, 0])),
        (ValueError, r"values in \[0, 1000\]", torch.tensor([0, 1, 2, 1000])),
        (TypeError, "floating t", 3.0),
        (TypeError, "floating t", torch.tensor([1.0, 2.0, 3.0, 4.0])),
        (TypeError, "boolean", True),
        (TypeError, "boolean", torch.tensor([True, False, True, True])),
        (ValueError, "batch", torch.tensor([1, 2, 3])),
        (ValueError, r"got shape \(4, 3, 2\)", torch.zeros(4, 3, 2, dtype=torch.long)),
        (TypeError, "int or an integer tensor", "5"),
    ]
    for error, match, t in cases:
        with pytest.raises(error, match=match):
            process.q_sample(x0, t)
    with pytest.raises(ValueError, match=r"s must be integers in \[-1, 999\]"):
        process.q_sample_from(x0, -2, 5)
    with pytest.raises(ValueError, match="need s <= t"):
        process.q_sample_from(x0, 6, 5)
    with pytest.raises(ValueError, match="need s < t"):
        process.q_posterior(x0, x0, 5, s=5)
    with pytest.raises(ValueError, match="strictly increasing"):
        process.trajectory(x0, [5, 5])


def test_bad_samples_and_noise(process):
    with pytest.raises(TypeError, match="x0 must be a floating tensor"):
        process.q_sample(torch.ones(2, 3, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="got torch.bool"):
        process.q_sample(torch.ones(2, 3, dtype=torch.bool), 1)
    with pytest.raises(TypeError, match="got list"):
        process.q_sample([1.0, 2.0], 1)
    with pytest.raises(ValueError, match="empty"):
        process.q_sample(torch.ones(0, 3), 1)
    x0 = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"noise must have the sample's shape \(2, 3\)"):
        process.q_sample(x0, 1, noise=torch.randn(2, 4))
    with pytest.raises(ValueError, match="noise is on meta"):
        process.q_sample(x0, 1, noise=torch.empty(2, 3, device="meta"))
    with pytest.raises(TypeError, match="noise must be a floating tensor"):
        process.q_sample(x0, 1, noise=torch.ones(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="prediction must be one of"):
        process.predict_x0(x0, x0, 1, "eps")
    with pytest.raises(ValueError, match="x_t must have x0's shape"):
        process.q_posterior(x0, torch.randn(3, 3), 1)


# ---- properties -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_q_sample_property(process, shape, dtype, per_sample, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g).to(dtype)
    t = torch.randint(0, T, (shape[0],), generator=g) if per_sample else int(seed % T)
    x_t, noise = process.q_sample(x0, t, generator=g)
    assert x_t.shape == noise.shape == x0.shape
    assert x_t.dtype == noise.dtype == dtype
    assert torch.isfinite(x_t).all()
    abar = process.schedule.alphas_cumprod[t]
    if per_sample:
        abar = column(abar, len(shape))
    exact = abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()
    tolerance = 4 * torch.finfo(dtype).eps * (exact.abs() + 1)  # two roundings, plus table ulps
    assert ((x_t.double() - exact).abs() <= tolerance).all()
