"""Categorical diffusion, continued: continuous-time keep probabilities against their own
jumps, the plan of each path, keyed draws on every path, ``noisejump verify --process``,
what a call leaves untouched, and more bad input."""

from __future__ import annotations

import pytest
import torch

import noisejump as nj
from noisejump.categorical import (
    CategoricalProcess,
    LogLinear,
    d3pm_loss,
    discretized_gaussian,
    mdlm_loss,
    sampling_grid,
    verify_categorical,
)
from noisejump.cli import main
from noisejump.continuous import VPSDE
from noisejump.stats import chi_square

F64 = torch.float64
K = 5


def _matrices(T=20):
    return discretized_gaussian(torch.linspace(0.01, 0.2, T, dtype=F64), K)


def _continuous(kind):
    return CategoricalProcess(LogLinear() if kind == "absorbing" else VPSDE(), K, kind)


def _counts(process, x0, x_t):
    counts = torch.zeros(K, process.num_states, dtype=F64)
    counts.index_put_((x0.reshape(-1), x_t.reshape(-1)), torch.ones(x0.numel(), dtype=F64),
                      accumulate=True)  # fmt: skip
    return counts


# ---- continuous time: no chain, so the jumps are checked against each other ------------


@pytest.mark.parametrize("kind", ("absorbing", "uniform"))
def test_continuous_q_sample_frequencies_match_q_probs_and_reject_a_shifted_t(kind):
    """(x0, x_t) counts of 2000 sequences x K tokens, by generator and keyed draws, against
    q_probs at t (Pearson chi-square, alpha 1e-3 over 2 checks). Control: the same counts
    against q_probs at t + 0.05 must be rejected at this n."""
    process = _continuous(kind)
    t, n = 0.4, 2000
    x0 = torch.arange(K).expand(n, K).contiguous()
    classes = torch.arange(K)[None]
    law, wrong = (process.q_probs(classes, u, dtype=F64)[0] for u in (t, t + 0.05))
    drawn = [
        process.q_sample(x0, t, generator=torch.Generator().manual_seed(4)),
        process.q_sample(x0, t, seed=4, keys=torch.arange(n)),
    ]
    for x_t in drawn:
        counts = _counts(process, x0, x_t)
        assert chi_square(counts, law)[2] > 1e-3 / 2
        assert chi_square(counts, wrong)[2] < 1e-3 / 2


@pytest.mark.parametrize("kind", ("absorbing", "uniform"))
def test_continuous_posterior_averages_back_to_the_marginal(kind):
    """sum_(x_t) q(x_t | x0) q(x_s | x_t, x0) = q(x_s | x0) (total probability), exactly in
    float64 for every (x0, x_s), several s < t; a wrong s must miss it."""
    process = _continuous(kind)
    S = process.num_states
    x0 = torch.arange(K).repeat_interleave(S)[None]  # every (x0, x_t) pair
    x_t = torch.arange(S).repeat(K)[None]
    t = 0.7
    weights = process.q_probs(x0, t, dtype=F64)[0].gather(-1, x_t[0, :, None])  # (K S, 1)
    for s in (-1, 1e-3, 0.3, 0.69):
        post = process.q_posterior_probs(x0, x_t, t, s, dtype=F64)[0]
        mixed = (weights * post).reshape(K, S, S).sum(1)  # (x0, x_s)
        want = process.q_probs(torch.arange(K)[None], s, dtype=F64)[0]
        assert torch.allclose(mixed, want, rtol=0, atol=1e-14)
    wrong = process.q_probs(torch.arange(K)[None], 0.35, dtype=F64)[0]
    post = process.q_posterior_probs(x0, x_t, t, 0.3, dtype=F64)[0]
    assert not torch.allclose((weights * post).reshape(K, S, S).sum(1), wrong, atol=1e-3)


def test_continuous_per_token_times_are_per_token_jumps():
    process = _continuous("absorbing")
    x0 = torch.randint(0, K, (3, 4), generator=torch.Generator().manual_seed(0))
    t = torch.rand(3, 4, generator=torch.Generator().manual_seed(1), dtype=F64) * 0.9 + 0.05
    t[:, 0] = -1  # clean
    probs = process.q_probs(x0, t, dtype=F64)
    for b in range(3):
        for i in range(4):
            one = process.q_probs(x0[b : b + 1, i : i + 1], float(t[b, i]), dtype=F64)
            assert torch.equal(probs[b, i], one[0, 0])
    x_t = process.q_sample(x0, t, seed=0, keys=torch.arange(3))
    assert torch.equal(x_t[:, 0], x0[:, 0])
    part = process.q_sample(x0[1:], t[1:], seed=0, keys=torch.arange(1, 3))
    assert torch.equal(x_t[1:], part)  # keyed: batch-invariant with per-token times


def test_vp_keep_probability_is_signal_squared():
    process = _continuous("uniform")
    t = torch.tensor([0.05, 0.5, 0.95], dtype=F64)
    signal, _ = VPSDE().signal_sigma(t)
    x0 = torch.zeros(3, 1, dtype=torch.int64)
    probs = process.q_probs(x0, t, dtype=F64)[:, 0]
    keep = signal**2
    assert torch.allclose(probs[:, 0], keep + (1 - keep) / K, rtol=1e-13)
    assert torch.allclose(probs[:, 1], (1 - keep) / K, rtol=1e-13)


