"""The contract every noise family honours, run on the registry of examples.

Exact: the sampler's factor L (basis vectors pushed through ``apply``) against the analytic
covariance, L L^T = S to 1e-10 in float64. Statistical: n seeded samples whitened with S
(KS, chi-square of the norm, mean, variance); the false-alarm rate of each check is
ALPHA = 1e-3 in total (Bonferroni over its 4 p-values). Each statistical check is paired
with negative controls at the same n and seed that must reject: variance x 1.05, and
correlation dropped (independent noise with the same per-element variances).
"""

import math

import pytest
import torch

from noisejump import stats
from noisejump.noise import available, get_noise
from noisejump.noise.examples import BAD_EXAMPLES, EXAMPLES
from noisejump.noise.stationary import periodic_gaussian_kernel, periodic_gaussian_spectrum

F64 = torch.float64
ALPHA = 1e-3
# enough whitened entries (n d >= 40000) that variance x 1.05 is ~7 standard errors away
N_ENTRIES = 40000
DIAGONAL = {"isotropic", "diagonal"}


def factor(family, event):
    """L as a dense (d, m) matrix: white basis vectors pushed through ``apply``."""
    white = family.white_shape((1, *event))[1:]
    m = math.prod(white)
    basis = torch.eye(m, dtype=F64).reshape(m, *white)
    return family.apply(basis, (m, *event)).reshape(m, -1).T


def min_pvalue(samples, cov):
    n = len(samples)
    return min(
        stats.gaussian_pvalues(samples.reshape(n, -1), torch.zeros(cov.shape[0]), cov).values()
    )


def test_every_family_has_an_example():
    assert sorted(EXAMPLES) == available()


@pytest.mark.parametrize("name", available())
def test_sampler_factor_matches_analytic_covariance(name):
    example = EXAMPLES[name]
    family = example.build()
    cov = family.covariance(example.exact)
    assert cov.dtype == F64 and cov.shape == (math.prod(example.exact),) * 2
    L = factor(family, example.exact)
    torch.testing.assert_close(L @ L.T, cov, rtol=0, atol=1e-10 * float(cov.abs().max()))
    torch.testing.assert_close(family.variance(example.exact).flatten(), cov.diagonal())


