"""Timestep spacings (``Schedule.respace(n, spacing=...)``) against the peers' own rules.

diffusers is installed: its schedulers' ``set_timesteps`` is the oracle. guided-diffusion is
not installable here: its rule is transcribed below, independently of noisejump's code.
"""

import diffusers  # the test extra installs it: a missing diffusers must fail, not skip
import numpy as np
import pytest
import torch

import noisejump as nj
from noisejump.schedules.spacing import SPACINGS, spaced_steps

TRAIN_STEPS = (1000, 1024, 50, 7, 1)


def diffusers_steps(scheduler_class, T, n, spacing, steps_offset=0):
    """The steps diffusers' ``set_timesteps(n)`` keeps, in increasing order."""
    scheduler = scheduler_class(
        num_train_timesteps=T, timestep_spacing=spacing, steps_offset=steps_offset
    )
    scheduler.set_timesteps(n)
    return sorted(scheduler.timesteps.tolist())


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps_offset", [0, 1])
@pytest.mark.parametrize("T", TRAIN_STEPS)
def test_diffusers_spacings_equal_set_timesteps_at_every_count(spacing, steps_offset, T):
    """Every n in [1, T], DDIMScheduler (and DDPMScheduler at T = 1000): the same steps.

    Two places where diffusers gives no valid answer are refused or repaired, and checked
    as such: "leading" with an offset that reaches step T, and "trailing" where
    np.arange(T, 0, -T / n) overshoots and diffusers adds an (n + 1)-th step, -1."""
    classes = [diffusers.DDIMScheduler] + [diffusers.DDPMScheduler] * (T == 1000)
    overshoots = 0
    for n in range(1, T + 1):
        for scheduler_class in classes:
            expected = diffusers_steps(scheduler_class, T, n, spacing, steps_offset)
            if spacing == "leading" and expected[-1] > T - 1:
                with pytest.raises(ValueError, match="past the last step"):
                    spaced_steps(T, n, spacing, steps_offset=steps_offset)
                continue
            ours = spaced_steps(T, n, spacing, steps_offset=steps_offset).tolist()
            if spacing == "trailing" and len(expected) == n + 1:
                overshoots += 1
                assert expected[0] == -1 and ours == expected[1:], (T, n)
            else:
                assert ours == expected, (T, n, scheduler_class.__name__)
    if spacing == "trailing" and T == 1000:
        assert overshoots > 0  # the defect the comment in spacing.py names is real


def test_default_respace_is_diffusers_linspace_where_torch_linspace_was_not():
    """Where k (T - 1) / (n - 1) is a half-integer, the last bit of float64 decides the
    rounding: torch.linspace gives 499.50000000000006 (500) at n = 27, k = 13, NumPy's
    499.49999999999994 (499), as diffusers keeps. 138 of the 1000 counts of T = 1000
    differed; respace now rounds NumPy's linspace, as diffusers does."""
    schedule = nj.get_schedule("linear", 1000)
    for n in (27, 31, 47, 50, 103):
        expected = diffusers_steps(diffusers.DDPMScheduler, 1000, n, "linspace")
        assert schedule.respace(n).timesteps.tolist() == expected
        assert schedule.respace(n, spacing="linspace").timesteps.tolist() == expected


# ---- guided-diffusion ----------------------------------------------------------------------
# An independent transcription of the rule of openai/guided-diffusion,
# guided_diffusion/respace.py, function space_timesteps(num_timesteps, section_counts).


def guided_diffusion_ddim(T, n):
    """guided-diffusion "ddimN": the first stride i = 1, 2, ..., T - 1 whose
    range(0, T, i) has n steps; no such stride raises ValueError."""
    for stride in range(1, T):
        if len(range(0, T, stride)) == n:
            return list(range(0, T, stride))
    raise ValueError(n)


def guided_diffusion_sections(T, counts):
    """guided-diffusion "c1,c2,...": T cut into len(counts) sections, the first
    T % len(counts) one step longer; in a section of `size` steps starting at `start`,
    `count` steps at start + round(x), x starting at 0.0 and growing by
    (size - 1) / (count - 1) (by 1 for a count of 1) after each step taken; a count
    larger than its section raises."""
    base, extra = divmod(T, len(counts))
    taken, start = set(), 0
    for i, count in enumerate(counts):
        size = base + (1 if i < extra else 0)
        if size < count:
            raise ValueError(count)
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        x = 0.0
        for _ in range(count):
            taken.add(start + round(x))
            x += stride
        start += size
    return sorted(taken)


