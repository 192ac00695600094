"""Sequences and video (issue 12, items 1-3 and 6): clean elements (step -1) are the data
exactly, the two joint laws of per-frame steps against their definitions, the one-draw
"frames" path of the chain law, and per-frame weights in the keyed loss.

Exact checks push basis vectors through the linear sampler (float64) and compare the
covariance with the law written here from scratch: the chain's covariance as a sum over
its steps, sum_k (c_k c_k^T) o S with c_k[i] = 1[k <= t_i] sqrt(beta_k abar_ti / abar_k)
(S the family's analytic covariance), independent of the K(a, b) of the library.
"""

import pytest
import torch

import noisejump as nj
from noisejump import sequences
from noisejump.continuous import EDM, VPSDE, FlowMatching
from noisejump.loss import keyed_mse, keyed_x_t
from noisejump.noise import Kronecker, available, get_noise
from noisejump.noise.examples import EXAMPLES
from noisejump.objective import InputPerturbation
from noisejump.verify import _linear_moments

F64 = torch.float64
SCHEDULE = nj.get_schedule("linear", 1000)
T = SCHEDULE.num_steps


def _clean_steps(shape, generator):
    """Per-element steps in [-1, T) with a third of them clean."""
    t = torch.randint(0, T, shape, generator=generator)
    return torch.where(torch.rand(shape, generator=generator) < 1 / 3, -1, t)


# ---- item 1: clean elements ----------------------------------------------------------------


@pytest.mark.parametrize("name", available())
def test_clean_elements_are_the_data_with_zero_noise_for_every_family(name):
    process = nj.ForwardProcess(SCHEDULE, EXAMPLES[name].build())
    event = EXAMPLES[name].exact
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, *event, generator=generator)
    t = _clean_steps((3, *event), generator)
    clean = t == -1
    for source in ({"generator": generator}, {"seed": 5, "keys": torch.arange(3)}):
        x_t, noise = process.q_sample(x0, t, **source)
        assert torch.equal(x_t[clean], x0[clean]) and not noise[clean].any(), source
        assert torch.isfinite(noise).all() and (x_t[~clean] != x0[~clean]).all()
    # a whole sample at -1, and a call at -1: the data itself
    t_sample = torch.tensor([-1, 10, -1])
    x_t, noise = process.q_sample(x0, t_sample, seed=5, keys=torch.arange(3))
    assert torch.equal(x_t[[0, 2]], x0[[0, 2]]) and not noise[[0, 2]].any()
    x_t, noise = process.q_sample(x0, -1, generator=generator)
    assert torch.equal(x_t, x0) and not noise.any()


@pytest.mark.parametrize("noise", ["isotropic", "pink"])
def test_clean_elements_on_the_forced_chain_and_the_other_entry_points(noise):
    chain = nj.ForwardProcess(SCHEDULE, noise, path="chain")
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 1, 8, 8, generator=generator)
    t = _clean_steps((2, 1, 8, 8), generator).clamp(max=30)
    clean = t == -1
    x_t, e = chain.q_sample(x0, t, seed=2, keys=torch.arange(2))
    assert torch.equal(x_t[clean], x0[clean]) and not e[clean].any() and e.isfinite().all()
    process = nj.ForwardProcess(SCHEDULE, noise)
    x_t = keyed_x_t(process, x0, t, seed=2, keys=torch.arange(2))
    assert torch.equal(x_t[clean], x0[clean])
    assert torch.equal(x_t, process.q_sample(x0, t, seed=2, keys=torch.arange(2))[0])
    y_t, target = InputPerturbation(0.1).q_sample(process, x0, t, seed=2, keys=torch.arange(2))
    assert torch.equal(y_t[clean], x0[clean]) and not target[clean].any()
    if noise == "isotropic":  # q_sample_from with per-element steps: diagonal noise
        x_t, e = process.q_sample_from(
            x0, torch.where(clean, -1, 0), t, seed=2, keys=torch.arange(2)
        )
        assert torch.equal(x_t[clean], x0[clean]) and not e[clean].any()


