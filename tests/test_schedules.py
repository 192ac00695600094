"""Schedules: the published formulas in float64, diffusers' tables, and bad input."""

import math

import numpy as np
import pytest
import torch

import noisejump as nj
from noisejump import Schedule, get_schedule

T = 1000


def published_betas(name, n, beta_start=1e-4, beta_end=0.02):
    """The published formulas, written again in numpy float64 (independent of the package)."""
    if name == "linear":  # Ho et al. 2020, section 4
        return np.linspace(beta_start, beta_end, n)
    if name == "scaled_linear":  # latent diffusion
        return np.linspace(beta_start**0.5, beta_end**0.5, n) ** 2
    if name in ("squaredcos_cap_v2", "cosine"):  # Nichol & Dhariwal 2021, eq. 17
        f = [math.cos((i / n + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(n + 1)]
        return np.array([min(1 - f[i + 1] / f[i], 0.999) for i in range(n)])
    if name == "sigmoid":  # GeoDiff
        return 1 / (1 + np.exp(-np.linspace(-6, 6, n))) * (beta_end - beta_start) + beta_start
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name", ["linear", "scaled_linear", "squaredcos_cap_v2", "cosine", "sigmoid"]
)
def test_tables_equal_the_published_formulas_in_float64(name):
    schedule = get_schedule(name, T)
    betas = published_betas(name, T)
    abar = np.cumprod(1 - betas)
    assert schedule.betas.dtype == torch.float64
    np.testing.assert_allclose(schedule.betas.numpy(), betas, rtol=1e-12, atol=0)
    np.testing.assert_allclose(schedule.alphas.numpy(), 1 - betas, rtol=1e-12, atol=0)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), abar, rtol=1e-12, atol=0)
    np.testing.assert_allclose(schedule.sqrt_alphas_cumprod.numpy(), np.sqrt(abar), rtol=1e-12)
    np.testing.assert_allclose(
        schedule.sqrt_one_minus_alphas_cumprod.numpy(), np.sqrt(1 - abar), rtol=1e-12
    )
    np.testing.assert_allclose(schedule.snr.numpy(), abar / (1 - abar), rtol=1e-11)
    np.testing.assert_allclose(schedule.log_snr.numpy(), np.log(abar / (1 - abar)), rtol=1e-11)
    assert schedule.num_steps == T


CONFIGS = [
    ("linear", 1e-4, 0.02),
    ("linear", 1e-3, 0.05),
    ("scaled_linear", 0.00085, 0.012),
    ("scaled_linear", 1e-4, 0.02),
    ("squaredcos_cap_v2", 1e-4, 0.02),
    ("sigmoid", 1e-4, 0.02),
    ("sigmoid", 0.00085, 0.012),
]


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize(("name", "beta_start", "beta_end"), CONFIGS)
def test_tables_match_diffusers_ddpm_scheduler(name, beta_start, beta_end, rescale):
    diffusers = pytest.importorskip("diffusers")
    reference = diffusers.DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule=name,
        beta_start=beta_start,
        beta_end=beta_end,
        rescale_betas_zero_snr=rescale,
    )
    ours = get_schedule(
        name, T, beta_start=beta_start, beta_end=beta_end, rescale_zero_terminal_snr=rescale
    )
    abar, abar_d = ours.alphas_cumprod, reference.alphas_cumprod.double()
    # diffusers builds its tables in float32, we in float64.
    assert ((abar - abar_d).abs() <= 5e-5 * abar + 1e-8).all()
    if not rescale:
        torch.testing.assert_close(ours.betas, reference.betas.double(), rtol=1e-6, atol=1e-8)


def test_zero_terminal_snr_rescale():
    base = get_schedule("scaled_linear", T, beta_start=0.00085, beta_end=0.012)
    rescaled = base.rescale_zero_terminal_snr()
    assert rescaled.alphas_cumprod[-1] == 0 and rescaled.has_zero_terminal_snr
    assert not base.has_zero_terminal_snr  # a new schedule: the original is untouched
    torch.testing.assert_close(
        rescaled.alphas_cumprod[0], base.alphas_cumprod[0], rtol=1e-14, atol=0
    )
    assert rescaled.betas[-1] == 1
    assert rescaled.snr[-1] == 0 and rescaled.log_snr[-1] == -math.inf
    # Lin et al. 2023, Algorithm 1: sqrt(abar) is an affine map of the original.
    root, new_root = base.sqrt_alphas_cumprod, rescaled.sqrt_alphas_cumprod
    slope = (new_root[0] - new_root[-1]) / (root[0] - root[-1])
    torch.testing.assert_close(new_root, (root - root[-1]) * slope, rtol=0, atol=1e-14)


