"""One shift for every schedule, in log-SNR (issue 11, item 2): lambda -> lambda - 2 log s
with each family's relation kept, against closed forms, a float64 evaluation, diffusers'
FlowMatchEulerDiscreteScheduler as an oracle and ``verify`` (shifted continuous schedules
against a chain of exact transitions: test_continuous.py); the rules that choose s; and
bad input.

Statistical checks use fixed seeds, ALPHA = 1e-3 per check, and a negative control.
"""

import math

import diffusers
import numpy as np
import pytest
import torch

import noisejump as nj
from noisejump.continuous import EDM, VPSDE, FlowMatching, LogSNR, Shifted, SubVPSDE
from noisejump.objective import get_sampler, sample_time
from noisejump.schedules import (
    DiscreteSigmas,
    dynamic_shift_mu,
    open_sora_shift,
    resolution_shift,
    shift_from_mu,
    stretch_to_terminal,
)

F64 = torch.float64
ALPHA = 1e-3
T_GRID = torch.linspace(0.0, 1.0, 401, dtype=F64)


def cosine_log_snr(t):
    """The continuous cosine schedule: signal = cos(pi t / 2), lambda = -2 log tan(pi t / 2)."""
    return -2 * torch.log(torch.tan(math.pi * t / 2))


# family: (schedule, times, the relation its shifted schedule keeps)
FAMILIES = {
    "vp": (VPSDE(), T_GRID, lambda a, s: a**2 + s**2 - 1),
    "sub-vp": (SubVPSDE(), T_GRID, lambda a, s: s - (1 - a**2)),
    "flow": (FlowMatching(), T_GRID, lambda a, s: a + s - 1),
    "flow_shift_3": (FlowMatching(shift=3.0), T_GRID, lambda a, s: a + s - 1),
    "log_snr": (LogSNR(cosine_log_snr), T_GRID, lambda a, s: a**2 + s**2 - 1),
    "edm": (EDM(), torch.logspace(-3, 2, 101, dtype=F64), lambda a, s: a - 1),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("s", [0.25, 3.0])
def test_continuous_shift_moves_log_snr_and_keeps_the_family(family, s):
    schedule, t, relation = FAMILIES[family]
    shifted = schedule.shifted(s)
    lam, lam_shifted = schedule.log_snr(t), shifted.log_snr(t)
    finite = torch.isfinite(lam)
    torch.testing.assert_close(
        lam_shifted[finite], lam[finite] - 2 * math.log(s), rtol=0, atol=1e-9
    )
    assert torch.equal(lam_shifted[~finite], lam[~finite])  # the data and pure noise stay
    signal, sigma = shifted.signal_sigma(t)
    torch.testing.assert_close(relation(signal, sigma), torch.zeros_like(t), rtol=0, atol=1e-13)
    # the time of a log-SNR inverts it, and the transitions compose to the marginal
    inner = t[finite][1:-1]
    torch.testing.assert_close(shifted.time_at_log_snr(shifted.log_snr(inner)), inner)
    a, b = inner[::7][:-1], inner[::7][1:]
    alpha, sigma2 = shifted.transition(a, b, "cpu")
    (signal_a, sigma_a), (signal_b, sigma_b) = shifted.signal_sigma(a), shifted.signal_sigma(b)
    torch.testing.assert_close(alpha * signal_a, signal_b, rtol=1e-12, atol=0)
    torch.testing.assert_close(alpha**2 * sigma_a**2 + sigma2, sigma_b**2, rtol=1e-10, atol=1e-14)
    assert isinstance(shifted, Shifted) and shifted.shifted(2.0).shift == pytest.approx(2 * s)


def test_flow_shift_is_sd3s_time_shift_and_edm_scales_sigma():
    t = T_GRID
    for s in (0.5, 3.0):
        _, sigma = FlowMatching().shifted(s).signal_sigma(t)
        torch.testing.assert_close(sigma, s * t / (1 + (s - 1) * t), rtol=1e-14, atol=1e-16)
        torch.testing.assert_close(FlowMatching(shift=s).shift_time(t), sigma, rtol=1e-14, atol=0)
    sigma = torch.logspace(-3, 2, 50, dtype=F64)
    torch.testing.assert_close(EDM().shifted(2.5).signal_sigma(sigma)[1], 2.5 * sigma)


def test_the_shifted_cosine_is_hoogeboom_et_al_2023():
    """simple diffusion (arXiv 2301.11093, eq. 5): lambda_shifted(t) = -2 log tan(pi t / 2)
    + 2 log(64 / d) for d x d images, the shift s = d / 64 = resolution_shift(d^2, 64^2)."""
    t = T_GRID[1:-1]
    for d in (128, 512):
        shifted = LogSNR(cosine_log_snr).shifted(resolution_shift(d * d, 64 * 64))
        expected = -2 * torch.log(torch.tan(math.pi * t / 2)) + 2 * math.log(64 / d)
        torch.testing.assert_close(shifted.log_snr(t), expected, rtol=0, atol=1e-12)


# ---- discrete schedules --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled_linear"])
@pytest.mark.parametrize("s", [0.5, 2.0, 64.0])
def test_discrete_shift_against_a_float64_evaluation(name, s):
    """abar' = abar / (abar + s^2 (1 - abar)), evaluated in float64 with the schedule's
    own 1 - abar (kept to every digit); sqrt(1 - abar') = sqrt(s^2 (1 - abar) / (abar +
    s^2 (1 - abar)))."""
    schedule = nj.get_schedule(name, 1000)
    shifted = schedule.shifted(s)
    abar = schedule.alphas_cumprod
    one_minus = schedule.sqrt_one_minus_alphas_cumprod**2
    denominator = abar + s**2 * one_minus
    torch.testing.assert_close(shifted.alphas_cumprod, abar / denominator, rtol=1e-13, atol=0)
    torch.testing.assert_close(
        shifted.sqrt_one_minus_alphas_cumprod,
        torch.sqrt(s**2 * one_minus / denominator),
        rtol=1e-13,
        atol=0,
    )
    torch.testing.assert_close(shifted.log_snr, schedule.log_snr - 2 * math.log(s))
    assert shifted.num_steps == 1000 and torch.equal(shifted.timesteps, schedule.timesteps)
    # the sigma view scales sigma by s (signal = 1 there)
    torch.testing.assert_close(
        DiscreteSigmas(schedule).shifted(s).sigmas, s * DiscreteSigmas(schedule).sigmas
    )


def test_discrete_shift_keeps_zero_terminal_snr_composes_and_respaces():
    schedule = nj.get_schedule("linear", 1000, rescale_zero_terminal_snr=True)
    shifted = schedule.shifted(3.0)
    assert shifted.has_zero_terminal_snr and schedule.shifted(1.0) is schedule
    torch.testing.assert_close(
        schedule.shifted(2.0).shifted(1.5).alphas_cumprod, shifted.alphas_cumprod
    )
    respaced = shifted.respace(50)
    torch.testing.assert_close(respaced.alphas_cumprod, shifted.alphas_cumprod[respaced.timesteps])


@pytest.mark.parametrize(
    ("schedule", "t"),
    [
        (nj.get_schedule("linear", 40).shifted(2.0), 25),
        (nj.get_schedule("cosine", 30, rescale_zero_terminal_snr=True).shifted(0.5), 29),
    ],
    ids=["linear*2", "cosine+zero_snr*0.5"],
)
def test_shifted_discrete_schedules_pass_verify(schedule, t):
    report = nj.verify(nj.ForwardProcess(schedule, "pink"), t, stat_shape=(1, 16, 16), n=200)
    assert report.passed, str(report)


# ---- what time the model sees --------------------------------------------------------------


def test_flow_shift_argument_and_shifted_flow_have_one_law_and_different_times():
    """FlowMatching(shift=s) maps a draw u to t' = s u / (1 + (s - 1) u) on the plain flow;
    FlowMatching().shifted(s) keeps u as the time. The log-SNRs and the noisy states agree
    draw by draw (u draws and sigma draws alike); the time inputs differ by that map."""
    keys, s = torch.arange(512), 3.0
    argument, shifted = FlowMatching(shift=s), FlowMatching().shifted(s)
    for sampler in (get_sampler("logit_normal"), get_sampler("log_normal")):
        t = argument.sample_t(512, sampler=sampler, seed=0, keys=keys, dtype=F64)
        u = shifted.sample_t(512, sampler=sampler, seed=0, keys=keys, dtype=F64)
        torch.testing.assert_close(argument.log_snr(t), shifted.log_snr(u), rtol=0, atol=1e-10)
        torch.testing.assert_close(t, s * u / (1 + (s - 1) * u), rtol=1e-14, atol=0)
        assert not torch.allclose(t, u)
    x0 = torch.randn(512, 4, generator=torch.Generator().manual_seed(0))
    a = nj.ForwardProcess(argument).q_sample(x0, t.float(), seed=1, keys=keys)[0]
    b = nj.ForwardProcess(shifted).q_sample(x0, u.float(), seed=1, keys=keys)[0]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "schedule",
    [nj.get_schedule("linear", 1000), VPSDE(), FlowMatching(), EDM()],
    ids=["linear", "vp", "flow", "edm"],
)
def test_a_shift_keeps_the_time_of_every_draw_and_moves_its_log_snr(schedule):
    """The invariant a shift keeps: the same keyed draws name the same times, and each
    time's log-SNR is lambda - 2 log s. EDM's log-normal on EDM().shifted(k) is thereby
    the log-normal with P_mean + ln k."""
    keys, s = torch.arange(256), 2.5
    samplers = [get_sampler("log_normal")]
    if not isinstance(schedule, EDM):
        samplers.append(get_sampler("mode"))
    for sampler in samplers:
        t = sample_time(schedule, sampler, 256, seed=0, keys=keys, dtype=F64)[0]
        t_shifted = sample_time(schedule.shifted(s), sampler, 256, seed=0, keys=keys, dtype=F64)[0]
        assert torch.equal(t, t_shifted)
        if isinstance(schedule, nj.Schedule):
            lam, lam_shifted = schedule.log_snr[t], schedule.shifted(s).log_snr[t]
        else:
            lam, lam_shifted = schedule.log_snr(t), schedule.shifted(s).log_snr(t)
        torch.testing.assert_close(lam_shifted, lam - 2 * math.log(s), rtol=0, atol=1e-9)
    sigma = EDM().shifted(s).signal_sigma(EDM().shifted(s).sample_t(256, seed=0, keys=keys))[1]
    moved = get_sampler("log_normal", p_mean=-1.2 + math.log(s)).sample(256, seed=0, keys=keys)
    torch.testing.assert_close(sigma.float(), moved[0], rtol=1e-5, atol=0)


