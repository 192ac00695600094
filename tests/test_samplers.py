"""Timestep samplers (issue 11, item 1): each law's histogram against its density, the
density against independent formulas, keyed draws, the map to a process's time, the
training loop's draws kept, and bad input.

Statistical checks: N = 20000 keyed draws at a fixed seed, binned (bins pooled until each
expects >= 20 draws), chi-square p-value above ALPHA = 1e-3; the expected bin masses
integrate the density by Gauss-Legendre quadrature, independently of the sampler's CDF
and inverse CDF. Each law has a negative control: the draws of a named perturbation,
binned against the unperturbed density at the same N and seed, must be rejected.
"""

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch

import noisejump as nj
from noisejump.continuous import EDM, VPSDE, FlowMatching, SubVPSDE
from noisejump.objective import (
    SAMPLERS,
    get_sampler,
    keyed_uniform,
    keyed_uniforms,
    sample_time,
)
from noisejump.objective.samplers import IMPORTANCE_HISTORY
from noisejump.rng import training_keys

F64 = torch.float64
ALPHA = 1e-3
N = 20_000
KEYS = torch.arange(N)
NODES, WEIGHTS = np.polynomial.legendre.leggauss(48)


def bin_masses(pdf, edges, log_space=False):
    """The integral of ``pdf`` over each bin, by 48-point Gauss-Legendre per bin (in log x
    for a law on sigma: p(log x) = x p(x))."""
    a, b = edges[:-1, None], edges[1:, None]
    points = 0.5 * (a + b) + 0.5 * (b - a) * torch.tensor(NODES, dtype=F64)
    values = pdf(torch.exp(points)) * torch.exp(points) if log_space else pdf(points)
    return (0.5 * (b - a)[:, 0]) * (values @ torch.tensor(WEIGHTS, dtype=F64))


def chi2_pvalue(draws, pdf, edges, log_space=False):
    """p-value of the histogram of ``draws`` over ``edges`` against ``pdf``."""
    expected = bin_masses(pdf, edges, log_space) * len(draws)
    x = torch.log(draws.to(F64)) if log_space else draws.to(F64)
    observed = torch.histogram(x, edges.to(F64)).hist
    assert observed.sum() >= len(draws) - 2  # every draw inside the binned range
    if bool((observed[expected == 0] > 0).any()):
        return 0.0  # draws where the density is 0: impossible under the law
    pooled_e, pooled_o, e, o = [], [], 0.0, 0.0
    for expected_k, observed_k in zip(expected.tolist(), observed.tolist(), strict=True):
        e, o = e + expected_k, o + observed_k
        if e >= 20:
            pooled_e.append(e)
            pooled_o.append(o)
            e = o = 0.0
    pooled_e[-1] += e
    pooled_o[-1] += o
    pooled_e, pooled_o = np.array(pooled_e), np.array(pooled_o)
    statistic = float(((pooled_o - pooled_e) ** 2 / pooled_e).sum())
    return float(scipy.stats.chi2.sf(statistic, len(pooled_e) - 1))


UNIT = torch.linspace(0.0, 1.0, 51, dtype=F64)
LOG_SIGMA = torch.linspace(-1.2 - 12 * 1.2, -1.2 + 12 * 1.2, 61, dtype=F64)