@pytest.mark.parametrize("schedule", [VPSDE(), FlowMatching(), EDM()], ids=["vp", "flow", "edm"])
def test_continuous_schedules_take_per_element_times(schedule):
    process = nj.ForwardProcess(schedule)
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 5, 2, 3, generator=generator)
    times = torch.rand(4, generator=generator, dtype=F64) * 0.9 + 0.05
    per_sample, _ = process.q_sample(x0, times, seed=1, keys=torch.arange(4))
    # the same time for every element of a sample is the per-sample call, bitwise
    same = times.reshape(4, 1, 1, 1).expand(4, 5, 1, 1)
    per_element, _ = process.q_sample(x0, same, seed=1, keys=torch.arange(4))
    assert torch.equal(per_element, per_sample)
    frames = same.clone()
    frames[:, :2] = -1.0  # two clean context frames
    x_t, noise = process.q_sample(x0, frames, seed=1, keys=torch.arange(4))
    assert torch.equal(x_t[:, :2], x0[:, :2]) and not noise[:, :2].any()
    assert torch.equal(x_t[:, 2:], per_sample[:, 2:])
    with pytest.raises(ValueError, match=r"broadcast to its shape \(4, 5, 2, 3\)"):
        process.q_sample(x0, torch.rand(4, 3, 1, 1, dtype=F64))


@pytest.mark.parametrize("name", ["isotropic", "diagonal", "frames-progressive", "pink"])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_clean_frames_add_nothing_to_the_loss(name, prediction):
    process = nj.ForwardProcess(SCHEDULE, EXAMPLES[name].build())
    generator = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, 3, 4, 4, generator=generator)
    t = torch.randint(0, T, (3, 3, 1, 1), generator=generator)
    t[:, 0] = -1  # frame (channel) 0 is context
    output = torch.randn(3, 3, 4, 4, generator=generator, requires_grad=True)
    kwargs = dict(seed=6, keys=torch.arange(3), prediction=prediction, x0=x0, min_snr_gamma=5.0)
    loss = keyed_mse(process, output, t, **kwargs)
    loss.backward()
    assert torch.isfinite(loss) and not output.grad[:, 0].any() and output.grad[:, 1:].all()
    changed = output.detach().clone()
    changed[:, 0] = 1e3  # whatever the model says about a clean frame
    assert torch.equal(keyed_mse(process, changed, t, **kwargs), loss.detach())


def test_per_frame_weights_in_the_keyed_loss():
    process = nj.ForwardProcess(SCHEDULE)
    generator = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 4, 3, 5, generator=generator)
    t = torch.randint(0, T, (2, 4, 1, 1), generator=generator)
    output = torch.randn(2, 4, 3, 5, generator=generator)
    weights = torch.rand(2, 4, 1, 1, generator=generator)
    loss = keyed_mse(process, output, t, seed=1, keys=torch.arange(2), weights=weights)
    _, noise = process.q_sample(x0, t, seed=1, keys=torch.arange(2))
    expected = (weights * (output - noise) ** 2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\) .* got \(2, 3\)"):
        keyed_mse(process, output, t, seed=1, keys=torch.arange(2), weights=torch.ones(2, 3))


# ---- items 2 and 3: the joint laws and the frames path --------------------------------------


def chain_covariance(schedule, steps, cov):
    """The covariance of the chain where element i stops after t_i steps, step by step:
    step k's noise reaches element i scaled by sqrt(beta_k) prod_(k < j <= t_i) sqrt(alpha_j)
    (products, not ratios of abar: exact at zero terminal SNR, where abar_T = 0)."""
    betas, alphas = schedule.betas, schedule.alphas
    steps = steps.flatten().tolist()
    total = torch.zeros_like(cov)
    for k in range(max(steps) + 1):
        c = torch.tensor(
            [(betas[k] * alphas[k + 1 : t + 1].prod()).sqrt() if k <= t else 0.0 for t in steps],
            dtype=F64,
        )
        total += torch.outer(c, c) * cov
    return total


