"""ForwardProcess with correlated noise, per-element steps, and the time-varying processes.

Exact checks go through ``verify`` (closed form and chain against the analytic law, 1e-10
in float64); its statistical half is checked with negative controls in test_plan_verify.py.
Posteriors are compared with Gaussian conditioning of the joint law of (x_(t-1), x_t)
written here from scratch (the Schur complement), on small shapes.
"""

import math

import pytest
import torch

import noisejump as nj
from noisejump import stats
from noisejump.noise import available, get_noise
from noisejump.noise.examples import EXAMPLES
from noisejump.processes import BlurringProcess, LinearGaussianChain, MixtureProcess

F64 = torch.float64
SCHEDULE = nj.get_schedule("linear", 1000)
T = SCHEDULE.num_steps


def exact_errors(process, t, event, per_element=False):
    report = nj.verify(
        process, t, exact_shape=event, stat_shape=event, n=20, per_element=per_element
    )
    return report.exact_errors


@pytest.mark.parametrize("name", available())
def test_closed_form_and_chain_match_the_law_exactly(name):
    process = nj.ForwardProcess(SCHEDULE, EXAMPLES[name].build())
    errors = exact_errors(process, 12, EXAMPLES[name].exact)
    assert max(errors.values()) <= 1e-10, errors


@pytest.mark.parametrize("name", ["pink", "offset", "frames-progressive", "lowrank", "diagonal"])
def test_per_element_steps_match_the_law_exactly(name):
    process = nj.ForwardProcess(SCHEDULE, EXAMPLES[name].build())
    errors = exact_errors(process, 12, EXAMPLES[name].exact, per_element=True)
    assert max(errors.values()) <= 1e-10, errors


def mixture():
    weights = lambda s: torch.stack([1 - s / T, s / T], 1)  # noqa: E731
    return MixtureProcess(SCHEDULE, [get_noise("isotropic"), get_noise("pink")], weights)


def linear_chain():
    return LinearGaussianChain(
        30,
        lambda k, x: 0.98 * x + 0.01 * x.roll(1, -1),
        lambda k, e: 0.1 * e + 0.05 * (k % 3) * e.roll(1, -2),
    )


TIME_VARYING = {
    "mixture": mixture,
    "mixture-diagonal": lambda: MixtureProcess(
        SCHEDULE,
        [
            get_noise("diagonal", variance=torch.tensor([0.5, 2.0]).reshape(2, 1, 1)),
            get_noise("isotropic"),
        ],
        torch.rand(T, 2, generator=torch.Generator().manual_seed(0)),
    ),
    "mixture-offset": lambda: MixtureProcess(
        SCHEDULE,
        [get_noise("offset", strength=0.3), get_noise("rbf", length_scale=1.0)],
        torch.rand(T, 2, generator=torch.Generator().manual_seed(0)),
    ),
    "blurring": lambda: BlurringProcess(SCHEDULE),
    "linear": linear_chain,
}


@pytest.mark.parametrize("name", sorted(TIME_VARYING))
def test_time_varying_closed_form_matches_its_chain_exactly(name):
    errors = exact_errors(TIME_VARYING[name](), 25, (2, 4, 4))
    assert max(errors.values()) <= 1e-10, errors


def condition(prior_mean, c_prev, a_t, c_t, x_t_mean, x_t):
    """q(x_(t-1) | x_t) from the joint Gaussian: Schur complement of C_t."""
    cross = c_prev @ a_t.T  # Cov(x_(t-1), x_t)
    mean = prior_mean + cross @ torch.linalg.solve(c_t, x_t - x_t_mean)
    cov = c_prev - cross @ torch.linalg.solve(c_t, cross.T)
    return mean, cov


def kalman_reference(m_prev, c_prev, a_t, m_t, c_t, x0, x_t):
    d = x0[0].numel()
    flat0, flat_t = x0.reshape(-1, d).to(F64), x_t.reshape(-1, d).to(F64)
    means = []
    for i in range(len(flat0)):
        mean, cov = condition(m_prev @ flat0[i], c_prev, a_t, c_t, m_t @ flat0[i], flat_t[i])
        means.append(mean)
    return torch.stack(means).reshape(x_t.shape), cov