# ---- diffusers as the oracle ----------------------------------------------------------------


def flow_sigmas(scheduler_kwargs, steps, s, shift_terminal=None):
    """(diffusers' inference sigmas, ours) for one configuration: ours are the shifted
    flow's sigma on diffusers' own unshifted grid, linspace(sigma_max T, sigma_min T) / T."""
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**scheduler_kwargs)
    T = scheduler.config.num_train_timesteps
    grid = np.linspace(scheduler.sigma_max * T, scheduler.sigma_min * T, steps) / T
    mu = scheduler_kwargs.get("use_dynamic_shifting") and math.log(s)
    if scheduler_kwargs.get("time_shift_type") == "linear":
        mu = s
    scheduler.set_timesteps(steps, mu=mu if mu is not False else None)
    ours = FlowMatching().shifted(s).signal_sigma(torch.tensor(grid, dtype=F64))[1]
    if shift_terminal is not None:
        ours = stretch_to_terminal(ours, shift_terminal)
    return scheduler.sigmas[:-1].double(), ours


def test_static_shift_matches_flow_match_euler():
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    train = torch.linspace(1.0, 1000.0, 1000, dtype=F64).flip(0) / 1000
    ours = FlowMatching().shifted(3.0).signal_sigma(train)[1]
    torch.testing.assert_close(scheduler.sigmas.double(), ours, rtol=3e-7, atol=0)
    theirs, ours = flow_sigmas({"shift": 3.0}, 28, 3.0)
    torch.testing.assert_close(theirs, ours, rtol=3e-7, atol=0)
    assert not torch.allclose(theirs, FlowMatching().shifted(2.9).signal_sigma(ours)[1])