def sampler_covariance(process, t, event):
    """(mean operator, covariance) of process._closed by pushing basis vectors."""
    white = process.white_shape((1, *event))[1:]
    draws = process._plan(t, (1, *event)).draws
    return _linear_moments(lambda x0, draw: process._closed(x0, t, draw), event, white, draws)


FRAME_FAMILIES = {
    "frames-progressive": lambda: get_noise("frames-progressive", rho=0.9),
    "frames-mixed": lambda: get_noise("frames-mixed", rho=0.6),
    "frames on axis 1": lambda: get_noise("frames-progressive", rho=0.7, axis=1),
    "kronecker": lambda: Kronecker(get_noise("rbf", length_scale=1.5), get_noise("frames-mixed")),
}


def _frame_steps(event, axis, values):
    shape = [1] * (len(event) + 1)
    shape[axis + 1] = event[axis]
    return torch.tensor(values).reshape(shape)


@pytest.mark.parametrize("name", FRAME_FAMILIES)
@pytest.mark.parametrize(
    "values",
    [[3, 40, 7, 900], [5, 5, 5, 5], [-1, 12, 12, -1], [999, 0, 999, 998]],
    ids=["distinct", "equal", "clean and equal", "extremes"],
)
def test_chain_law_of_per_frame_steps_is_the_per_frame_chain(name, values):
    process = nj.ForwardProcess(SCHEDULE, FRAME_FAMILIES[name]())
    event = (4, 2, 3) if name != "frames on axis 1" else (2, 4, 3)
    axis = 1 if name == "frames on axis 1" else 0
    t = _frame_steps(event, axis, values)
    assert process.plan(t, (1, *event)).path == "frames"
    mean, cov = sampler_covariance(process, t, event)
    expected = chain_covariance(SCHEDULE, t.expand(1, *event), process.noise.covariance(event))
    torch.testing.assert_close(cov, expected, rtol=0, atol=1e-12)
    signal, _ = SCHEDULE.marginal(t.expand(1, *event).flatten(), "cpu", F64)
    torch.testing.assert_close(mean, torch.diag(signal), rtol=0, atol=0)
    # negative control: the shared law is another law wherever the steps differ
    shared = nj.ForwardProcess(SCHEDULE, process.noise, joint_law="shared")
    _, shared_cov = sampler_covariance(shared, t, event)
    assert torch.allclose(shared_cov, expected, atol=1e-12) == (len(set(values) - {-1}) <= 1)


def test_chain_law_by_increments_is_the_per_element_chain():
    """Families without a frame split keep the increments path: per pixel steps, pink."""
    process = nj.ForwardProcess(SCHEDULE, get_noise("pink"))
    event = (1, 4, 4)
    t = _clean_steps((1, *event), torch.Generator().manual_seed(6)).clamp(max=60)
    assert process.plan(t, (1, *event)).path == "increments"
    _, cov = sampler_covariance(process, t, event)
    expected = chain_covariance(SCHEDULE, t, process.noise.covariance(event))
    torch.testing.assert_close(cov, expected, rtol=0, atol=1e-12)