# name: (sampler, its negative control, bin edges, whether the edges are log sigma)
LAWS = {
    "uniform": ("uniform", {}, ("beta", {"a": 1.06, "b": 1.0}), UNIT),
    "logit_normal": (
        "logit_normal",
        {"logit_mean": 0.5, "logit_std": 0.8},
        ("logit_normal", {"logit_mean": 0.5, "logit_std": 0.84}),
        UNIT,
    ),
    "mode": ("mode", {"scale": 1.29}, ("mode", {"scale": 1.15}), UNIT),
    "mode_negative": ("mode", {"scale": -0.8}, ("mode", {"scale": -0.7}), UNIT),
    "cosmap": ("cosmap", {}, ("mode", {"scale": -0.15}), UNIT),
    "beta": ("beta", {"a": 2.0, "b": 5.0}, ("beta", {"a": 2.1, "b": 5.0}), UNIT),
    "log_normal": ("log_normal", {}, ("log_normal", {"p_std": 1.24}), LOG_SIGMA),
    "table": (
        "table",
        {"probabilities": [1.0, 3.0, 2.0, 0.0, 4.0]},
        ("table", {"probabilities": [1.0, 3.0, 2.0, 0.1, 4.0]}),
        torch.linspace(0.0, 1.0, 41, dtype=F64),
    ),
    "mixture": (
        "mixture",
        {"components": ["cosmap", "beta_2_5"], "weights": [0.3, 0.7]},
        ("mixture", {"components": ["cosmap", "beta_2_5"], "weights": [0.4, 0.6]}),
        UNIT,
    ),
    "truncated": (
        "logit_normal",
        {"t_min": 0.2, "t_max": 0.7},
        ("logit_normal", {"t_min": 0.21, "t_max": 0.7}),
        torch.linspace(0.2, 0.7, 26, dtype=F64),
    ),
    "truncated_sigma": (
        "log_normal",
        {"t_min": 0.05, "t_max": 5.0},
        ("log_normal", {"t_min": 0.05, "t_max": 4.0}),
        torch.linspace(math.log(0.05), math.log(5.0), 31, dtype=F64),
    ),
    "stratified": ("stratified", {"base": "cosmap"}, ("stratified", {"base": "uniform"}), UNIT),
}


def build(name, kwargs):
    kwargs = dict(kwargs)
    if "components" in kwargs:
        beta = get_sampler("beta", a=2.0, b=5.0)
        kwargs["components"] = [beta if c == "beta_2_5" else c for c in kwargs["components"]]
    return get_sampler(name, **kwargs)


@pytest.mark.parametrize("law", LAWS)
def test_histogram_follows_the_density_and_a_perturbed_law_is_rejected(law):
    name, kwargs, (control_name, control_kwargs), edges = LAWS[law]
    sampler, control = build(name, kwargs), build(control_name, control_kwargs)
    log_space = sampler.space == "sigma"
    draws, weight = sampler.sample(N, seed=0, keys=KEYS)
    assert draws.dtype == torch.float32 and torch.equal(weight, torch.ones(N))
    assert chi2_pvalue(draws, sampler.pdf, edges, log_space) > ALPHA
    control_draws, _ = control.sample(N, seed=0, keys=KEYS)
    assert chi2_pvalue(control_draws, sampler.pdf, edges, log_space) < ALPHA


# ---- the law, exactly ---------------------------------------------------------------------

EXACT = {
    "uniform": get_sampler("uniform"),
    "logit_normal": get_sampler("logit_normal", logit_mean=-0.3, logit_std=1.5),
    "mode": get_sampler("mode", scale=1.29),
    "cosmap": get_sampler("cosmap"),
    "beta": get_sampler("beta", a=2.0, b=5.0),
    "table": get_sampler("table", probabilities=[1, 3, 0, 4], edges=[0, 0.1, 0.5, 0.6, 1]),
    "mixture": get_sampler("mixture", components=["logit_normal", "mode"], weights=[1, 2]),
    "truncated": get_sampler("cosmap", t_min=0.1, t_max=0.95),
    "stratified": get_sampler("stratified", base="logit_normal"),
}


@pytest.mark.parametrize("name", EXACT)
def test_cdf_integrates_the_density_and_icdf_inverts_it(name):
    sampler = EXACT[name]
    x = torch.linspace(0.0, 1.0, 201, dtype=F64)
    # cdf(x_k) = integral of the pdf up to x_k, by quadrature between grid points
    cumulative = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(bin_masses(sampler.pdf, x), 0)])
    torch.testing.assert_close(sampler.cdf(x), cumulative, rtol=0, atol=1e-9)
    p = torch.linspace(0.001, 0.999, 99, dtype=F64)
    torch.testing.assert_close(sampler.cdf(sampler.icdf(p)), p, rtol=0, atol=1e-12)
    assert sampler.cdf(0.0) == 0.0 and sampler.cdf(1.0) == 1.0
    assert float(sampler.pdf(torch.tensor([-0.5, 1.5])).abs().max()) == 0.0


