"""Bad input gets a clear error or the right answer (issue 9, section 3).

Each test names the case it keeps: the continuous posterior at the data time, tables a
caller can corrupt, parameters that make non-finite noise or unbounded tables, what
``ForwardProcess`` and the families accept, the diffusers adapter's timesteps and configs,
NumPy integers, and the dtypes the documentation promises.
"""

import math
import subprocess
import sys

import diffusers  # the test extra installs it: a missing diffusers must fail, not skip
import numpy as np
import pytest
import torch

import noisejump as nj
from noisejump.continuous import EDM, VPSDE, FlowMatching, LogSNR, SubVPSDE, resolution_shift
from noisejump.integrations.diffusers import SUPPORTED, DiffusersAdapter, from_diffusers
from noisejump.noise import available, get_noise, without_arguments
from noisejump.noise.base import MAX_DENSE_BYTES
from noisejump.noise.examples import EXAMPLES
from noisejump.noise.stationary import Stationary, periodic_gaussian_spectrum
from noisejump.objective import get_sampler
from noisejump.processes import BlurringProcess, LinearGaussianChain, MixtureProcess
from noisejump.schedules import DiscreteSigmas

F64 = torch.float64
SCHEDULE = nj.get_schedule("linear", 1000)


def cosine_log_snr(t):
    """lambda(t) = -2 log tan(pi t / 2): +inf at t = 0 (the data), -inf at t = 1."""
    return -2 * torch.log(torch.tan(math.pi * t / 2))


# ---- the posterior at the data time ----------------------------------------------------

DATA_AT_ZERO = [VPSDE(), SubVPSDE(), FlowMatching(), LogSNR(cosine_log_snr)]


@pytest.mark.parametrize("schedule", DATA_AT_ZERO, ids=repr)
def test_continuous_posterior_at_time_zero_is_x0_with_zero_variance(schedule):
    """At t = 0 the state is the data, as at discrete step 0: (x0, 0), not 0 / 0 = NaN."""
    process = nj.ForwardProcess(schedule)
    generator = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(4, 3, 2, 2, generator=generator), torch.randn(4, 3, 2, 2)
    mean, variance = process.q_posterior(x0, x_t, 0.0, -1)
    assert torch.equal(mean, x0) and torch.equal(variance, torch.zeros_like(variance))
    # the same per sample, t = 0 next to a noisy time
    t = torch.tensor([0.0, 0.5, 0.0, 0.9], dtype=F64)
    mean, variance = process.q_posterior(x0, x_t, t, -1)
    assert torch.equal(mean, x0) and not variance.any()
    # s = 0 is the data too: the target is x0 at any t
    mean, variance = process.q_posterior(x0, x_t, 0.5, 0.0)
    assert torch.equal(mean, x0) and not variance.any()
    # a jump from the data to time 0 adds nothing
    assert torch.equal(process.q_sample_from(x0, -1, 0.0, noise=x_t)[0], x0)


def test_discrete_and_edm_posterior_targets_are_the_data():
    x0, x_t = torch.randn(2, 3), torch.randn(2, 3)
    mean, variance = nj.ForwardProcess(SCHEDULE).q_posterior(x0, x_t, 0)
    torch.testing.assert_close(mean, x0)
    assert float(variance) == 0
    edm = nj.ForwardProcess(EDM())
    mean, variance = edm.q_posterior(x0, x_t, 1.5, 0.0)  # s = sigma 0 is the data
    assert torch.equal(mean, x0) and not variance.any()
    with pytest.raises(ValueError, match=r"t must be a noise level sigma in \(0, 1e\+15\]"):
        edm.q_posterior(x0, x_t, 0.0, -1)


# ---- tables a caller can corrupt -----------------------------------------------------------


def handed_out(obj, calls):
    """Every tensor obj hands out: its public tensor attributes and properties, and what
    ``calls`` (name -> zero-argument function) return (tensors or tuples of them)."""
    out = {}
    for name in dir(obj):
        if not name.startswith("_") and isinstance(getattr(obj, name, None), torch.Tensor):
            out[name] = getattr(obj, name)
    for name, call in calls.items():
        value = call()
        for i, tensor in enumerate(value if isinstance(value, tuple) else (value,)):
            if isinstance(tensor, torch.Tensor):
                out[f"{name}[{i}]"] = tensor
    return out