@pytest.mark.parametrize("time_shift_type", ["exponential", "linear"])
def test_dynamic_shift_with_mu_matches_flow_match_euler(time_shift_type):
    """Flux: mu from the image's sequence length, s = e^mu (exponential) or mu (linear)."""
    mu = dynamic_shift_mu(64 * 64)  # a 1024^2 image: 4096 latent tokens -> max_shift
    assert mu == pytest.approx(1.15)
    s = shift_from_mu(mu, time_shift_type)
    kwargs = {"use_dynamic_shifting": True, "time_shift_type": time_shift_type}
    theirs, ours = flow_sigmas(kwargs, 28, s)
    torch.testing.assert_close(theirs, ours, rtol=3e-7, atol=0)


def test_shift_terminal_is_a_stretch_of_the_grid_as_in_flow_match_euler():
    theirs, ours = flow_sigmas({"shift": 3.0, "shift_terminal": 0.1}, 20, 3.0, 0.1)
    torch.testing.assert_close(theirs, ours, rtol=3e-7, atol=0)
    assert ours[-1] == pytest.approx(0.1) and ours[0] == 1.0
    unstretched = FlowMatching().shifted(3.0).signal_sigma(torch.linspace(1.0, 0.05, 20))[1]
    assert not torch.allclose(theirs, unstretched.double())