def test_densities_match_independent_formulas():
    """scipy's Beta and log-normal; SD3's eq. 19-21 written out here (Esser et al. 2024)."""
    x = torch.linspace(0.002, 0.998, 499, dtype=F64)
    xs = x.numpy()
    for a, b in ((2.0, 5.0), (0.5, 0.5), (0.2, 3.0), (3.0, 0.3), (1.0, 1.0)):
        beta = get_sampler("beta", a=a, b=b)
        np.testing.assert_allclose(beta.pdf(x), scipy.stats.beta.pdf(xs, a, b), rtol=1e-11)
        np.testing.assert_allclose(beta.cdf(x), scipy.stats.beta.cdf(xs, a, b), atol=1e-13)
        np.testing.assert_allclose(
            beta.icdf(x), scipy.stats.beta.ppf(xs, a, b), rtol=1e-10, atol=1e-13
        )
    sigma = torch.logspace(-4, 3, 200, dtype=F64)
    reference = scipy.stats.lognorm(s=1.2, scale=math.exp(-1.2))
    log_normal = get_sampler("log_normal")
    np.testing.assert_allclose(log_normal.pdf(sigma), reference.pdf(sigma.numpy()), rtol=1e-12)
    np.testing.assert_allclose(log_normal.cdf(sigma), reference.cdf(sigma.numpy()), atol=1e-14)
    m, s = -0.3, 1.5
    logit = np.log(xs / (1 - xs))
    expected = scipy.stats.norm.pdf(logit, m, s) / (xs * (1 - xs))
    np.testing.assert_allclose(
        get_sampler("logit_normal", logit_mean=m, logit_std=s).pdf(x), expected, rtol=1e-12
    )
    cosmap = 2 / (math.pi - 2 * math.pi * xs + 2 * math.pi * xs**2)
    np.testing.assert_allclose(get_sampler("cosmap").pdf(x), cosmap, rtol=1e-13)
    for scale in (1.29, -0.8, 0.5):
        # SD3's f, inverted by Brent's method and differentiated by central differences
        def f(v, scale=scale):
            return 1 - v - scale * (np.cos(np.pi * v / 2) ** 2 - 1 + v)

        def inverse(t, f=f):
            return scipy.optimize.brentq(lambda v: f(v) - t, 0.0, 1.0, xtol=1e-15)

        h = 1e-6
        expected = [(inverse(t - h) - inverse(t + h)) / (2 * h) for t in xs[5:-5:25]]
        mode = get_sampler("mode", scale=scale)
        np.testing.assert_allclose(mode.pdf(x[5:-5:25]), expected, rtol=1e-6)
        np.testing.assert_allclose(mode.cdf(x[5:-5:25]), [1 - inverse(t) for t in xs[5:-5:25]])


def test_mode_scale_range_ends_are_laws_with_an_infinite_density_at_one_point():
    """f'(v) = -1 - s (1 - (pi / 2) sin(pi v)) vanishes at v = 0 for s = -1 and at v = 1/2
    for s = 2 / (pi - 2): still monotone, the density is infinite there (u = 1, u = 1/2)."""
    low, high = get_sampler("mode", scale=-1.0), get_sampler("mode", scale=2 / (math.pi - 2))
    assert float(low.pdf(1.0)) > 1e12 and float(high.pdf(0.5)) > 1e12
    assert float(low.pdf(1 - 1e-8)) > 1e3 * float(low.pdf(0.5))
    p = torch.linspace(0.0, 1.0, 101, dtype=F64)
    for sampler in (low, high):
        u = sampler.icdf(p)
        assert bool((u[1:] >= u[:-1]).all()) and u[0] == 0.0 and u[-1] == 1.0


