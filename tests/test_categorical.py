"""Categorical diffusion: the closed form against the chain, the posteriors against Bayes,
keyed draws, the losses, the sampler, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import noisejump as nj
from noisejump.categorical import (
    TOKEN_STREAM,
    CategoricalProcess,
    LogLinear,
    categorical_draw,
    d3pm_loss,
    discretized_gaussian,
    elbo_weight,
    keyed_token_uniforms,
    mdlm_loss,
    sampling_grid,
    verify_categorical,
)
from noisejump.categorical.sampling import ancestral_sample
from noisejump.continuous import EDM, VPSDE, FlowMatching, SubVPSDE
from noisejump.rng import philox4x32

F64 = torch.float64
K = 5


def _schedule(T=20):
    return nj.get_schedule("cosine", T)


def _matrices(T=20, K=K):
    return discretized_gaussian(torch.linspace(0.01, 0.2, T, dtype=F64), K)


def _process(kind, **kwargs):
    if kind == "matrices":
        return CategoricalProcess(None, K, _matrices(), **kwargs)
    return CategoricalProcess(_schedule(), K, kind, **kwargs)


KINDS = ("absorbing", "uniform", "matrices")


# ---- the closed form, the chain, the posterior: verify ---------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_verify_passes_exactly_and_statistically_with_controls_rejected(kind):
    report = verify_categorical(_process(kind), 10, n=1000, seed=3)
    assert report.exact_ok, report.exact_errors
    assert set(report.exact_errors) == {
        "Qbar_t: process/product",
        "q_probs: process/product",
        "q_probs (chain path)/product",
        "q_posterior: process/Bayes",
        "p_posterior: process/Bayes",
    }
    assert report.statistical_ok and report.controls_rejected and report.passed
    assert "verdict: PASS" in str(report) and "rejected" in str(report)


def test_the_dense_bound_sends_matrices_down_the_chain_and_both_agree():
    dense = CategoricalProcess(None, K, _matrices())
    chain = CategoricalProcess(None, K, _matrices(), max_dense_bytes=0)
    assert dense.plan(10, (2, 3)).path == "dense" and chain.plan(10, (2, 3)).path == "chain"
    assert "exceeds max_dense_bytes" in chain.plan(10, (2, 3)).reason
    x0 = torch.arange(K).repeat(3, 1)
    t = torch.tensor([0, 7, 19])
    assert torch.allclose(dense.q_probs(x0, t, dtype=F64), chain.q_probs(x0, t, dtype=F64),
                          rtol=0, atol=1e-14)  # fmt: skip
    assert verify_categorical(chain, 10, n=1000).passed


class _WrongJump(CategoricalProcess):
    """q_sample jumps one step too far: the statistical check must see it."""

    def q_sample(self, x0, t, **kwargs):
        return super().q_sample(x0, t + 1, **kwargs)


class _WrongClosedForm(CategoricalProcess):
    """Qbar_t with keep_t squared: the exact check must see it."""

    def marginal_matrix(self, t):
        keep, flip = self.keeps.keep(-1, t, torch.device("cpu"))
        return self._structured_matrix(float(keep) ** 2, 1 - float(keep) ** 2)


def test_verify_rejects_a_wrong_jump_and_a_wrong_closed_form():
    wrong = verify_categorical(_WrongJump(_schedule(), K, "uniform"), 10, n=1000)
    thresholds = wrong.thresholds
    assert not wrong.passed and wrong.exact_ok
    assert wrong.pvalues["q_sample (generator)"] <= thresholds["q_sample (generator)"]
    assert wrong.pvalues["q_sample (keyed)"] <= thresholds["q_sample (keyed)"]
    assert wrong.pvalues["q_sample_loop (chain)"] > thresholds["q_sample_loop (chain)"]
    closed = verify_categorical(_WrongClosedForm(_schedule(), K, "absorbing"), 10, n=200)
    assert not closed.exact_ok and closed.exact_errors["Qbar_t: process/product"] > 1e-3


def test_time_varying_m_stays_rank_one_with_a_mixture():
    """docs/categorical.md: with Q_k = a_k I + (1 - a_k) 1 m_k^T the product is
    abar_t I + 1 mbar_t^T, mbar_t = sum_k (abar_t / abar_k) (1 - a_k) m_k (checked on a
    random chain, against the dense product)."""
    generator = torch.Generator().manual_seed(0)
    a = 0.5 + 0.5 * torch.rand(6, generator=generator, dtype=F64)
    m = torch.rand(6, K, generator=generator, dtype=F64)
    m /= m.sum(1, keepdim=True)
    product, mixture, abar = torch.eye(K, dtype=F64), torch.zeros(K, dtype=F64), 1.0
    for a_k, m_k in zip(a.tolist(), m, strict=True):
        product = product @ (a_k * torch.eye(K, dtype=F64) + (1 - a_k) * m_k.expand(K, K))
        mixture, abar = a_k * mixture + (1 - a_k) * m_k, abar * a_k
    assert torch.allclose(product, abar * torch.eye(K, dtype=F64) + mixture.expand(K, K),
                          rtol=0, atol=1e-15)  # fmt: skip


# ---- the closed form in use -------------------------------------------------------------


@pytest.mark.parametrize("kind", ("absorbing", "uniform"))
def test_q_probs_closed_form_and_shapes(kind):
    process = _process(kind)
    x0 = torch.randint(0, K, (3, 2, 4), generator=torch.Generator().manual_seed(0))
    probs = process.q_probs(x0, 7)
    assert probs.shape == (3, 2, 4, process.num_states) and probs.dtype == torch.float32
    keep = float(_schedule().alphas_cumprod[7])
    m = process.stationary
    want = keep * torch.nn.functional.one_hot(x0, process.num_states).to(F64) + (1 - keep) * m
    assert torch.allclose(probs.double(), want, atol=1e-7)
    assert torch.allclose(process.q_probs(x0, 7, dtype=F64), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_per_token_steps_with_clean_tokens(kind):
    process = _process(kind)
    x0 = torch.randint(0, K, (4, 6), generator=torch.Generator().manual_seed(1))
    t = torch.randint(-1, 20, (4, 6), generator=torch.Generator().manual_seed(2))
    t[:, 0] = -1
    probs = process.q_probs(x0, t, dtype=F64)
    for b in range(4):
        for i in range(6):
            one = process.q_probs(x0[b : b + 1, i : i + 1], int(t[b, i]), dtype=F64)
            assert torch.equal(probs[b, i], one[0, 0])
    clean = torch.nn.functional.one_hot(x0[:, 0], process.num_states).to(F64)
    assert torch.equal(probs[:, 0], clean)
    x_t = process.q_sample(x0, t, seed=5, keys=torch.arange(4))
    assert x_t.dtype == torch.int64 and torch.equal(x_t[:, 0], x0[:, 0])
    assert torch.equal(process.q_sample_loop(x0, t)[:, 0], x0[:, 0])


@pytest.mark.parametrize("kind", KINDS)
def test_keyed_draws_are_batch_invariant_and_reproducible(kind):
    process = _process(kind)
    x0 = torch.randint(0, K, (6, 3, 5), generator=torch.Generator().manual_seed(0))
    keys = torch.tensor([[3, 9], [4, 9], [5, 9], [6, 9], [7, 9], [8, 9]])
    t = torch.tensor([0, 3, 8, 12, 15, 19])
    full = process.q_sample(x0, t, seed=11, keys=keys)
    part = process.q_sample(x0[2:5], t[2:5], seed=11, keys=keys[2:5])
    assert torch.equal(full[2:5], part)
    assert torch.equal(full, process.q_sample(x0, t, seed=11, keys=keys))
    assert not torch.equal(full, process.q_sample(x0, t, seed=12, keys=keys))


def test_keyed_absorbing_masks_grow_with_t():
    """u_keep is the same at every t, so the masked set at t is inside the one at t' > t."""
    process = _process("absorbing")
    x0 = torch.randint(0, K, (8, 32), generator=torch.Generator().manual_seed(0))
    keys = torch.arange(8)
    masked = [process.q_sample(x0, t, seed=1, keys=keys) == K for t in range(20)]
    for earlier, later in zip(masked, masked[1:], strict=False):
        assert not (earlier & ~later).any()
    assert masked[0].sum() < masked[10].sum() < masked[19].sum()


