"""The plan (which path, why, what it costs), q_sample following it, verify and its CLI.

verify's statistical half uses ALPHA = 1e-3 as the false-alarm rate of the whole check;
each passing check is paired with negative controls at the same n and seed: a sampler
whose variance is 1.05 x too large, and one that drops the correlation.
"""

import math

import pytest
import torch

import noisejump as nj
from noisejump.cli import main
from noisejump.noise import Colored, available, get_noise
from noisejump.processes import BlurringProcess, LinearGaussianChain, MixtureProcess
from noisejump.verify import VerifyReport

SCHEDULE = nj.get_schedule("linear", 1000)


def plan_of(noise, t, shape=(4, 3, 16, 16), **kwargs):
    return nj.ForwardProcess(SCHEDULE, noise, **kwargs).plan(t, shape)


def test_plan_paths_and_reasons():
    assert plan_of("isotropic", 500).path == "closed"
    pink = plan_of("pink", 500)
    assert (pink.path, pink.cost, pink.draws) == ("closed", "O(d log d)", 1)
    assert "fixed S" in pink.reason and pink.chain_ops_per_sample > 100 * pink.ops_per_sample
    per_element = torch.tensor([3, 3, 7, 9]).reshape(1, 1, 1, 4).expand(4, 3, 16, 4)
    increments = plan_of("pink", per_element, (4, 3, 16, 4))
    assert (increments.path, increments.draws) == ("increments", 3)
    assert "not a multiple of S" in increments.reason
    diagonal = get_noise("diagonal", variance=torch.ones(3, 1, 1))
    assert plan_of(diagonal, per_element, (4, 3, 16, 4)).path == "closed"
    forced = plan_of("pink", 500, path="chain")
    assert (forced.path, forced.draws) == ("chain", 501) and "forced" in forced.reason


def test_plan_prints_path_reason_and_cost():
    text = str(plan_of("offset", 999))
    for part in ("path: closed", "why:", "cost per sample: O(d)", "the chain:", "1e+03x more"):
        assert part in text


def test_time_varying_plans():
    steps = SCHEDULE.num_steps
    weights = torch.stack([torch.ones(steps), torch.linspace(0, 1, steps)], 1)
    mixture = MixtureProcess(SCHEDULE, [get_noise("isotropic"), get_noise("pink")], weights)
    assert mixture.plan(10, (2, 1, 8, 8)).path == "mixture"
    assert "per frequency" in mixture.plan(10).reason
    mixed_bases = MixtureProcess(SCHEDULE, [get_noise("offset"), get_noise("pink")], weights)
    assert "dense d x d solve" in mixed_bases.plan(10).reason
    assert BlurringProcess(SCHEDULE).plan(10, (2, 1, 8, 8)).path == "per-mode"
    chain = LinearGaussianChain(50, lambda k, x: 0.9 * x, lambda k, e: 0.1 * e)
    small = chain.plan(10, (2, 4, 8, 8))
    assert small.path == "dense" and small.memory_bytes == 5 * 256**2 * 8
    assert "MiB" in str(small)
    big = chain.plan(10, (2, 3, 32, 32))
    assert big.path == "chain" and "d = 3072" in big.reason and big.draws == 11


def test_q_sample_follows_the_plan(monkeypatch):
    process = nj.ForwardProcess(SCHEDULE, get_noise("pink"))

    def no_chain(*args):
        raise RuntimeError("the chain ran")

    monkeypatch.setattr(process, "_chain", no_chain)
    process.q_sample(torch.zeros(2, 1, 8, 8), 999)  # closed-form plan: no chain
    process.path = "chain"
    with pytest.raises(RuntimeError, match="the chain ran"):
        process.q_sample(torch.zeros(2, 1, 8, 8), 3)


def test_bad_path_is_refused():
    with pytest.raises(ValueError, match=r"path must be one of \('auto', 'chain'\)"):
        nj.ForwardProcess(SCHEDULE, "pink", path="fast")


class TooWide(Colored):
    """Pink noise with 1.05 x the variance its covariance claims."""

    def apply(self, white, shape=None):
        return super().apply(white, shape) * math.sqrt(1.05)


class Uncorrelated(Colored):
    """Claims pink noise's covariance, draws white noise: correlation dropped."""

    def apply(self, white, shape=None):
        return white


# verify's statistical half at a size where variance x 1.05 is ~8 standard errors away
STAT = {"stat_shape": (1, 16, 16), "n": 200}


@pytest.mark.parametrize("t", [20, 60])
def test_verify_passes_a_correct_process(t):
    report = nj.verify(nj.ForwardProcess(SCHEDULE, "pink"), t, **STAT)
    assert report.passed, str(report)
    assert "verdict: PASS" in str(report)


@pytest.mark.parametrize("wrong", [TooWide, Uncorrelated])
def test_verify_rejects_a_wrong_sampler(wrong):
    report = nj.verify(nj.ForwardProcess(SCHEDULE, wrong(1.0)), 60, **STAT)
    assert not report.exact_ok and not report.statistical_ok, str(report)
    assert "verdict: FAIL" in str(report)