def test_draws_match_the_peers_draws_in_law():
    """diffusers' compute_density_for_timestep_sampling (SD3 training) draws the same laws:
    two-sample KS above ALPHA for logit-normal and mode; a mode scale of 1.1 is rejected."""
    from diffusers.training_utils import compute_density_for_timestep_sampling as peer

    generator = torch.Generator().manual_seed(0)
    ours = get_sampler("mode", scale=1.29).sample(N, seed=0, keys=KEYS)[0]
    theirs = peer("mode", N, mode_scale=1.29, generator=generator)
    off = peer("mode", N, mode_scale=1.1, generator=generator)
    assert scipy.stats.ks_2samp(ours, theirs).pvalue > ALPHA
    assert scipy.stats.ks_2samp(ours, off).pvalue < ALPHA
    ours = get_sampler("logit_normal", logit_mean=0.5).sample(N, seed=1, keys=KEYS)[0]
    theirs = peer("logit_normal", N, logit_mean=0.5, logit_std=1.0, generator=generator)
    assert scipy.stats.ks_2samp(ours, theirs).pvalue > ALPHA


def test_truncation_keeps_the_shape_renormalised_without_atoms():
    base = get_sampler("logit_normal")
    truncated = get_sampler("logit_normal", t_min=0.3, t_max=0.6)
    x = torch.linspace(0.3, 0.6, 31, dtype=F64)
    mass = float(base.cdf(0.6) - base.cdf(0.3))
    torch.testing.assert_close(truncated.pdf(x), base.pdf(x) / mass, rtol=1e-14, atol=0)
    draws = truncated.sample(N, seed=0, keys=KEYS, dtype=torch.float64)[0]
    assert draws.min() > 0.3 and draws.max() < 0.6  # no draw piles up at an end
    assert float(truncated.pdf(0.29)) == 0.0 == float(truncated.pdf(0.61))
    above = get_sampler("log_normal", t_min=0.1)  # unbounded above on sigma
    assert above.t_max == math.inf and float(above.sample(N, seed=0, keys=KEYS)[0].min()) > 0.1


# ---- keyed draws ----------------------------------------------------------------------------

KEYED = {
    **{name: build(n, kw) for name, (n, kw, _, _) in LAWS.items()},
    "importance": get_sampler("importance", num_steps=100),
    "nested_mixture": get_sampler(
        "mixture",
        components=[get_sampler("mixture", components=["uniform", "cosmap"]), "mode"],
    ),
}


@pytest.mark.parametrize("name", KEYED)
def test_keyed_draws_do_not_depend_on_the_batch_split(name):
    sampler, keys = KEYED[name], training_keys(torch.arange(100, 164), step=3)
    positions = torch.arange(64)
    whole = sampler.sample(64, seed=5, keys=keys, positions=positions, global_batch=64)
    parts = [
        sampler.sample(
            len(keys[part]), seed=5, keys=keys[part], positions=positions[part], global_batch=64
        )
        for part in (slice(0, 20), slice(20, 23), slice(23, 64))
    ]
    assert torch.equal(whole[0], torch.cat([p[0] for p in parts]))
    assert torch.equal(whole[1], torch.cat([p[1] for p in parts]))
    other = sampler.sample(64, seed=6, keys=keys, positions=positions, global_batch=64)[0]
    assert not torch.equal(whole[0], other)
    again = sampler.sample(64, generator=torch.Generator().manual_seed(1))[0]
    assert torch.equal(again, sampler.sample(64, generator=torch.Generator().manual_seed(1))[0])


def test_uniform_columns_and_mixture_choice():
    """Column 0 of the keyed uniforms is keyed_uniform; a mixture draws its component from
    the last column and the component's value from the first ones, so the rows that chose
    a component are that component's own keyed draws, and the choice frequencies are the
    weights (binomial, 4 sigma)."""
    keys = training_keys(torch.arange(N), step=2)
    assert torch.equal(keyed_uniforms(1, keys, 3)[:, 0], keyed_uniform(1, keys))
    cosmap, mode = get_sampler("cosmap"), get_sampler("mode")
    mixture = get_sampler("mixture", components=[cosmap, mode], weights=[0.25, 0.75])
    x = mixture.sample(N, seed=1, keys=keys)[0]
    own = {c: c.sample(N, seed=1, keys=keys)[0] for c in (cosmap, mode)}
    chose_cosmap = x == own[cosmap]
    assert torch.equal(x[~chose_cosmap], own[mode][~chose_cosmap])
    fraction = float(chose_cosmap.double().mean())
    assert abs(fraction - 0.25) < 4 * math.sqrt(0.25 * 0.75 / N)