def test_keyed_token_uniforms_follow_the_documented_layout():
    keys = torch.tensor([[5, 7], [1, 2]])
    u_keep, u_draw = keyed_token_uniforms((2, 3), seed=2**40 + 3, keys=keys)
    x = philox4x32(torch.tensor(1), TOKEN_STREAM, 1, 2, 3, 2**8)  # sample 1, token 1
    x = [int(w) for w in x]
    k_keep, k_draw = ((x[0] >> 12) << 32) | x[1], ((x[2] >> 12) << 32) | x[3]
    assert u_keep[1, 1].item() == (2 * k_keep + 1) * 2.0**-53
    assert u_draw[1, 1].item() == (2 * k_draw + 1) * 2.0**-53
    assert u_keep.dtype == F64 and bool(((u_keep > 0) & (u_keep < 1)).all())


def test_categorical_draw_never_picks_a_state_of_probability_zero():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).expand(4, 5)
    u = torch.tensor([0.0, 0.25, 0.5, 1.0 - 2.0**-53], dtype=F64)
    assert categorical_draw(probs, u).tolist() == [1, 1, 3, 3]


# ---- posteriors -------------------------------------------------------------------------


def test_posterior_at_the_data_and_default_s():
    process = _process("uniform")
    x0 = torch.tensor([[0, 1, 2, 3]])
    x_t = torch.tensor([[4, 1, 0, 3]])
    assert torch.equal(process.q_posterior_probs(x0, x_t, 0, dtype=F64),
                       torch.nn.functional.one_hot(x0, K).to(F64))  # fmt: skip
    default = process.q_posterior_probs(x0, x_t, 9)
    assert torch.equal(default, process.q_posterior_probs(x0, x_t, 9, 8))