@pytest.mark.parametrize("name", ["pink", "offset", "kronecker"])
def test_fixed_covariance_posterior_is_the_kalman_update(name):
    example = EXAMPLES[name]
    process = nj.ForwardProcess(SCHEDULE, example.build())
    event, t = example.exact, 40
    x0 = torch.randn(2, *event, dtype=F64, generator=torch.Generator().manual_seed(0))
    x_t, _ = process.q_sample(x0, t, generator=torch.Generator().manual_seed(1))
    m_prev, c_prev = process.moments(event, t - 1)
    m_t, c_t = process.moments(event, t)
    a_t = math.sqrt(float(SCHEDULE.alphas[t])) * torch.eye(c_t.shape[0], dtype=F64)
    mean_ref, cov_ref = kalman_reference(m_prev, c_prev, a_t, m_t, c_t, x0, x_t)
    mean, variance = process.q_posterior(x0, x_t, t)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(variance * process.noise.covariance(event), cov_ref)


@pytest.mark.parametrize("name", ["mixture", "mixture-diagonal", "mixture-offset", "linear"])
def test_time_varying_posterior_is_the_kalman_update(name):
    process = TIME_VARYING[name]()
    event, t = (2, 4, 4), 17
    x0 = torch.randn(3, *event, dtype=F64, generator=torch.Generator().manual_seed(0))
    x_t, _ = process.q_sample(x0, t, generator=torch.Generator().manual_seed(1))
    m_prev, c_prev = process.moments(event, t - 1)
    m_t, c_t = process.moments(event, t)
    d = c_t.shape[0]
    if name == "linear":
        a_t = process.A(t, torch.eye(d, dtype=F64).reshape(d, *event)).reshape(d, d).T
    else:
        a_t = math.sqrt(float(SCHEDULE.alphas[t])) * torch.eye(d, dtype=F64)
    mean_ref, cov_ref = kalman_reference(m_prev, c_prev, a_t, m_t, c_t, x0, x_t)
    mean, cov = process.q_posterior(x0, x_t, t)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-9, atol=1e-10)
    basis = getattr(process, "basis", None)
    if basis == "identity":
        cov = torch.diag(cov.flatten())
    elif basis == "fft":  # per-frequency variances: S = F^H diag(cov) F per channel
        cov = get_noise("spectral", power=cov, normalize=False).covariance(event)
    torch.testing.assert_close(cov, cov_ref, rtol=1e-8, atol=1e-12)


def test_blurring_posterior_is_the_kalman_update():
    process = BlurringProcess(SCHEDULE)
    event, t = (1, 4, 4), 60
    x0 = torch.randn(2, *event, dtype=F64, generator=torch.Generator().manual_seed(0))
    x_t, _ = process.q_sample(x0, t, generator=torch.Generator().manual_seed(1))
    m_prev, c_prev = process.moments(event, t - 1)
    m_t, c_t = process.moments(event, t)
    a_t = m_t @ torch.linalg.inv(m_prev)  # A_t = M_t M_(t-1)^-1 (all diagonal in the DCT)
    mean_ref, cov_ref = kalman_reference(m_prev, c_prev, a_t, m_t, c_t, x0, x_t)
    mean, mode_variance = process.q_posterior(x0, x_t, t)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-9, atol=1e-10)
    basis = torch.kron(*(nj.processes.blurring.dct_matrix(4),) * 2)
    torch.testing.assert_close(basis.T @ torch.diag(mode_variance.flatten()) @ basis, cov_ref)


def test_posterior_at_the_first_step_is_the_data():
    x0 = torch.randn(2, 2, 4, 4, dtype=F64)
    for process in (mixture(), BlurringProcess(SCHEDULE), linear_chain()):
        mean, cov = process.q_posterior(x0, x0 + 1, 0)
        assert torch.equal(mean, x0) and not cov.any()