# ---- draws mapped to a process's time ---------------------------------------------------------


def test_training_draws_are_the_formulas_the_loop_used_before():
    """The keyed steps of uniform, stratified, logit-normal and importance sampling, bit for
    bit those of the pre-``get_sampler`` formulas (written here), for a power-of-two and a
    ragged global batch."""
    T = 1000
    schedule = nj.get_schedule("linear", T)
    importance = get_sampler("importance", num_steps=T)
    generator = torch.Generator().manual_seed(0)
    for _ in range(IMPORTANCE_HISTORY):
        importance.update(torch.arange(T), torch.rand(T, generator=generator, dtype=F64))
    for batch in (4096, 3000):
        indices = torch.arange(batch) + 7 * batch
        keys, positions = training_keys(indices, 7), torch.arange(batch)
        u = keyed_uniform(0, keys)
        p = importance.probabilities()
        legacy = {
            "uniform": u * T,
            "stratified": (positions.to(F64) + u) * (T / batch),
            "logit_normal": torch.sigmoid(math.sqrt(2.0) * torch.erfinv(2.0 * u - 1.0)) * T,
            "importance": torch.searchsorted(torch.cumsum(p, 0), u, right=True).clamp(max=T - 1),
        }
        for name, old in legacy.items():
            sampler = importance if name == "importance" else get_sampler(name)
            t, w = sample_time(
                schedule, sampler, batch, seed=0, keys=keys, positions=positions, global_batch=batch
            )
            assert torch.equal(t, old.to(torch.int64).clamp(0, T - 1)), name
        torch.testing.assert_close(w.double(), 1 / (T * p[t]), rtol=1e-6, atol=0)


def test_sigma_draws_bin_by_the_nearest_sigma_of_the_schedule():
    """A sigma draw lands on the step whose sigma_k is nearest in log sigma (brute force);
    the step frequencies of EDM's log-normal follow the masses between ``step_edges``
    (chi-square, ALPHA), and those of a log-normal with P_mean + 0.05 are rejected."""
    schedule = nj.get_schedule("linear", 1000)
    log_sigma = -0.5 * schedule.log_snr
    sigma = torch.logspace(-3, 2.2, 500, dtype=F64)
    nearest = (torch.log(sigma)[:, None] - log_sigma[None, :]).abs().argmin(1)
    assert torch.equal(schedule.time_of(sigma, "sigma"), nearest)
    edges = schedule.step_edges("sigma")
    sampler = get_sampler("log_normal")
    masses = sampler.cdf(edges[1:]) - sampler.cdf(edges[:-1])

    def pvalue(steps):
        counts = torch.bincount(steps, minlength=1000).double()
        # the steps grouped 25 at a time: every group expects >= 20 draws
        expected = masses.reshape(40, 25).sum(1) * N
        observed = counts.reshape(40, 25).sum(1)
        keep = expected >= 20
        e = torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)])
        o = torch.cat([observed[keep], observed[~keep].sum(0, keepdim=True)])
        return scipy.stats.chi2.sf(float(((o - e) ** 2 / e).sum()), len(e) - 1)

    steps, _ = sample_time(schedule, sampler, N, seed=0, keys=KEYS)
    assert steps.dtype == torch.int64 and pvalue(steps) > ALPHA
    shifted = get_sampler("log_normal", p_mean=-1.15)
    assert pvalue(sample_time(schedule, shifted, N, seed=0, keys=KEYS)[0]) < ALPHA