def corrupt_and_compare(obj, calls, results):
    """Add 1 in place to everything ``obj`` hands out; ``results`` must not change."""
    before = {name: value.clone() for name, value in handed_out(obj, calls).items()}
    expected = results()
    for tensor in handed_out(obj, calls).values():
        tensor.add_(1)
    after = handed_out(obj, calls)
    changed = [name for name in before if not torch.equal(after[name], before[name])]
    assert not changed, f"in-place changes to what {obj!r} returned reached {changed}"
    for got, want in zip(results(), expected, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", available())
def test_what_a_family_returns_cannot_corrupt_it(name):
    """power_spectrum() handed out the live cache: out.add_(1) changed every later draw."""
    family, event = EXAMPLES[name].build(), EXAMPLES[name].exact
    calls = {
        "covariance": lambda: family.covariance(event),
        "variance": lambda: family.variance(event),
    }
    if isinstance(family, Stationary):
        calls["power_spectrum"] = lambda: family.power_spectrum(*event[-2:])
        calls["raw_spectrum"] = lambda: family.raw_spectrum(*event[-2:])
    white = torch.randn(family.white_shape((2, *event)), generator=torch.Generator().manual_seed(1))

    def results():
        return [family.apply(white, (2, *event))] + [call() for call in calls.values()]

    corrupt_and_compare(family, calls, results)


def test_what_processes_and_schedules_return_cannot_corrupt_them():
    x0 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    x_t = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    short = nj.get_schedule("linear", 20)
    event = (1, 4, 4)

    def draws(process):
        return process.q_sample(x0, 7, generator=torch.Generator().manual_seed(4))

    mixtures = [
        MixtureProcess(short, [get_noise("isotropic"), get_noise("pink")], torch.rand(20, 2)),
        MixtureProcess(short, [get_noise("isotropic"), get_noise("offset")], torch.rand(20, 2)),
    ]
    for mixture in mixtures:
        calls = {
            "covariance": lambda m=mixture: m.covariance(event, 7),
            "moments": lambda m=mixture: m.moments(event, 7),
            "q_posterior": lambda m=mixture: m.q_posterior(x0, x_t, 7),
        }
        corrupt_and_compare(
            mixture, calls, lambda m=mixture, c=calls: (*draws(m), *c["q_posterior"]())
        )
    blurring = BlurringProcess(short, blur_sigma_max=2.0)
    calls = {
        "moments": lambda: blurring.moments(event, 7),
        "q_posterior": lambda: blurring.q_posterior(x0, x_t, 7),
        "q_posterior_0": lambda: blurring.q_posterior(x0, x_t, 0),
    }
    corrupt_and_compare(blurring, calls, lambda: (*draws(blurring), *calls["q_posterior"]()))
    chain = LinearGaussianChain(20, lambda k, x: 0.9 * x, lambda k, e: 0.3 * e)
    calls = {"moments": lambda: chain.moments(event, 7)}
    corrupt_and_compare(chain, calls, lambda: draws(chain))
    sigmas = DiscreteSigmas(short)
    corrupt_and_compare(sigmas, {}, lambda: draws(nj.ForwardProcess(sigmas)))
    corrupt_and_compare(short, {}, lambda: draws(nj.ForwardProcess(short)))
    process = nj.ForwardProcess(short, get_noise("pink"))
    calls = {"moments": lambda: process.moments(event, 7)}
    corrupt_and_compare(process, calls, lambda: draws(process))


# ---- parameters that make non-finite noise, tables without bound -----------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("colored", {"alpha": 10.0}), ("colored", {"alpha": -10.0}), ("offset", {"strength": 1e3})],
)
@pytest.mark.parametrize("normalize", [True, False])
def test_the_largest_allowed_parameters_make_finite_noise(name, kwargs, normalize):
    family = get_noise(name, normalize=normalize, **kwargs)
    for shape in ((2, 3, 64, 64), (1, 1, 2, 4096)):
        noise = family.sample(shape, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(noise).all() and noise.std() > 0


def test_rbf_of_any_length_scale_needs_small_tables():
    """RBF(length_scale=1e9) grew a (n, 2.5e8) table (24 GB) and was killed: the spectrum is
    now the faster-converging of two exact sums. Run under a 1.5 GiB address-space limit
    above what importing torch takes, in a child process."""
    script = """
import resource, torch
from noisejump.noise import get_noise
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 3 * 2**29, hard))
for scale in (1e9, 1e-9, 37.0):
    family = get_noise("rbf", length_scale=scale)
    x = family.sample((2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all(), scale
    ones = torch.ones(3, 64, 64, dtype=torch.float64)
    assert torch.allclose(family.variance((3, 64, 64)), ones), scale
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_rbf_spectrum_is_exact_for_narrow_and_wide_kernels():
    """Against brute-force sums with far more terms than either needs (Poisson summation and
    the DFT of the wrapped kernel): the old fixed wraps were 1e-3 off at l = 0.1."""
    for n, length_scale in [(8, 0.1), (8, 0.05), (16, 0.3), (7, 30.0), (64, 5.0), (5, 0.7)]:
        f, m = torch.arange(n, dtype=F64) / n, torch.arange(-3000, 3001, dtype=F64)
        nu = f[:, None] - m[None, :]
        poisson = (
            math.sqrt(2 * math.pi)
            * length_scale
            * torch.exp(-2 * (math.pi * length_scale * nu) ** 2)
        ).sum(1)
        got = periodic_gaussian_spectrum(n, length_scale)
        torch.testing.assert_close(got, poisson, rtol=1e-13, atol=1e-13 * float(poisson.max()))


def test_dense_covariances_above_the_bound_are_refused_before_allocating():
    """pink.covariance((3, 512, 512)) is a 4.9 TB matrix: a ValueError naming the bound,
    not an allocator traceback. variance() needs O(d) for every family."""
    assert MAX_DENSE_BYTES == 2**30
    for name in ("pink", "offset", "pyramid", "rbf", "frames-mixed", "isotropic"):
        with pytest.raises(ValueError, match=r"above the bound of 1 GiB.*MAX_DENSE_BYTES"):
            get_noise(name).covariance((3, 512, 512))
    with pytest.raises(ValueError, match="above the bound"):
        nj.ForwardProcess(SCHEDULE, "pink").moments((3, 512, 512), 10)


@pytest.mark.parametrize("name", ["offset", "pyramid", "sum"])
def test_variance_and_sum_scale_need_no_dense_covariance(name):
    """Offset and pyramid took variance() from the dense S, so a sum with them built a
    (d, d) matrix for its scale: 34 GB for 4 x 128 x 128 latents."""
    family = (
        get_noise("sum", parts=[get_noise("offset"), get_noise("pyramid")])
        if name == "sum"
        else get_noise(name)
    )
    event = (4, 512, 512)
    torch.testing.assert_close(family.variance(event), torch.ones(event, dtype=F64))
    assert family.sample((1, *event)).shape == (1, *event)
    raw = get_noise(name, normalize=False) if name != "sum" else None
    if raw is not None:  # raw scale: the dense diagonal on a small event
        small = (2, 6, 6)
        torch.testing.assert_close(raw.variance(small).flatten(), raw.covariance(small).diagonal())


# ---- what ForwardProcess and the families accept ------------------------------------------


def test_a_noise_that_is_not_a_family_is_refused_at_construction():
    for bad in (object(), 3, torch.randn(3)):
        with pytest.raises(TypeError, match="noise must be a noise family.*get_noise"):
            nj.ForwardProcess(SCHEDULE, noise=bad)


@pytest.mark.parametrize("name", sorted(set(available()) - set(without_arguments())))
def test_a_family_that_needs_parameters_says_how_to_build_it(name):
    with pytest.raises(TypeError, match=rf"get_noise\('{name}', .*=.*\) or noisejump\.noise\."):
        nj.ForwardProcess(SCHEDULE, noise=name)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_samples_are_refused_with_the_supported_dtypes(dtype):
    process = nj.ForwardProcess(SCHEDULE)
    x = torch.zeros(2, 3).to(dtype)
    message = r"float16, bfloat16, float32, float64\), got torch.float8"
    for call in (
        lambda: process.q_sample(x, 3),
        lambda: process.q_sample_loop(x, 3),
        lambda: process.q_posterior(x, x, 3),
        lambda: process.v_target(x, x, 3),
        lambda: process.predict_x0(x, x, 3),
        lambda: BlurringProcess(SCHEDULE).q_sample(torch.zeros(1, 1, 4, 4).to(dtype), 3),
    ):
        with pytest.raises(TypeError, match=message):
            call()


@pytest.mark.parametrize("name", ["pink", "rbf", "colored", "pyramid"])
def test_one_dimensional_data_is_not_read_as_an_image(name):
    """(B, C, L) with a 2-D family was read as H = C, W = L: noise correlated across the
    channels. Refused; (B, C, 1, L) is noise along L, channels independent."""
    family = get_noise(name)
    process = nj.ForwardProcess(SCHEDULE, family)
    with pytest.raises(ValueError, match=r"needs events \(C, H, W\).*\(B, C, 1, L\)"):
        process.q_sample(torch.zeros(2, 3, 16), 5)
    with pytest.raises(ValueError, match=r"needs events \(C, H, W\)"):
        family.sample((2, 3, 16))
    cov = family.covariance((3, 1, 16))
    per_channel = torch.block_diag(*[cov[:16, :16]] * 3)
    assert torch.equal(cov, per_channel)  # channels independent
    assert (cov[:16, :16] - torch.diag(cov[:16, :16].diagonal())).abs().max() > 0.05  # along L
    x_t, noise = process.q_sample(torch.zeros(2, 3, 1, 16), 5)
    assert noise.shape == (2, 3, 1, 16)
    with pytest.raises(ValueError, match=r"blurring: needs events \(C, H, W\)"):
        BlurringProcess(SCHEDULE).q_sample(torch.zeros(2, 3, 16), 5)


def test_a_pyramid_along_one_axis_has_its_levels():
    assert get_noise("pyramid").sizes(1, 16) == [(1, 16), (1, 8), (1, 4), (1, 2), (1, 1)]
    assert get_noise("pyramid").sizes(4, 64) == [(4, 64), (2, 32), (1, 16)]  # as before


# ---- the diffusers adapter ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_add_noise_broadcasts_one_timestep_over_the_batch_as_diffusers():
    generator = torch.Generator().manual_seed(5)
    x0, noise = (
        torch.randn(4, 3, 8, 8, generator=generator),
        torch.randn(4, 3, 8, 8, generator=generator),
    )
    ddpm = diffusers.DDPMScheduler()
    adapter = DiffusersAdapter(ddpm)
    for t in (torch.tensor([250]), torch.tensor(250)):
        torch.testing.assert_close(
            adapter.add_noise(x0, noise, t), ddpm.add_noise(x0, noise, t), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(
            adapter.get_velocity(x0, noise, t),
            ddpm.get_velocity(x0, noise, t),
            rtol=1e-5,
            atol=1e-5,
        )
    fresh, e = adapter.add_fresh_noise(x0, torch.tensor([250]), seed=1, keys=torch.arange(4))
    torch.testing.assert_close(
        fresh, ddpm.add_noise(x0, e, torch.tensor([250])), rtol=1e-5, atol=1e-5
    )
    euler = diffusers.EulerDiscreteScheduler()
    t = euler.timesteps[[300]]  # a (1,) float timestep
    ours = DiffusersAdapter(euler).add_noise(x0, noise, t)
    torch.testing.assert_close(ours, euler.add_noise(x0, noise, t), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_from_diffusers_reads_the_config_of_a_scheduler_built_in_code():
    """scheduler.config has no _class_name; it holds its class's parameters, exactly."""
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    for kind in ("vp", "sigma", "flow"):
        for name in SUPPORTED[kind]:
            scheduler = getattr(diffusers, name)(num_train_timesteps=500)
            assert "_class_name" not in scheduler.config
            if name == "FlowMatchHeunDiscreteScheduler":
                # its parameters are also FlowMapEulerDiscreteScheduler's: not guessed
                with pytest.raises(ValueError, match=r"FlowMapEuler.*pass the scheduler itself"):
                    from_diffusers(scheduler.config)
                continue
            t = 0.3 if kind == "flow" else torch.tensor([10, 200, 499])
            want = from_diffusers(scheduler).q_sample(x0, t, noise=noise)[0]
            got = from_diffusers(scheduler.config).q_sample(x0, t, noise=noise)[0]
            assert torch.equal(got, want), name
    with pytest.raises(ValueError, match=r"'ScoreSdeVeScheduler' is not supported"):
        from_diffusers(diffusers.ScoreSdeVeScheduler().config)


# ---- NumPy integers, float timesteps, dtypes -------------------------------------------------


@pytest.mark.parametrize("bad", [[0.5, 1.7], np.array([0.5, 1.7]), torch.tensor([0.5, 1.7])])
def test_float_timesteps_are_refused_not_truncated(bad):
    with pytest.raises(TypeError, match="timesteps must be"):
        nj.Schedule.from_betas([0.1, 0.2], timesteps=bad)
    with pytest.raises(TypeError, match="timesteps must be"):
        nj.Schedule.from_alphas_cumprod([0.9, 0.5], timesteps=bad)
    with pytest.raises(ValueError, match="increasing order"):
        nj.Schedule.from_betas([0.1, 0.2], timesteps=[3, 1])
    kept = nj.Schedule.from_betas([0.1, 0.2], timesteps=np.array([4, 9], dtype=np.int32))
    assert kept.timesteps.tolist() == [4, 9]


def test_numpy_integers_are_accepted_wherever_python_ints_are():
    schedule = nj.get_schedule("linear", np.int64(100))
    assert schedule.num_steps == 100
    assert torch.equal(schedule.respace(np.int64(10)).timesteps, schedule.respace(10).timesteps)
    assert torch.equal(
        schedule.respace(np.array([0, 50, 99], dtype=np.int32)).timesteps, torch.tensor([0, 50, 99])
    )
    process = nj.ForwardProcess(schedule, "pink")
    x0 = torch.randn(2, 1, 8, 8)
    assert process.trajectory(x0, np.array([1, 5], dtype=np.int32)).shape == (2, 2, 1, 8, 8)
    assert nj.verify(process, np.int64(10), n=np.int64(40), stat_shape=(1, 8, 8)).t == 10
    assert LinearGaussianChain(np.int64(5), lambda k, x: x, lambda k, e: e).num_steps == 5
    assert get_sampler("importance", num_steps=np.int64(100)).num_steps == 100
    assert resolution_shift(np.int64(4096), np.int32(1024)) == 2.0
    assert FlowMatching(shift=np.float32(3.0)).shift == 3.0
    assert EDM(sigma_data=np.float32(0.5)).sigma_data == 0.5
    assert VPSDE(np.float32(0.1), np.int64(20)).beta_max == 20.0
    families = [
        get_noise("frames-mixed", rho=np.float32(0.5), axis=np.int64(1)),
        get_noise("colored", alpha=np.float32(1.5)),
        get_noise("offset", strength=np.float64(0.2)),
        get_noise("pyramid", levels=np.int64(2), ratio=np.int32(2), discount=np.float32(0.5)),
        get_noise("rbf", length_scale=np.int64(3)),
    ]
    for family in families:
        assert torch.isfinite(family.sample((2, 3, 4, 4))).all()
    with pytest.raises(ValueError, match="axis must be an int"):
        get_noise("frames-mixed", axis=np.float32(1.0))


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("other", DTYPES)
def test_posterior_and_v_target_dtypes_are_the_documented_ones(dtype, other):
    """q_posterior: the mean in x_t's dtype, the variance float32 (float64 for float64
    x_t); v_target: x0's dtype. Before: the mean took x0's dtype, v the noise's."""
    process = nj.ForwardProcess(SCHEDULE)
    x0, x_t = torch.randn(2, 3).to(other), torch.randn(2, 3).to(dtype)
    mean, variance = process.q_posterior(x0, x_t, 10)
    assert mean.dtype == dtype
    assert variance.dtype == (F64 if dtype == F64 else torch.float32)
    v = process.v_target(x_t, x0, 10)  # x0 of dtype, noise of the other dtype
    assert v.dtype == dtype
    continuous = nj.ForwardProcess(VPSDE())
    assert continuous.q_posterior(x0, x_t, 0.5, 0.2)[0].dtype == dtype