@pytest.mark.parametrize("name", available())
def test_sample_is_apply_of_white_noise(name):
    """The invariant the keyed-noise path relies on: sample(shape) = apply(randn(white))."""
    example = EXAMPLES[name]
    family = example.build()
    shape = (3, *example.exact)
    drawn = family.sample(shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    white = torch.randn(
        family.white_shape(shape), generator=torch.Generator().manual_seed(7), dtype=F64
    )
    assert drawn.shape == shape
    torch.testing.assert_close(drawn, family.apply(white, shape), rtol=0, atol=0)


@pytest.mark.parametrize("name", available())
def test_samples_follow_the_law_and_controls_are_rejected(name):
    example = EXAMPLES[name]
    family = example.build()
    event = example.stat
    cov = family.covariance(event)
    n = max(200, math.ceil(N_ENTRIES / cov.shape[0]))
    generator = torch.Generator().manual_seed(1)
    samples = family.sample((n, *event), generator=generator, dtype=F64)
    assert min_pvalue(samples, cov) > ALPHA / 4
    # negative control: variance x 1.05
    assert min_pvalue(samples * math.sqrt(1.05), cov) < ALPHA / 4
    if name not in DIAGONAL:
        # negative control: correlation dropped, per-element variances kept
        generator = torch.Generator().manual_seed(1)
        white = torch.randn(n, *event, generator=generator, dtype=F64)
        uncorrelated = white * family.variance(event).sqrt()
        assert min_pvalue(uncorrelated, cov) < ALPHA / 4


@pytest.mark.parametrize("name", ["pink", "rbf", "offset", "pyramid", "frames-mixed"])
def test_unit_marginal_variance_by_default_and_raw_scale_on_request(name):
    kwargs = {"strength": 0.5} if name == "offset" else {}
    event = (4, 6, 6)
    unit = get_noise(name, **kwargs).variance(event)
    torch.testing.assert_close(unit, torch.ones(event, dtype=F64))
    if name != "frames-mixed":
        raw = get_noise(name, normalize=False, **kwargs).variance(event)
        assert not torch.allclose(raw, torch.ones(event, dtype=F64))


def test_rbf_spectrum_is_the_dft_of_the_wrapped_kernel():
    """The two analytic formulas (Poisson-summed spectrum, wrapped kernel) agree."""
    for n, length_scale in [(8, 1.0), (16, 2.5), (5, 0.7)]:
        kernel = periodic_gaussian_kernel(n, length_scale)
        spectrum = torch.fft.fft(kernel).real
        torch.testing.assert_close(spectrum, periodic_gaussian_spectrum(n, length_scale))


def test_pink_power_falls_as_one_over_f_and_dc_takes_the_lowest_frequency():
    power = get_noise("pink", normalize=False).power_spectrum(16, 16)
    assert power[0, 0] == power[0, 1] == power[1, 0]  # |f| = 1/16 at (0, 1)
    torch.testing.assert_close(power[0, 2] / power[0, 4], torch.tensor(2.0, dtype=F64))


def test_families_do_not_mutate_their_arguments():
    variance = torch.tensor([1.0, 2.0]).reshape(2, 1, 1)
    family = get_noise("diagonal", variance=variance)
    family.var.mul_(0)
    assert variance.flatten().tolist() == [1.0, 2.0]
    white = torch.randn(2, 3, 4, 4)
    before = white.clone()
    get_noise("frames-progressive", rho=0.5, axis=0).apply(white, white.shape)
    assert torch.equal(white, before)


BAD_CASES = [
    pytest.param(name, example, id=f"{name}-{i}")
    for name, examples in BAD_EXAMPLES.items()
    for i, example in enumerate(examples)
]


def test_every_family_has_bad_examples():
    assert sorted(BAD_EXAMPLES) == available()


@pytest.mark.parametrize(("name", "example"), BAD_CASES)
def test_bad_parameters_are_refused_at_construction(name, example):
    with pytest.raises(example.error, match=example.message):
        get_noise(name, **example.kwargs)


def test_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown noise family 'nonexistent'"):
        get_noise("nonexistent")


BAD_EVENTS = [
    ("spectral", (3, 32, 32), r"spectrum is \(8, 8\) but the event's spatial shape is \(32, 32\)"),
    ("frames-mixed", (8, 8), "frame axis 5 does not exist"),
    ("diagonal", (4, 8, 8), r"variance of shape \(3, 1, 1\) does not broadcast"),
    ("offset", (16,), "at least 2 dimensions"),
    ("pink", (16,), "two spatial axes"),
    ("dense", (4, 5), "has 20 elements"),
    ("lowrank", (7,), "has 7 elements"),
]


@pytest.mark.parametrize(("name", "event", "message"), BAD_EVENTS)
def test_mismatched_event_shapes_are_refused(name, event, message):
    family = EXAMPLES[name].build()
    if name == "frames-mixed":
        family = get_noise("frames-mixed", rho=0.5, axis=5)
    with pytest.raises(ValueError, match=message):
        family.check_shape(event)
    with pytest.raises(ValueError, match=message):
        family.sample((2, *event))


MORE_CONFIGURATIONS = [
    (lambda: get_noise("pyramid", ratio=3.0, discount=0.5), (1, 7, 5)),
    (lambda: get_noise("pyramid", levels=2, normalize=False), (2, 6, 6)),
    (lambda: get_noise("frames-mixed", rho=0.3, axis=-1), (2, 3, 4)),
    (lambda: get_noise("frames-progressive", rho=0.6, axis=1), (2, 5, 3)),
    (lambda: get_noise("rbf", length_scale=0.7), (1, 5, 7)),
    (lambda: get_noise("colored", alpha=2.5, normalize=False), (2, 3, 6)),
    (lambda: get_noise("offset", strength=2.0, normalize=False), (3, 2, 3)),
    (lambda: get_noise("dense", scale_tril=torch.tril(torch.ones(6, 6)) + torch.eye(6)), (2, 3)),
    (
        lambda: get_noise(
            "kronecker",
            space=get_noise("offset", strength=0.3),
            frames=get_noise("frames-mixed", rho=0.5, axis=1),
        ),
        (2, 3, 2, 2),
    ),
]


@pytest.mark.parametrize(("build", "event"), MORE_CONFIGURATIONS)
def test_more_configurations_match_their_covariance(build, event):
    family = build()
    cov = family.covariance(event)
    L = factor(family, event)
    torch.testing.assert_close(L @ L.T, cov, rtol=0, atol=1e-10 * float(cov.abs().max()))


def test_device_tables_follow_the_dtype():
    pink = get_noise("pink")
    single = pink.sample((2, 1, 8, 8), dtype=torch.float32)
    double = pink.sample((2, 1, 8, 8), dtype=F64)
    assert single.dtype == torch.float32 and double.dtype == F64


def test_sum_has_unit_variance_by_default_and_the_raw_sum_on_request():
    parts = [get_noise("offset", strength=0.5), get_noise("pink")]
    unit, raw = get_noise("sum", parts=parts), get_noise("sum", parts=parts, normalize=False)
    event = (3, 8, 8)
    torch.testing.assert_close(unit.variance(event), torch.ones(event, dtype=torch.float64))
    torch.testing.assert_close(raw.covariance(event), 2 * unit.covariance(event))
    white = torch.randn(unit.white_shape((5, *event)), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        raw.apply(white, (5, *event)), 2**0.5 * unit.apply(white, (5, *event)), rtol=1e-5, atol=1e-6
    )