def test_continuous_sample_t_is_keyed_float32_with_each_schedules_law():
    keys = training_keys(torch.arange(64), step=0)
    expected = {
        "edm": (EDM(), get_sampler("log_normal").sample(64, seed=3, keys=keys)[0]),
        "flow": (FlowMatching(), get_sampler("logit_normal").sample(64, seed=3, keys=keys)[0]),
        "vp": (VPSDE(), 1e-5 + (1 - 1e-5) * keyed_uniform(3, keys).float()),
    }
    for name, (schedule, reference) in expected.items():
        t = schedule.sample_t(64, seed=3, keys=keys)
        assert t.dtype == torch.float32, name
        torch.testing.assert_close(t, reference, rtol=1e-6, atol=0)
        assert torch.equal(t[10:], schedule.sample_t(54, seed=3, keys=keys[10:]))
        assert schedule.sample_t(8, seed=3, keys=keys[:8], dtype=torch.float64).dtype == F64
    x0 = torch.zeros(64, 3)
    process = nj.ForwardProcess(SubVPSDE())
    t = SubVPSDE().sample_t(64, seed=0, keys=keys)
    assert process.q_sample(x0, t, seed=0, keys=keys)[0].shape == x0.shape


def test_sigma_draws_on_a_vp_schedule_take_the_time_of_that_noise_level():
    sigma = get_sampler("log_normal").sample(256, seed=0, keys=torch.arange(256))[0].double()
    for schedule in (VPSDE(), SubVPSDE(), FlowMatching()):
        t = schedule.time_of(sigma, "sigma")
        reached = (t > 0) & (t < 1)  # VP's log-SNR stops at lambda(1) = -9.9
        torch.testing.assert_close(
            schedule.log_snr(t[reached]), -2 * torch.log(sigma[reached]), rtol=0, atol=1e-9
        )
        assert reached.float().mean() > 0.9


# ---- bad input ------------------------------------------------------------------------------

BAD = [
    ("nope", {}, ValueError, "unknown timestep sampler 'nope'"),
    ("mode", {"foo": 1}, TypeError, "sampler 'mode' takes scale"),
    ("beta", {"a": 2.0}, TypeError, "sampler 'beta' needs b"),
    ("logit_normal", {"logit_std": 0.0}, ValueError, "logit_std must be a positive finite"),
    ("logit_normal", {"logit_std": -1.0}, ValueError, "logit_std must be a positive finite"),
    ("logit_normal", {"logit_mean": math.inf}, ValueError, "logit_mean must be a finite"),
    ("logit_normal", {"logit_mean": "0"}, TypeError, "logit_mean must be a float"),
    ("mode", {"scale": -1.01}, ValueError, r"scale must be a finite float in \[-1, 1.75"),
    ("mode", {"scale": 1.76}, ValueError, r"scale must be a finite float in \[-1, 1.75"),
    ("mode", {"scale": math.nan}, ValueError, "scale must be a finite float"),
    ("mode", {"scale": True}, TypeError, "scale must be a float"),
    ("beta", {"a": 0.0, "b": 1.0}, ValueError, "a must be a positive finite"),
    ("beta", {"a": 1.0, "b": math.inf}, ValueError, "b must be a positive finite"),
    ("log_normal", {"p_std": 0.0}, ValueError, "p_std must be a positive finite"),
    ("table", {"probabilities": []}, ValueError, "non-empty 1-D"),
    ("table", {"probabilities": [0.0, 0.0]}, ValueError, "not all 0"),
    ("table", {"probabilities": [-1.0, 2.0]}, ValueError, "must be >= 0"),
    ("table", {"probabilities": [1.0, math.nan]}, ValueError, "probabilities must be finite"),
    ("table", {"probabilities": [1, 1], "edges": [0, 1]}, ValueError, "3 values for 2 bins"),
    ("table", {"probabilities": [1, 1], "edges": [0, 0.7, 0.5]}, ValueError, "increase"),
    ("table", {"probabilities": [1, 1], "edges": [0, 0.5, 1.5]}, ValueError, "inside"),
    ("table", {"probabilities": [1], "space": "sigma"}, ValueError, "needs its edges"),
    ("table", {"probabilities": [1], "space": "t"}, ValueError, "space must be one of"),
    ("importance", {"num_steps": 0}, ValueError, "num_steps must be a positive int"),
    ("mixture", {"components": []}, ValueError, "non-empty sequence"),
    ("mixture", {"components": ["uniform", "log_normal"]}, ValueError, "share one space"),
    ("mixture", {"components": ["uniform"], "weights": [1, 2]}, ValueError, "2 values for 1"),
    ("mixture", {"components": ["uniform", "cosmap"], "weights": [1, 0]}, ValueError, "weights"),
    ("mixture", {"components": [3]}, TypeError, "sampler names or samplers"),
    ("uniform", {"t_min": 0.5, "t_max": 0.5}, ValueError, "need t_min < t_max"),
    ("uniform", {"t_max": 1.5}, ValueError, r"t_max must be a finite float in \[0, 1\]"),
    ("log_normal", {"t_min": -1.0}, ValueError, "t_min must be a finite float in"),
    ("uniform", {"t_min": math.nan}, ValueError, "t_min must be a finite float"),
    ("table", {"probabilities": [1, 0], "t_min": 0.6}, ValueError, "mass 0 in"),
    ("log_normal", {"t_min": 1e6, "t_max": 1e7}, ValueError, "needs at least 1e-09"),
    ("stratified", {"base": "importance"}, TypeError, "importance"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "match"), BAD)