def test_from_betas_and_from_alphas_cumprod_agree():
    betas = torch.linspace(1e-4, 0.02, 50, dtype=torch.float64)
    a = Schedule.from_betas(betas)
    b = Schedule.from_alphas_cumprod(torch.cumprod(1 - betas, 0))
    torch.testing.assert_close(a.alphas_cumprod, b.alphas_cumprod, rtol=1e-13, atol=0)
    torch.testing.assert_close(a.betas, b.betas, rtol=1e-10, atol=0)


@pytest.mark.parametrize("steps", [10, [0, 5, 99, 500, 999], torch.tensor([3, 7, 999])])
def test_respace_keeps_alphas_cumprod_at_every_kept_step(steps):
    schedule = get_schedule("cosine", T)
    spaced = schedule.respace(steps)
    keep = spaced.timesteps
    torch.testing.assert_close(
        spaced.alphas_cumprod, schedule.alphas_cumprod[keep], rtol=1e-13, atol=0
    )
    # betas of the spaced chain compose back to the kept abar
    torch.testing.assert_close(
        torch.cumprod(spaced.alphas, 0), schedule.alphas_cumprod[keep], rtol=1e-12, atol=0
    )
    if isinstance(steps, int):
        assert len(keep) == steps and keep[0] == 0 and keep[-1] == T - 1


def test_public_tables_are_copies():
    schedule = get_schedule("linear", 10)
    schedule.betas.fill_(0.5)
    schedule.alphas_cumprod.fill_(0.5)
    schedule.timesteps.fill_(3)
    torch.testing.assert_close(schedule.betas, torch.linspace(1e-4, 0.02, 10, dtype=torch.float64))
    assert schedule.timesteps.tolist() == list(range(10))


def test_device_tables_are_cached():
    schedule = get_schedule("linear", 10)
    first = schedule.table("signal", "cpu", torch.float32)
    assert schedule.table("signal", "cpu", torch.float32) is first
    assert first.dtype == torch.float32
    torch.testing.assert_close(first.double(), schedule.sqrt_alphas_cumprod, rtol=1e-7, atol=0)


@pytest.mark.parametrize(
    ("betas", "match"),
    [
        ([0.1, 0.0, 0.2], r"\(0, 1\]"),
        ([0.1, -0.1], r"\(0, 1\]"),
        ([0.1, 1.5], r"\(0, 1\]"),
        ([0.1, float("nan")], "NaN"),
        ([0.1, 1.0, 0.2], "last step"),
        ([], "non-empty"),
        ([[0.1, 0.2]], "1-D"),
    ],
)
def test_bad_betas(betas, match):
    with pytest.raises(ValueError, match=match):
        Schedule.from_betas(betas)


@pytest.mark.parametrize(
    ("abar", "match"),
    [
        ([0.9, 0.95, 0.5], "strictly decrease"),
        ([0.9, 0.9], "strictly decrease"),
        ([1.0, 0.5], r"\[0, 1\)"),
        ([0.9, -0.1], r"\[0, 1\)"),
        ([0.9, float("nan")], "NaN"),
        ([0.9, 0.0, 0.0], "strictly decrease"),
    ],
)
def test_bad_alphas_cumprod(abar, match):
    with pytest.raises(ValueError, match=match):
        Schedule.from_alphas_cumprod(abar)


def test_bad_schedule_requests():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        get_schedule("quadratic")
    with pytest.raises(ValueError, match="num_steps"):
        get_schedule("linear", 0)
    with pytest.raises(ValueError, match="beta_start"):
        get_schedule("linear", beta_start=0.02, beta_end=0.01)
    with pytest.raises(TypeError, match="takes no argument"):
        get_schedule("linear", s=0.01)
    with pytest.raises(ValueError, match="strictly increasing"):
        get_schedule("linear", 10).respace([3, 3])
    with pytest.raises(ValueError, match=r"count must be in \[1, 10\], got 11"):
        get_schedule("linear", 10).respace(11)
    assert set(nj.schedule_names()) >= {"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"}