def test_per_element_q_sample_returns_consistent_noise_and_keeps_inputs():
    process = nj.ForwardProcess(SCHEDULE, get_noise("pink"))
    x0 = torch.randn(2, 3, 8, 8)
    before = x0.clone()
    t = torch.tensor([0, 10, 500, 999]).repeat(2, 3, 8, 2)
    x_t, noise = process.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    signal, sigma = SCHEDULE.marginal(t, "cpu", torch.float32)
    torch.testing.assert_close(x_t, signal * x0 + sigma * noise)
    assert torch.equal(x0, before)


def test_per_frame_steps_broadcast():
    """One step per frame (diffusion forcing): t of shape (B, F, 1, 1, 1)."""
    process = nj.ForwardProcess(SCHEDULE, get_noise("frames-progressive", rho=0.9, axis=0))
    x0 = torch.zeros(2, 4, 1, 3, 3, dtype=F64)
    t = torch.tensor([[3, 5, 5, 9], [0, 0, 1, 1]]).reshape(2, 4, 1, 1, 1)
    plan = process.plan(t, x0.shape)
    assert (plan.path, plan.draws) == ("frames", 1)  # one draw mixed across the 4 frames
    x_t, _ = process.q_sample(x0, t)
    assert x_t.shape == x0.shape
    # Without a frame split: one draw per distinct step of a sample (3 5 9 | 0 1), not of
    # the whole batch (0 1 3 5 9).
    increments = nj.ForwardProcess(SCHEDULE, get_noise("offset")).plan(t, x0.shape)
    assert (increments.path, increments.draws) == ("increments", 3)


def test_forced_chain_is_the_chain():
    process = nj.ForwardProcess(SCHEDULE, get_noise("pink"), path="chain")
    x0 = torch.randn(2, 1, 8, 8)
    x_t, noise = process.q_sample(x0, 30, generator=torch.Generator().manual_seed(3))
    chain = process.q_sample_loop(x0, 30, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x_t, chain)


def test_blurring_refuses_a_schedule_whose_snr_rises():
    sigmas = torch.linspace(0, 10, T)
    sigmas[500] = 2.0  # un-blurs for one step
    with pytest.raises(ValueError, match=r"invalid blur schedule.*SNR of DCT mode .* rises"):
        BlurringProcess(SCHEDULE, blur_sigmas=sigmas).q_sample(torch.zeros(1, 1, 8, 8), 3)
    with pytest.raises(ValueError, match="min_scale must be in"):
        BlurringProcess(SCHEDULE, min_scale=0.0)
    with pytest.raises(ValueError, match="two spatial axes"):
        BlurringProcess(SCHEDULE).q_sample(torch.zeros(2, 8), 3)


def test_mixture_and_linear_chain_refuse_bad_input():
    with pytest.raises(ValueError, match=r"weights must have shape \(T, K\)"):
        MixtureProcess(SCHEDULE, [get_noise("pink")], torch.ones(T, 2))
    with pytest.raises(ValueError, match=">= 0"):
        MixtureProcess(SCHEDULE, [get_noise("pink")], -torch.ones(T, 1))
    with pytest.raises(TypeError, match="callables"):
        LinearGaussianChain(10, "A", "B")
    with pytest.raises(ValueError, match="one step per sample, not per element"):
        mixture().q_sample(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long))


BAD_PROCESS_CALLS = [
    ("spectral", (2, 3, 32, 32), 5, None, r"spectrum is \(8, 8\)"),
    ("frames-mixed", (2, 8, 8), 5, None, None),
    ("pink", (2, 3, 8, 8), torch.zeros(2, 3, 8, 7, dtype=torch.long), None, "broadcast"),
    ("pink", (2, 3, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long), "noise", "noise= cannot"),
]