def test_verify_statistics_reject_a_wrong_chain():
    """A chain whose steps are 1.05 x too noisy: exact check and statistics both catch it."""
    process = BlurringProcess(SCHEDULE)
    step = process._chain_step
    process._chain_step = lambda x, k, white: step(x, k, white * math.sqrt(1.05))
    report = nj.verify(process, 60, **STAT)
    assert report.exact_errors["covariance: chain/law"] > 0.01
    assert min(v for k, v in report.pvalues.items() if k.startswith("chain")) < report.threshold


def test_cli_verify_lists_and_checks(capsys):
    assert main(["verify", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in available())
    assert main(["verify", "--noise", "frames-mixed", "--per-element", "--n", "50"]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    assert main(["verify", "--noise", "pink", "--alpha", "2"]) == 2
    assert "alpha must be in (0, 1)" in capsys.readouterr().err


def test_verify_refuses_bad_arguments():
    process = nj.ForwardProcess(SCHEDULE, "pink")
    with pytest.raises(ValueError, match=r"t must be an int in \[0, 999\], got 5000"):
        nj.verify(process, 5000)
    with pytest.raises(ValueError, match="alpha must be in"):
        nj.verify(process, 10, alpha=0.0)
    with pytest.raises(ValueError, match="two spatial axes"):
        nj.verify(process, 10, exact_shape=(16,))
    with pytest.raises(ValueError, match="per_element and per_frame need a ForwardProcess"):
        nj.verify(BlurringProcess(SCHEDULE), 10, per_element=True)


def linear_chain():
    return LinearGaussianChain(
        100,
        lambda k, x: 0.98 * x + 0.01 * x.roll(1, -1),
        lambda k, e: 0.1 * e + 0.05 * (k % 3) * e.roll(1, -2),
    )


TIME_VARYING = {
    "mixture": lambda: MixtureProcess(
        SCHEDULE,
        [get_noise("isotropic"), get_noise("pink")],
        lambda s: torch.stack([1 - s / 1000, s / 1000], 1),
    ),
    "blurring": lambda: BlurringProcess(SCHEDULE),
    "linear": linear_chain,
}


def closed_too_wide(process):
    """Negative control: the closed form's noise term with 1.05 x its variance."""
    closed = process._closed_parts

    def wider(x0, t, draw):
        mean, noise = closed(x0, t, draw)
        return mean, noise * math.sqrt(1.05)

    process._closed_parts = wider
    return process


@pytest.mark.parametrize("name", sorted(TIME_VARYING))
def test_time_varying_closed_form_and_chain_pass_statistically(name):
    report = nj.verify(TIME_VARYING[name](), 60, **STAT)
    assert report.statistical_ok, str(report)


@pytest.mark.parametrize("name", sorted(TIME_VARYING))
def test_time_varying_statistics_reject_variance_times_1_05(name):
    report = nj.verify(closed_too_wide(TIME_VARYING[name]()), 60, **STAT)
    closed = [v for k, v in report.pvalues.items() if k.startswith("closed")]
    assert min(closed) < report.threshold, str(report)


def test_per_element_steps_pass_statistically_and_reject_wrong_samplers():
    right = nj.verify(nj.ForwardProcess(SCHEDULE, "pink"), 60, per_element=True, **STAT)
    assert right.statistical_ok, str(right)
    for wrong in (TooWide, Uncorrelated):
        report = nj.verify(nj.ForwardProcess(SCHEDULE, wrong(1.0)), 60, per_element=True, **STAT)
        assert not report.statistical_ok, str(report)


def test_verify_report_shows_raw_p_values_and_each_threshold():
    report = nj.verify(nj.ForwardProcess(SCHEDULE, "pink"), 20, **STAT)
    text = str(report)
    p = report.pvalues["closed vs chain: KS"]
    assert report.counts["closed vs chain: KS"] == 8 and p < 1  # the raw smallest, not capped
    k = len(report.pvalues)
    assert report.thresholds["closed vs chain: KS"] == pytest.approx(1e-3 / (k * 8))
    assert report.thresholds["closed: mean"] == pytest.approx(1e-3 / k)
    assert "closed vs chain: KS (smallest of 8)" in text and f"p = {p:.3g}" in text
    assert "1.0000" not in text
    name, smallest, threshold = report.smallest()
    assert smallest == min(report.pvalues.values())
    assert f"smallest p-value {smallest:.3g} ({name}), threshold {threshold:.3g}" in text


@pytest.mark.parametrize(
    ("projection_p", "other_p"),
    [(0.5, 0.5), (1.2e-5, 0.5), (1.5e-5, 0.5), (0.5, 1.0e-4), (0.5, 1.2e-4), (0.2, 0.9)],
)
def test_verify_decision_rule_is_the_bonferroni_one(projection_p, other_p):
    """The rule before the report showed raw p-values: every entry > alpha / k, the
    projections' entry being min(1, min p x 8). The same verdicts now, near the edges too."""
    report = VerifyReport("p", 1, (1,), (1,), 20, 1e-3)
    report.pvalues = {f"test {i}": 0.9 for i in range(7)}
    report.pvalues["other"] = other_p
    report.pvalues["closed vs chain: KS"] = projection_p
    report.counts["closed vs chain: KS"] = 8
    k = len(report.pvalues)
    old = min(1.0, projection_p * 8) > 1e-3 / k and other_p > 1e-3 / k
    assert report.statistical_ok == old