def test_model_posterior_of_a_sure_prediction_is_the_true_posterior():
    process = _process("uniform")
    x0 = torch.tensor([[0, 1, 2, 3]])
    x_t = process.q_sample(x0, 12, seed=0, keys=torch.tensor([0]))
    logits = 60.0 * torch.nn.functional.one_hot(x0, K).to(F64)
    for s in (-1, 5, 11):
        q = process.q_posterior_probs(x0, x_t, 12, s, dtype=F64)
        p = process.p_posterior_log_probs(logits, x_t, 12, s).exp()
        assert torch.allclose(p, q, atol=1e-12)


def test_absorbing_model_posterior_is_mdlm_unmasking():
    """MDLM (Sahoo et al. 2024) eq. 7: unmasked tokens carried over; a masked one stays
    masked w.p. (1 - keep_s) / (1 - keep_t), else takes class c w.p.
    (keep_s - keep_t) / (1 - keep_t) p(c)."""
    process = CategoricalProcess(LogLinear(), K, "absorbing")
    probs = torch.softmax(torch.randn(1, 2, K, generator=torch.Generator().manual_seed(0)), -1)
    x_t = torch.tensor([[K, 2]])  # masked, unmasked
    t, s = 0.6, 0.25
    post = process.p_posterior_probs(probs.double(), x_t, t, s)
    keep_t, keep_s = 1 - (1 - 1e-3) * t, 1 - (1 - 1e-3) * s
    assert torch.allclose(post[0, 0, K], torch.tensor((1 - keep_s) / (1 - keep_t), dtype=F64))
    want = (keep_s - keep_t) / (1 - keep_t) * probs[0, 0].double()
    assert torch.allclose(post[0, 0, :K], want)
    assert torch.equal(post[0, 1], torch.nn.functional.one_hot(torch.tensor(2), K + 1).to(F64))


# ---- schedules and losses ---------------------------------------------------------------