@pytest.mark.parametrize(("name", "shape", "t", "noise", "message"), BAD_PROCESS_CALLS)
def test_q_sample_refuses_mismatches(name, shape, t, noise, message):
    family = EXAMPLES[name].build()
    if name == "frames-mixed":
        family, message = get_noise("frames-mixed", rho=0.5, axis=3), "frame axis 3 does not exist"
    process = nj.ForwardProcess(SCHEDULE, family)
    x0 = torch.zeros(shape)
    if isinstance(t, torch.Tensor) and noise:
        t = t.clone()
        t[0, 0, 0, 0] = 7
    with pytest.raises(ValueError, match=message):
        process.q_sample(x0, t, noise=torch.zeros(shape) if noise else None)


def chain_jacobian(process, t, event, steps):
    """J (steps * m, d): x_t of the per-element chain when step k's white noise is a basis
    vector, row block k; the same white inputs for every t, so Cov(x_a, x_b) = J_a^T J_b."""
    white = process.white_shape((1, *event))[1:]
    m = math.prod(white)
    n = steps * m

    def draw(k):
        e = torch.zeros(n, m, dtype=F64)
        e[k * m : (k + 1) * m] = torch.eye(m, dtype=F64)
        return e.reshape(n, *white)

    return process._chain(torch.zeros(n, *event, dtype=F64), t, draw).reshape(n, -1)