# ---- the plan --------------------------------------------------------------------------


def test_plan_names_each_path_and_why():
    schedule = nj.get_schedule("cosine", 20)
    for kind in ("absorbing", "uniform"):
        plan = CategoricalProcess(schedule, K, kind).plan(10, (4, 64))
        assert plan.path == "closed" and "commute" in plan.reason and "O(1)" in plan.cost
        per_token = CategoricalProcess(schedule, K, kind).plan(torch.zeros(4, 64, dtype=int))
        assert "per-token steps are per-token closed forms" in per_token.reason
        forced = CategoricalProcess(schedule, K, kind, path="chain").plan(10, (4, 64))
        assert forced.path == "chain" and "forced by path='chain'" in forced.reason
    dense = CategoricalProcess(None, K, _matrices())
    assert dense.plan(10, (4, 64)).path == "dense"
    assert "8 (T + 1) K^2 = 0.00401 MiB <= the bound 1.02e+03 MiB" in dense.plan(10).reason
    # One byte below the table: the chain, with the reason.
    walked = CategoricalProcess(None, K, _matrices(), max_dense_bytes=8 * 21 * K * K - 1)
    assert walked.plan(10).path == "chain" and "exceeds max_dense_bytes" in walked.plan(10).reason
    at_bound = CategoricalProcess(None, K, _matrices(), max_dense_bytes=8 * 21 * K * K)
    assert at_bound.plan(10).path == "dense"
    with pytest.raises(ValueError, match="continuous-time"):
        CategoricalProcess(LogLinear(), K, "absorbing", path="chain").plan(0.5, (2, 3))


def test_the_chain_beyond_the_bound_samples_the_same_law_as_the_dense_table():
    """Both paths' (x0, x_t) counts against the dense q_probs at t = 12; control at t = 13."""
    dense = CategoricalProcess(None, K, _matrices())
    walked = CategoricalProcess(None, K, _matrices(), max_dense_bytes=0)
    n = 2000
    x0 = torch.arange(K).expand(n, K).contiguous()
    classes = torch.arange(K)[None]
    law, wrong = (dense.q_probs(classes, t, dtype=F64)[0] for t in (12, 13))
    for process in (dense, walked):
        counts = _counts(process, x0, process.q_sample(x0, 12, seed=2, keys=torch.arange(n)))
        assert chi_square(counts, law)[2] > 1e-3 / 2
        assert chi_square(counts, wrong)[2] < 1e-3 / 2