def test_elbo_weight_against_closed_forms():
    t = torch.tensor([1e-3, 0.1, 0.5, 1.0], dtype=F64)
    log_linear = CategoricalProcess(LogLinear(), K, "absorbing")
    assert torch.allclose(elbo_weight(log_linear, t), 1 / t, rtol=1e-12)
    vp = VPSDE()
    integral = vp.integral_beta(t)
    want = vp.beta(t) / torch.expm1(integral)  # -keep' / (1 - keep), keep = exp(-I)
    assert torch.allclose(elbo_weight(CategoricalProcess(vp, K, "absorbing"), t), want,
                          rtol=1e-12)  # fmt: skip
    with pytest.raises(ValueError, match="t_min"):
        elbo_weight(log_linear, torch.tensor([1e-4]))


@pytest.mark.parametrize("schedule", [EDM(), SubVPSDE(), FlowMatching()], ids=repr)
def test_non_variance_preserving_schedules_are_refused(schedule):
    with pytest.raises(ValueError, match="variance-preserving|unbounded"):
        CategoricalProcess(schedule, K, "absorbing")


def test_mdlm_loss_is_the_entropy_for_independent_tokens():
    """For independent tokens with marginal pi and the prediction p = pi, the mean of the
    MDLM loss over t ~ U[t_min, 1] is (1 - eps) H(pi) (keep(t_min) - keep(1) over
    1 - t_min). Seeded; tolerance 4 standard errors; control: p uniform must miss."""
    schedule = LogLinear()
    process = CategoricalProcess(schedule, K, "absorbing")
    pi = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    generator = torch.Generator().manual_seed(0)
    B, d = 20000, 16
    x0 = torch.multinomial(pi, B * d, replacement=True, generator=generator).reshape(B, d)
    u = torch.rand(B, generator=generator, dtype=F64)
    t = schedule.t_min + (1 - schedule.t_min) * u
    x_t = process.q_sample(x0, t, generator=generator)
    entropy = float(-(pi * pi.log()).sum())
    expected = (1 - schedule.eps) * entropy
    for logits, should_match in ((pi.log(), True), (torch.zeros(K), False)):
        loss = mdlm_loss(process, logits.expand(B, d, K), x0, x_t, t).double()
        error = abs(float(loss.mean()) - expected)
        assert (error < 4 * float(loss.std()) / math.sqrt(B)) == should_match


def test_mdlm_loss_is_finite_at_both_ends_and_zero_without_masks():
    process = CategoricalProcess(LogLinear(), K, "absorbing")
    x0 = torch.randint(0, K, (2, 8), generator=torch.Generator().manual_seed(0))
    logits = torch.randn(2, 8, K, requires_grad=True)
    x_t = x0.clone()
    x_t[0, :3] = K
    loss = mdlm_loss(process, logits, x0, x_t, torch.tensor([1e-3, 1.0], dtype=F64))
    assert torch.isfinite(loss).all() and loss[1] == 0 and loss[0] > 0
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="t must be a float in"):
        mdlm_loss(process, logits, x0, x_t, torch.tensor([1e-4, 0.5], dtype=F64))
    with pytest.raises(ValueError, match="absorbing"):
        mdlm_loss(CategoricalProcess(LogLinear(), K, "uniform"), logits, x0, x0, 0.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("zero_terminal", (False, True))
def test_d3pm_loss_is_finite_non_negative_and_zero_for_a_sure_prediction(kind, zero_terminal):
    schedule = _schedule()
    if zero_terminal:
        schedule = schedule.rescale_zero_terminal_snr()
    if kind == "matrices":
        process = CategoricalProcess(None, K, _matrices())
    else:
        process = CategoricalProcess(schedule, K, kind)
    x0 = torch.randint(0, K, (20, 6), generator=torch.Generator().manual_seed(0))
    t = torch.arange(20)  # every step, 0 and T - 1 included
    x_t = process.q_sample(x0, t, seed=0, keys=torch.arange(20))
    logits = torch.randn(20, 6, K, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss = d3pm_loss(process, logits, x0, x_t, t)
    assert torch.isfinite(loss).all() and (loss >= 0).all()
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    sure = 40.0 * torch.nn.functional.one_hot(x0, K).float()
    assert d3pm_loss(process, sure, x0, x_t, t, hybrid_lambda=0.0).abs().max() < 1e-5
    with_ce = d3pm_loss(process, logits, x0, x_t, t, hybrid_lambda=1.0)
    assert (with_ce > d3pm_loss(process, logits, x0, x_t, t, hybrid_lambda=0.0)).all()


# ---- the sampler ------------------------------------------------------------------------


def test_ancestral_sampling_of_the_true_model_reproduces_independent_data():
    """With independent tokens of marginal pi, p(x0 | x_t) = pi for masked tokens, so
    ancestral unmasking must return tokens distributed as pi (chi-square, seeded; control:
    the counts against a wrong pi are rejected)."""
    from noisejump.stats import chi_square

    pi = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05])
    process = CategoricalProcess(LogLinear(), K, "absorbing")
    assert len(sampling_grid(process, 7)) == 7 and sampling_grid(process, 1) == [1.0]

    def model(x_t, t):
        return pi.log().expand(*x_t.shape, K)

    tokens = ancestral_sample(model, process, (400, 10), steps=7,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert tokens.max() < K
    counts = torch.bincount(tokens.reshape(-1), minlength=K)[None].double()
    assert chi_square(counts, pi[None].double())[2] > 1e-3
    assert chi_square(counts, pi.flip(0)[None].double())[2] < 1e-3


# ---- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x0, error, match",
    [
        (torch.zeros(2, 3), TypeError, "integer tensor"),
        (torch.zeros(2, 3, dtype=torch.bool), TypeError, "integer tensor"),
        (torch.full((2, 3), K), ValueError, r"\[0, 4\] \(the data classes; 5 is the mask"),
        (torch.full((2, 3), -1), ValueError, r"integers in \[0, 4\]"),
        ([1, 2], TypeError, "integer tensor"),
    ],
)
def test_bad_tokens(x0, error, match):
    with pytest.raises(error, match=match):
        _process("absorbing").q_sample(x0, 3)