def test_bad_parameters_are_refused_at_construction(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        get_sampler(name, **kwargs)


def test_bad_draws_are_refused():
    sampler, keys = get_sampler("stratified"), torch.arange(4)
    with pytest.raises(ValueError, match="seed was given without keys"):
        sampler.sample(4, seed=0)
    with pytest.raises(ValueError, match="keys was given without seed"):
        sampler.sample(4, keys=keys)
    with pytest.raises(ValueError, match="either a generator or seed/keys"):
        sampler.sample(4, seed=0, keys=keys, generator=torch.Generator())
    with pytest.raises(ValueError, match="keys has 4 rows for n = 5"):
        sampler.sample(5, seed=0, keys=keys)
    with pytest.raises(ValueError, match=r"positions must have shape \(4,\)"):
        sampler.sample(4, seed=0, keys=keys, positions=torch.arange(3), global_batch=8)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 4\)"):
        sampler.sample(4, seed=0, keys=keys, positions=torch.arange(1, 5), global_batch=4)
    with pytest.raises(ValueError, match="both positions and global_batch"):
        sampler.sample(4, seed=0, keys=keys, positions=torch.arange(4))
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        sampler.sample(-1)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        sampler.icdf(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="x must not be NaN"):
        get_sampler("cosmap").pdf(math.nan)
    with pytest.raises(ValueError, match="has no state"):
        sampler.load_state_dict({"history": torch.zeros(3)})
    with pytest.raises(ValueError, match="needs a state"):
        get_sampler("importance", num_steps=4).load_state_dict({"history": torch.zeros(3)})
    with pytest.raises(TypeError, match="name must be a sampler name"):
        get_sampler(get_sampler("uniform"))
    assert set(SAMPLERS) >= {"uniform", "mode", "cosmap", "beta", "log_normal", "mixture"}


def test_a_process_refuses_draws_it_cannot_take():
    with pytest.raises(ValueError, match="takes a noise level sigma as its time"):
        EDM().sample_t(4, sampler=get_sampler("uniform"), seed=0, keys=torch.arange(4))
    with pytest.raises(ValueError, match="weights its draws"):
        VPSDE().sample_t(4, sampler=get_sampler("importance", num_steps=10))
    with pytest.raises(ValueError, match="eps .* or a sampler, not both"):
        VPSDE().sample_t(4, eps=1e-3, sampler=get_sampler("uniform"))
    with pytest.raises(ValueError, match="space must be 'u' or 'sigma'"):
        nj.get_schedule("linear", 10).time_of(torch.zeros(2), "t")