def test_per_element_posterior_with_correlated_noise_conditions_the_chain():
    process = nj.ForwardProcess(SCHEDULE, get_noise("pink"))
    event = (1, 4, 4)
    t = torch.randint(1, 30, (1, *event), generator=torch.Generator().manual_seed(0))
    t[0, 0, 0, 0] = 0  # an element already at x0's posterior
    s = t - 1
    x0 = torch.randn(2, *event, dtype=F64, generator=torch.Generator().manual_seed(1))
    x_t, _ = process.q_sample(x0, t.expand(2, *event), generator=torch.Generator().manual_seed(2))
    j_s = chain_jacobian(process, s.clamp(min=-1), event, 30)
    j_t = chain_jacobian(process, t, event, 30)
    root_s = SCHEDULE._table("log_alphas_cumprod_x0", "cpu")[s.flatten() + 1].div(2).exp()
    root_t = SCHEDULE._table("log_alphas_cumprod_x0", "cpu")[t.flatten() + 1].div(2).exp()
    mean, cov = process.q_posterior(x0, x_t, t.expand(2, *event))
    # Gaussian conditioning with the chain's own covariances (J_a^T J_b), not the formula
    cov_ss, cov_st, cov_tt = j_s.T @ j_s, j_s.T @ j_t, j_t.T @ j_t
    for b in range(2):
        residual = x_t[b].flatten() - root_t * x0[b].flatten()
        mean_ref = root_s * x0[b].flatten() + cov_st @ torch.linalg.solve(cov_tt, residual)
        cov_ref = cov_ss - cov_st @ torch.linalg.solve(cov_tt, cov_st.T)
        torch.testing.assert_close(mean[b].flatten(), mean_ref, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(cov[b], cov_ref, rtol=1e-8, atol=1e-12)


def test_per_element_dense_posterior_reduces_to_the_elementwise_one():
    """A diagonal S given as a dense matrix takes the dense path; it must agree."""
    v = torch.tensor([0.5, 1.0, 2.0, 3.0]).repeat(4).reshape(1, 4, 4)
    as_dense = nj.ForwardProcess(SCHEDULE, get_noise("dense", cov=torch.diag(v.flatten())))
    as_diagonal = nj.ForwardProcess(SCHEDULE, get_noise("diagonal", variance=v))
    t = torch.randint(1, 900, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    x0 = torch.randn(2, 1, 4, 4, dtype=F64)
    x_t = torch.randn(2, 1, 4, 4, dtype=F64)
    mean, cov = as_dense.q_posterior(x0, x_t, t)
    mean_ref, variance = as_diagonal.q_posterior(x0, x_t, t)
    torch.testing.assert_close(mean, mean_ref)
    for b in range(2):
        torch.testing.assert_close(cov[b], torch.diag((variance[b] * v).flatten()))


def test_time_varying_per_sample_steps_match_one_step_at_a_time():
    x0 = torch.randn(3, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5, 17, 29])
    for name in ("mixture", "blurring", "linear"):
        process = TIME_VARYING[name]()
        zeros = torch.zeros(process.white_shape(x0.shape), dtype=F64)
        mean = process._closed(x0, t.reshape(3, 1, 1, 1), lambda k: zeros)  # noqa: B023
        chain = process._chain(x0, t.reshape(3, 1, 1, 1), lambda k: zeros)  # noqa: B023
        for i in range(3):
            x0_i, zeros_i = x0[i : i + 1], zeros[i : i + 1]
            closed_i = process._closed(x0_i, int(t[i]), lambda k: zeros_i)  # noqa: B023
            chain_i = process._chain(x0_i, int(t[i]), lambda k: zeros_i)  # noqa: B023
            torch.testing.assert_close(mean[i], closed_i[0])
            torch.testing.assert_close(chain[i], chain_i[0])


def test_jump_between_steps_with_correlated_noise():
    pink = get_noise("pink")
    process = nj.ForwardProcess(SCHEDULE, pink)
    x_s = torch.randn(2, 1, 8, 8, dtype=F64)
    noise = pink.sample((2, 1, 8, 8), dtype=F64)
    x_t, returned = process.q_sample_from(x_s, 10, 50, noise=noise)
    alpha, sigma2 = SCHEDULE.transition(10, 50, "cpu")
    torch.testing.assert_close(x_t, alpha * x_s + sigma2.sqrt() * noise)
    assert torch.equal(returned, noise)


def test_trajectory_with_correlated_noise_ends_in_the_marginal_law():
    """Seeded; false-alarm rate 1e-3 over 4 p-values; negative control: variance x 1.05."""
    process = nj.ForwardProcess(SCHEDULE, get_noise("pink"))
    event, n = (1, 8, 8), 600
    x0 = torch.randn(1, *event, dtype=F64, generator=torch.Generator().manual_seed(0))
    paths = process.trajectory(
        x0.expand(n, *event), [10, 200], generator=torch.Generator().manual_seed(1)
    )
    m_t, c_t = process.moments(event, 200)
    mean = (m_t @ x0.flatten()).expand(n, -1)
    last = paths[-1].reshape(n, -1)
    assert min(stats.gaussian_pvalues(last, mean, c_t).values()) > 1e-3 / 4
    wider = mean + (last - mean) * math.sqrt(1.05)
    assert min(stats.gaussian_pvalues(wider, mean, c_t).values()) < 1e-3 / 4


def test_per_element_law_at_zero_terminal_snr():
    schedule = nj.get_schedule("linear", 50, rescale_zero_terminal_snr=True)
    process = nj.ForwardProcess(schedule, get_noise("pink"))
    t = torch.tensor([0, 10, 49, 49]).repeat(1, 1, 4, 1)
    _, cov = process.moments((1, 4, 4), t)
    assert torch.isfinite(cov).all()
    last = (t == 49).flatten()
    torch.testing.assert_close(
        cov[last][:, last], process.noise.covariance((1, 4, 4))[last][:, last]
    )
    errors = nj.verify(process, 49, exact_shape=(1, 4, 4), stat_shape=(1, 4, 4), n=20).exact_errors
    assert max(errors.values()) <= 1e-10, errors


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_samples_keep_their_dtype_and_get_noise_at_the_first_step(dtype):
    process = nj.ForwardProcess(SCHEDULE, get_noise("pink"))
    x0 = torch.ones(2, 1, 8, 8, dtype=dtype)
    x_t, noise = process.q_sample(x0, 0, generator=torch.Generator().manual_seed(0))
    assert x_t.dtype == noise.dtype == dtype
    assert (x_t != x0).float().mean() > 0.5  # sigma_0 = 0.01: visible in every dtype
    t = torch.tensor([0, 5]).repeat(2, 1, 8, 4)
    x_t, noise = process.q_sample(x0, t, generator=torch.Generator().manual_seed(0))
    assert x_t.dtype == dtype and torch.isfinite(x_t.float()).all()