def test_ddim_known_values_from_the_issue():
    """space_timesteps(1000, "ddim50") keeps 0, 20, ..., 980; the default respace(50) keeps
    0, 20, 41, ..., 999, and 48 of the 50 differ."""
    schedule = nj.get_schedule("linear", 1000)
    ddim = schedule.respace(50, spacing="ddim").timesteps.tolist()
    assert ddim == list(range(0, 1000, 20))
    default = schedule.respace(50).timesteps.tolist()
    assert default[:3] == [0, 20, 41] and default[-1] == 999
    assert sum(a != b for a, b in zip(ddim, default, strict=True)) == 48


@pytest.mark.parametrize("T", [1000, 250, 37, 2, 1])
def test_ddim_equals_guided_diffusion_at_every_count(T):
    refused = 0
    for n in range(1, T + 1):
        try:
            expected = guided_diffusion_ddim(T, n)
        except ValueError:
            refused += 1
            with pytest.raises(ValueError, match="no integer stride"):
                spaced_steps(T, n, "ddim")
            continue
        assert spaced_steps(T, n, "ddim").tolist() == expected, (T, n)
    assert refused >= 1  # n = 1 at least: guided-diffusion's strides stop at T - 1


@pytest.mark.parametrize("T", [1000, 300, 41])
def test_sections_equal_guided_diffusion(T):
    """Every single count in [1, T] (guided-diffusion's plain "N", which differs from
    "linspace" at some N through its running sum), and lists of section counts."""
    differs_from_linspace = 0
    for n in range(1, T + 1):
        expected = guided_diffusion_sections(T, [n])
        assert spaced_steps(T, n, "sections").tolist() == expected, (T, n)
        differs_from_linspace += expected != spaced_steps(T, n, "linspace").tolist()
    if T == 1000:
        assert differs_from_linspace > 0
    for counts in ([10, 15, 20], [1, 1, 1], [3, 0, 7], [T // 2, T - T // 2], [1] * min(T, 7)):
        try:
            expected = guided_diffusion_sections(T, counts)
        except ValueError:  # [10, 15, 20] of 41: a section of 14 steps cannot give 15
            with pytest.raises(ValueError, match="fewer than its count"):
                spaced_steps(T, counts, "sections")
            continue
        assert spaced_steps(T, counts, "sections").tolist() == expected, (T, counts)
    # the docstring's example: 300 steps, [10, 15, 20]: 10 of the first 100, and so on
    kept = spaced_steps(300, (10, 15, 20), "sections")
    assert [int(((kept >= a) & (kept < a + 100)).sum()) for a in (0, 100, 200)] == [10, 15, 20]


def test_respace_with_a_spacing_keeps_alphas_cumprod_and_the_original_indices():
    schedule = nj.get_schedule("scaled_linear", 1000, beta_start=0.00085, beta_end=0.012)
    for spacing in SPACINGS:
        spaced = schedule.respace(25, spacing=spacing)
        keep = spaced_steps(1000, 25, spacing)
        assert torch.equal(spaced.timesteps, keep)
        torch.testing.assert_close(
            spaced.alphas_cumprod, schedule.alphas_cumprod[keep], rtol=1e-13, atol=0
        )
    sd = schedule.respace(50, spacing="leading", steps_offset=1)  # Stable Diffusion
    assert sd.timesteps.tolist() == list(range(1, 1000, 20))
    assert schedule.respace(np.int64(10), spacing="trailing").num_steps == 10


def test_bad_spacing_requests_are_refused_with_what_is_allowed():
    schedule = nj.get_schedule("linear", 1000)
    with pytest.raises(ValueError, match=r"unknown spacing 'even'.*'linspace', 'leading'"):
        schedule.respace(50, spacing="even")
    with pytest.raises(ValueError, match=r"n=49 of 1000 .*counts near it that work"):
        schedule.respace(49, spacing="ddim")
    with pytest.raises(ValueError, match=r"count must be in \[1, 1000\], got 0"):
        schedule.respace(0, spacing="trailing")
    with pytest.raises(ValueError, match="section 1 has 500 steps, fewer than its count 700"):
        schedule.respace([400, 700], spacing="sections")
    with pytest.raises(ValueError, match="at least one positive"):
        schedule.respace([0, 0], spacing="sections")
    with pytest.raises(ValueError, match="guided-diffusion's spacing='ddim' has none"):
        schedule.respace(50, spacing="ddim", steps_offset=1)
    with pytest.raises(ValueError, match="steps_offset must be >= 0"):
        schedule.respace(50, spacing="leading", steps_offset=-1)
    with pytest.raises(TypeError, match="apply to a count of steps"):
        schedule.respace([0, 10, 20], spacing="trailing")
    with pytest.raises(TypeError, match="count must be an int"):
        schedule.respace(50.0, spacing="sections")
    with pytest.raises(TypeError, match="steps_offset must be an int"):
        schedule.respace(50, spacing="leading", steps_offset=1.0)