def test_bad_x_t_steps_and_pairs():
    process = _process("uniform")
    x0 = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"x_t must be integers in \[0, 4\]"):
        process.q_posterior_probs(x0, torch.full((2, 3), K), 3)
    with pytest.raises(ValueError, match="x_t must have x0's shape"):
        process.q_posterior_probs(x0, torch.zeros(2, 4, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match="need s < t"):
        process.q_posterior_probs(x0, x0, 3, 5)
    with pytest.raises(ValueError, match=r"t must be integers in \[-1, 19\]"):
        process.q_sample(x0, 20)
    with pytest.raises(ValueError, match="x0_logits must have shape"):
        process.p_posterior_log_probs(torch.zeros(2, 3, K + 1), x0, 3)
    with pytest.raises(ValueError, match="keyed noise needs both seed and keys"):
        process.q_sample(x0, 3, seed=1)
    with pytest.raises(TypeError, match="continuous-time"):
        CategoricalProcess(LogLinear(), K, "absorbing").q_sample_loop(x0, 0.5)


def test_bad_matrices_and_bounds():
    good = _matrices(T=4)
    bad_sum = good.clone()
    bad_sum[2, 1, 1] += 0.01
    negative = good.clone()
    negative[1, 0, 0], negative[1, 0, 1] = -0.1, negative[1, 0, 1] + negative[1, 0, 0] + 0.1
    infinite = good.clone()
    infinite[3, 2, 2] = math.inf
    for matrices, match in (
        (bad_sum, "row 1 of matrix 2 sums to"),
        (negative, "matrix 1 has a negative entry"),
        (infinite, "matrix 3 holds NaN or infinity"),
        (good[:, :3, :3], r"shape \(T, 5, 5\)"),
        ("gaussian", "kind must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            CategoricalProcess(None, K, matrices)
    with pytest.raises(ValueError, match="exceeds max_dense_bytes.*allows no chain"):
        CategoricalProcess(None, K, good, path="dense", max_dense_bytes=100)
    with pytest.raises(TypeError, match="schedule=None"):
        CategoricalProcess(_schedule(), K, good)
    with pytest.raises(ValueError, match="path='dense' is for user-given matrices"):
        CategoricalProcess(_schedule(), K, "uniform", path="dense")
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        CategoricalProcess(_schedule(), 1, "uniform")