@pytest.mark.parametrize("kind", ("absorbing", "uniform", "matrices"))
def test_keyed_forced_chain_is_batch_invariant(kind):
    if kind == "matrices":
        process = CategoricalProcess(None, K, _matrices(), path="chain")
    else:
        process = CategoricalProcess(nj.get_schedule("cosine", 20), K, kind, path="chain")
    x0 = torch.randint(0, K, (5, 2, 3), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([-1, 2, 9, 14, 19])
    keys = torch.arange(10, 15)
    full = process.q_sample(x0, t, seed=7, keys=keys)
    assert torch.equal(full[1:4], process.q_sample(x0[1:4], t[1:4], seed=7, keys=keys[1:4]))
    assert torch.equal(full[0], x0[0])


# ---- noisejump verify --process ----------------------------------------------------------


def test_verify_cli_checks_a_token_process(capsys):
    assert main(["verify", "--process", "absorbing", "--t", "5"]) == 0
    out = capsys.readouterr().out
    assert "kind='absorbing'" in out and "at t = 5" in out and "every state (S = 18)" in out
    assert "n = 1000 sequences x 17 tokens per path" in out and "verdict: PASS" in out
    assert out.count("rejected") >= 3
    assert main(["verify", "--process", "uniform", "--per-element"]) == 2
    assert "--per-element is for Gaussian processes" in capsys.readouterr().err
    assert main(["verify", "--process", "matrices", "--t", "20"]) == 2
    assert "t must be an int in [0, 19]" in capsys.readouterr().err


def test_verify_fails_where_the_controls_cannot_be_rejected():
    """At uniform t = 19 of 20 the law barely moves from step to step: the control cannot
    be rejected at this n, and verify must say FAIL rather than pass on a blind test."""
    process = CategoricalProcess(nj.get_schedule("cosine", 20), K, "uniform")
    report = verify_categorical(process, 19, n=200)
    assert report.exact_ok and report.statistical_ok
    assert not report.controls_rejected and not report.passed
    assert "NOT REJECTED" in str(report) and "verdict: FAIL" in str(report)


# ---- nothing the caller owns is changed -----------------------------------------------


def test_calls_leave_tokens_and_matrices_untouched():
    matrices = _matrices().float()
    before = matrices.clone()
    process = CategoricalProcess(None, K, matrices)
    matrices[0] = 0.0  # the caller's tensor changes; the process keeps its own copy
    assert torch.allclose(process.step_matrix(0), before[0].double())
    matrices.copy_(before)
    for p in (process, CategoricalProcess(nj.get_schedule("cosine", 20), K, "absorbing")):
        x0 = torch.randint(0, K, (3, 4), generator=torch.Generator().manual_seed(0))
        x_t = torch.full((3, 4), K - 1)
        kept = x0.clone(), x_t.clone()
        p.q_sample(x0, 5, seed=0, keys=torch.arange(3))
        p.q_sample_loop(x0, 5)
        p.q_posterior_probs(x0, x_t, 5)
        p.q_probs(x0, 5)
        assert torch.equal(x0, kept[0]) and torch.equal(x_t, kept[1])
    assert torch.equal(matrices, before)


def test_numpy_tokens_steps_seeds_and_keys_are_accepted():
    import numpy as np

    process = CategoricalProcess(nj.get_schedule("cosine", 20), K, "uniform")
    x0 = np.array([[0, 1, 2, 3]])
    got = process.q_sample(x0, np.int64(7), seed=np.int64(3), keys=np.arange(1))
    want = process.q_sample(torch.tensor(x0), 7, seed=3, keys=torch.arange(1))
    assert got.dtype == torch.int64 and torch.equal(got, want)


# ---- more bad input -------------------------------------------------------------------


def test_more_bad_arguments_are_named():
    schedule = nj.get_schedule("cosine", 20)
    uniform = CategoricalProcess(schedule, K, "uniform")
    absorbing = CategoricalProcess(LogLinear(), K, "absorbing")
    x0 = torch.zeros(2, 3, dtype=torch.int64)
    cases = [
        (lambda: uniform.q_probs(x0, 3, dtype=torch.float16), TypeError, "dtype must be"),
        (lambda: uniform.q_sample(x0, 1.5), TypeError, "floating t belongs to a continuous"),
        (lambda: absorbing.q_sample(x0, 0.0), ValueError, r"t must be a float in \[0.001, 1\]"),
        (lambda: absorbing.q_posterior_probs(x0, x0, 0.5), ValueError, "needs s"),
        (lambda: CategoricalProcess(schedule, K, "uniform", path="fast"), ValueError, "path must"),
        (lambda: CategoricalProcess(None, K, _matrices(), max_dense_bytes=-1), ValueError,
         "max_dense_bytes must be an int >= 0"),
        (lambda: CategoricalProcess(None, K, [[1.0]]), ValueError, r"shape \(T, 5, 5\)"),
        (lambda: CategoricalProcess(None, K, ["a"]), TypeError, "could not read the matrices"),
        (lambda: CategoricalProcess(object(), K, "uniform"), TypeError, "schedule must be"),
        (lambda: LogLinear(eps=0.0), ValueError, r"eps must be in \(0, 1\)"),
        (lambda: discretized_gaussian([0.0, 0.1], K), ValueError, r"betas must be"),
        (lambda: CategoricalProcess(None, K, _matrices()).stationary, ValueError,
         "no single distribution m"),
        (lambda: sampling_grid(uniform, 21), ValueError, r"steps must be in \[1, 20\]"),
        (lambda: sampling_grid(uniform, 0), ValueError, "steps must be a positive int"),
        (lambda: d3pm_loss(absorbing, torch.zeros(2, 3, K), x0, x0, 0.5), TypeError,
         "discrete-time bound"),
        (lambda: mdlm_loss(CategoricalProcess(schedule, K, "absorbing"), torch.zeros(2, 3, K),
                           x0, x0, 3), TypeError, "continuous-time schedule"),
        (lambda: d3pm_loss(uniform, torch.zeros(2, 3, K), x0, x0, 3, hybrid_lambda=-1.0),
         ValueError, "hybrid_lambda must be a finite number >= 0"),
        (lambda: uniform.p_posterior_probs(-torch.ones(2, 3, K), x0, 3), ValueError,
         "x0_probs must be finite and >= 0"),
        (lambda: uniform.p_posterior_log_probs(torch.zeros(2, 3, K, dtype=int), x0, 3),
         TypeError, "x0_logits must be a floating tensor"),
        (lambda: verify_categorical(uniform, 3, n=10), ValueError, "n must be an int >= 20"),
        (lambda: verify_categorical(absorbing, 3), TypeError, "needs discrete steps"),
    ]  # fmt: skip
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_lower_precision_matrices_are_held_to_their_precision_and_renormalised():
    """float32 rows sum to 1 only within K eps_32: accepted, renormalised in float64; a row
    off by 1e-4 is refused, naming the tolerance and the dtype."""
    matrices = _matrices().float()
    assert (matrices.double().sum(-1) - 1).abs().max() > 1e-9  # the float32 rounding
    process = CategoricalProcess(None, K, matrices)
    assert (process.step_matrix(3).sum(-1) - 1).abs().max() < 1e-15
    assert torch.allclose(process.step_matrix(3), matrices[3].double(), atol=1e-6)
    off = matrices.clone()
    off[2, 1, 1] += 1e-4
    with pytest.raises(ValueError, match=r"within 5.96e-07 for float32\); row 1 of matrix 2"):
        CategoricalProcess(None, K, off)