def test_dynamic_shift_mu_is_the_line_through_the_two_lengths():
    assert dynamic_shift_mu(256) == pytest.approx(0.5)
    assert dynamic_shift_mu(4096) == pytest.approx(1.15)
    assert dynamic_shift_mu(1024) == pytest.approx(0.5 + 0.65 * (1024 - 256) / (4096 - 256))
    assert dynamic_shift_mu(
        100, base_seq_len=100, max_seq_len=200, base_shift=1.0, max_shift=2.0
    ) == pytest.approx(1.0)
    assert shift_from_mu(0.0) == 1.0 and shift_from_mu(2.0, "linear") == 2.0


def test_open_sora_shift_is_its_timestep_transform():
    """Open-Sora 1.2: ratio = sqrt(H W / 512^2) sqrt(F' / 1) scale, F' = num_frames // 17 * 5,
    and new_t = ratio t / (1 + (ratio - 1) t): the flow shifted by that ratio."""
    height, width, num_frames = 720, 1280, 51
    latent = num_frames // 17 * 5
    ratio = math.sqrt(height * width / (512 * 512)) * math.sqrt(latent / 1) * 1.0
    s = open_sora_shift(height, width, latent)
    assert s == pytest.approx(ratio)
    assert open_sora_shift(512, 512) == 1.0 and open_sora_shift(512, 512, scale=2.0) == 2.0
    t = T_GRID
    new_t = ratio * t / (1 + (ratio - 1) * t)
    torch.testing.assert_close(FlowMatching().shifted(s).signal_sigma(t)[1], new_t)


# ---- bad input ------------------------------------------------------------------------------

BAD_SHIFTS = [
    (0.0, ValueError),
    (-2.0, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (True, TypeError),
    ("2", TypeError),
]


@pytest.mark.parametrize(("s", "error"), BAD_SHIFTS)
def test_bad_shifts_are_refused(s, error):
    pattern = "shift must be a positive finite float" if error is ValueError else "shift must"
    for schedule in (nj.get_schedule("linear", 10), VPSDE(), EDM(), FlowMatching()):
        with pytest.raises(error, match=pattern):
            schedule.shifted(s)
    with pytest.raises(error, match=pattern):
        FlowMatching(shift=s)
    with pytest.raises(error, match=pattern):
        DiscreteSigmas(nj.get_schedule("linear", 10)).shifted(s)


def test_bad_rule_arguments_are_refused():
    with pytest.raises(ValueError, match="need base_seq_len < max_seq_len"):
        dynamic_shift_mu(1024, base_seq_len=4096, max_seq_len=256)
    with pytest.raises(ValueError, match="image_seq_len must be a positive int"):
        dynamic_shift_mu(0)
    with pytest.raises(ValueError, match="max_shift must be a finite float"):
        dynamic_shift_mu(1024, max_shift=math.nan)
    with pytest.raises(ValueError, match="time_shift_type must be one of"):
        shift_from_mu(1.0, "cubic")
    with pytest.raises(ValueError, match="mu must be a positive finite float"):
        shift_from_mu(-0.5, "linear")
    with pytest.raises(ValueError, match="height must be a positive int"):
        open_sora_shift(0, 512)
    with pytest.raises(ValueError, match="scale must be a positive finite float"):
        open_sora_shift(512, 512, scale=0.0)
    with pytest.raises(ValueError, match="num_tokens must be a positive int"):
        resolution_shift(0, 4096)
    with pytest.raises(ValueError, match=r"shift_terminal must be a finite float in \(0, 1\)"):
        stretch_to_terminal([1.0, 0.5], 1.0)
    with pytest.raises(ValueError, match="last sigma must be below 1"):
        stretch_to_terminal([1.0, 1.0], 0.1)
    with pytest.raises(ValueError, match=r"sigmas must lie in \[0, 1\]"):
        stretch_to_terminal([1.5, 0.5], 0.1)
    with pytest.raises(ValueError, match="two steps of the shifted schedule coincide"):
        nj.get_schedule("linear", 1000).shifted(1e-200)