def test_shared_law_is_one_draw_scaled_per_frame():
    noise = get_noise("frames-progressive", rho=0.9)
    process = nj.ForwardProcess(SCHEDULE, noise, joint_law="shared")
    x0 = torch.randn(2, 4, 3, 3, dtype=F64)
    t = torch.tensor([[2, 500, -1, 40], [7, 7, 999, 0]]).reshape(2, 4, 1, 1)
    assert process.plan(t, x0.shape).path == "closed" and "shared" in repr(process)
    x_t, e = process.q_sample(x0, t, generator=torch.Generator().manual_seed(7))
    draw = noise.sample(x0.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    clean = (t == -1).expand(x0.shape)
    assert torch.equal(e, torch.where(clean, 0.0, draw))  # L e of N(0, S), one draw
    signal, sigma = SCHEDULE.marginal(t, "cpu", F64)
    torch.testing.assert_close(x_t, signal * x0 + sigma * draw, rtol=0, atol=1e-15)
    _, cov = process.moments((4, 3, 3), t[1])
    sigma_flat = sigma[1].expand(4, 3, 3).flatten()
    expected = torch.outer(sigma_flat, sigma_flat) * noise.covariance((4, 3, 3))
    torch.testing.assert_close(cov, expected, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="'shared' law defines the marginal"):
        process.q_posterior(x0, x_t, t.clamp(1, 998) + 1, t.clamp(1, 998))
    with pytest.raises(ValueError, match="joint_law must be one of"):
        nj.ForwardProcess(SCHEDULE, noise, joint_law="independent")


def test_chain_law_at_zero_terminal_snr_and_in_continuous_time():
    zero = nj.get_schedule("linear", 1000, rescale_zero_terminal_snr=True)
    noise = get_noise("frames-progressive", rho=0.8)
    event = (4, 2)
    t = _frame_steps(event, 0, [999, 998, 999, -1])
    _, cov = sampler_covariance(nj.ForwardProcess(zero, noise), t, event)
    expected = chain_covariance(zero, t.expand(1, *event), noise.covariance(event))
    torch.testing.assert_close(cov, expected, rtol=0, atol=1e-12)
    # continuous time: Cov(x_a, x_b) = alpha_(b|a) sigma_a^2 R_ab for a <= b (Markov)
    schedule = VPSDE()
    times = torch.tensor([0.2, 0.7, 0.2, -1.0], dtype=F64)
    process = nj.ForwardProcess(schedule, noise)
    _, cov = sampler_covariance(process, times.reshape(1, 4, 1), event)
    k = torch.zeros(4, 4, dtype=F64)
    for i in range(4):
        for j in range(4):
            a, b = sorted((times[i], times[j]))
            alpha, _ = schedule.transition(a, b, "cpu")
            _, sigma_a = schedule.marginal(a, "cpu", F64)
            k[i, j] = 0.0 if -1.0 in (a, b) else alpha * sigma_a**2
    expected = torch.kron(k * noise.frame_covariance(4), torch.eye(2, dtype=F64))
    torch.testing.assert_close(cov, expected, rtol=0, atol=1e-12)


def test_frames_path_is_one_keyed_draw_and_batch_invariant():
    process = nj.ForwardProcess(SCHEDULE, get_noise("frames-progressive", rho=0.9))
    generator = torch.Generator().manual_seed(8)
    x0 = torch.randn(6, 8, 3, 4, 4, generator=generator)
    t = _clean_steps((6, 8, 1, 1, 1), generator)
    keys = torch.arange(6) * 7 + 2**40
    plan = process.plan(t, tuple(x0.shape))
    assert (plan.path, plan.draws) == ("frames", 1)
    full, noise = process.q_sample(x0, t, seed=3, keys=keys)
    rows = [4, 1, 2]
    part, part_noise = process.q_sample(x0[rows], t[rows], seed=3, keys=keys[rows])
    assert torch.equal(part, full[rows]) and torch.equal(part_noise, noise[rows])
    clean = (t == -1).expand(x0.shape)
    assert torch.equal(full[clean], x0[clean]) and not noise[clean].any()
    # the noise of each frame is still N(0, 1) and correlated with its neighbours
    noisy = noise[~(t == -1).flatten(1)[:, :, None].expand(6, 8, 48).reshape(6, 8, 3, 4, 4)]
    assert abs(float(noisy.std()) - 1) < 0.05


def test_verify_proves_the_frames_path_per_frame():
    process = nj.ForwardProcess(SCHEDULE, get_noise("frames-progressive", rho=0.9))
    report = nj.verify(process, 40, exact_shape=(4, 2, 2), stat_shape=(6, 4, 4), n=40,
                       per_frame=True)  # fmt: skip
    assert report.passed and max(report.exact_errors.values()) <= 1e-10
    assert process.plan(torch.tensor([1, 5, 9, 9]).reshape(1, 4, 1, 1), (1, 4, 2, 2)).path == (
        "frames"
    )
    with pytest.raises(ValueError, match="per_frame needs a frame family"):
        nj.verify(nj.ForwardProcess(SCHEDULE, "pink"), 40, per_frame=True)


def test_frames_path_draws_have_the_chain_correlation_and_the_shared_law_does_not():
    """Seeded statistics of the keyed frames path: the correlation of frames at steps
    (30, 300) is rho(30, 300) R_01 = exp(-|lambda_30 - lambda_300| / 2) 0.9 (the chain law),
    within 4 standard errors (1 - r^2) / sqrt(n) (false-alarm rate below 1e-4). Negative
    control: the shared law's draws, correlated by R_01 = 0.9 alone, are rejected."""
    noise = get_noise("frames-progressive", rho=0.9)
    n = 20000
    x0 = torch.zeros(n, 3, 1)
    t = torch.tensor([30, 300, -1]).reshape(1, 3, 1)
    lam = SCHEDULE.log_snr
    expected = torch.exp(-(lam[30] - lam[300]).abs() / 2).item() * 0.9
    bound = 4 * (1 - expected**2) / n**0.5
    keys = torch.arange(n)
    for law, accepted in (("chain", True), ("shared", False)):
        process = nj.ForwardProcess(SCHEDULE, noise, joint_law=law)
        _, e = process.q_sample(x0, t, seed=9, keys=keys)
        r = torch.corrcoef(e[:, :2, 0].T.double())[0, 1].item()
        assert (abs(r - expected) < bound) == accepted, (law, r, expected)
        assert not e[:, 2].any()  # the clean frame
        assert abs(e[:, 0].std().item() - 1) < 4 / (2 * n) ** 0.5  # unit variance per frame


def test_steps_below_minus_one_and_wrong_frame_counts_are_refused():
    process = nj.ForwardProcess(SCHEDULE, get_noise("frames-progressive", rho=0.9))
    x0 = torch.randn(2, 8, 3, 4, 4)
    keys = torch.arange(2)
    with pytest.raises(ValueError, match=r"t must be integers in \[-1, 999\], got values in"):
        process.q_sample(x0, torch.full((2, 8, 1, 1, 1), -2), seed=0, keys=keys)
    with pytest.raises(ValueError, match=r"t must be integers in \[-1, 999\]"):
        keyed_mse(process, x0, torch.tensor([-2, 5]), seed=0, keys=keys)
    with pytest.raises(ValueError, match=r"broadcast to its shape \(2, 8, 3, 4, 4\)"):
        process.q_sample(x0, torch.full((2, 5, 1, 1, 1), 3), seed=0, keys=keys)
    with pytest.raises(ValueError, match=r"or -1 for the data\), got -2.0"):
        nj.ForwardProcess(VPSDE()).q_sample(x0, torch.full((2, 8, 1, 1, 1), -2.0, dtype=F64))


@pytest.mark.parametrize("weighting", ["min_snr", "edm", "p2"])
def test_a_weighting_at_each_frames_step_is_the_frame_weights(weighting):
    """keyed_mse(weighting=w) at per-frame steps weights frame f by w at t_f, 0 where the
    frame is clean: mean over elements of frame_weights * (output - target)^2, per sample
    with reduction='none'."""
    process = nj.ForwardProcess(SCHEDULE, get_noise("diagonal", variance=torch.rand(3, 1, 1)))
    generator = torch.Generator().manual_seed(10)
    x0 = torch.randn(2, 3, 4, 5, generator=generator)  # frames on event axis 0
    steps = torch.tensor([[-1, 10, 700], [-1, -1, 999]])
    t = sequences.frame_steps(steps, x0)
    output = torch.randn(x0.shape, generator=generator)
    keys = torch.arange(2)
    kwargs = dict(seed=2, keys=keys, prediction="sample", x0=x0, weighting=weighting)
    per_sample = keyed_mse(process, output, t, reduction="none", **kwargs)
    weights = sequences.frame_weights(SCHEDULE, steps, weighting, prediction="sample")
    squares = sequences.frame_steps(weights, x0) * (output - x0) ** 2
    torch.testing.assert_close(per_sample, squares.mean((1, 2, 3)), rtol=1e-6, atol=0)
    torch.testing.assert_close(keyed_mse(process, output, t, **kwargs), per_sample.mean())
