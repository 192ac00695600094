"""noisejump.sequences (issue 12, item 4): keyed noise levels per frame or block, the
scheduling matrices against their rules, and the layout of per-frame steps and weights."""

import math

import pytest
import torch

import noisejump as nj
from noisejump import sequences as sq
from noisejump.continuous import FlowMatching
from noisejump.noise import get_noise
from noisejump.objective import get_sampler, get_weighting, sample_time
from noisejump.objective.weighting import min_snr_weight

T = 1000
SCHEDULE = nj.get_schedule("linear", T)
KEYS = torch.tensor([[3, 1], [4, 1], [5, 9], [2, 6], [5, 3]])


# ---- scheduling matrices --------------------------------------------------------------------


def rule(kind, frames, top, u):
    """The issue's rules, entry by entry in plain Python."""
    if kind == "full_sequence":
        return [[top - m for _ in range(frames)] for m in range(top + 1)]
    if kind == "autoregressive":
        kind, u = "pyramid", top
    if kind == "pyramid":
        delay = [math.floor(f * u) for f in range(frames)]
    else:  # trapezoid
        delay = [math.floor(min(f, frames - 1 - f) * u) for f in range(frames)]
    height = top + (math.floor((frames - 1) * u) if kind == "pyramid" else
                    math.floor(((frames - 1) // 2) * u)) + 1  # fmt: skip
    return [[min(max(top + delay[f] - m, 0), top) for f in range(frames)] for m in range(height)]


@pytest.mark.parametrize("kind", sq.KINDS)
@pytest.mark.parametrize(("frames", "top"), [(1, 3), (5, 4), (8, 10), (6, 1)])
def test_scheduling_matrices_follow_their_rules(kind, frames, top):
    scales = [None] if kind in ("full_sequence", "autoregressive") else [None, 0.0, 0.5, 2.5]
    for u in scales:
        options = {} if u is None else {"uncertainty_scale": u}
        matrix = sq.scheduling_matrix(kind, frames, top, **options)
        expected = rule(kind, frames, top, 1.0 if u is None else u)
        assert matrix.dtype == torch.int64 and matrix.tolist() == expected
        # first row all noise where a frame starts at once, last row all clean
        assert matrix[0, 0] == top and not matrix[-1].any()
        # every frame is denoised one level per row once it starts: never noisier again
        assert (matrix[1:] <= matrix[:-1]).all()


def test_trapezoid_is_symmetric_where_the_reference_code_is_not():
    """The diffusion forcing reference pairs column t with column -t: column 0 with
    itself, the last with column 1, and the middle of an even horizon is never written."""
    frames, top, u = 6, 4, 1.0
    ours = sq.scheduling_matrix("trapezoid", frames, top, uncertainty_scale=u)
    assert torch.equal(ours, ours.flip(1))
    height = top + int((frames + 1) // 2 * u)
    reference = torch.zeros(height, frames, dtype=torch.int64)
    for m in range(height):
        for t in range((frames + 1) // 2):
            reference[m, t] = top + int(t * u) - m
            reference[m, -t] = top + int(t * u) - m
    reference = reference.clamp(0, top)
    assert not reference[:, frames // 2].any()  # the middle column: clean from the start
    assert not torch.equal(reference, reference.flip(1))
    assert ours[:, frames // 2].max() == top


def test_matrix_levels_map_to_process_steps():
    matrix = sq.scheduling_matrix("pyramid", 3, 50)
    steps = sq.matrix_steps(matrix, T, 50)
    assert steps[0, 0] == T - 1 and steps[-1].tolist() == [-1, -1, -1]
    assert steps.unique().tolist() == [-1] + [round(k * T / 50) - 1 for k in range(1, 51)]
    # halves round up: k T / S = 1.5 for T = 3, S = 2
    assert sq.matrix_steps(torch.tensor([0, 1, 2]), 3, 2).tolist() == [-1, 1, 2]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sq.scheduling_matrix("diagonal", 4, 10), r"kind must be one of .*'pyramid'"),
        (lambda: sq.scheduling_matrix("pyramid", 4, 10, uncertainty_scale=-1.0), ">= 0, got -1"),
        (lambda: sq.scheduling_matrix("pyramid", 4, 10, uncertainty_scale=math.inf), "finite"),
        (lambda: sq.scheduling_matrix("full_sequence", 4, 10, uncertainty_scale=1.0), "belongs"),
        (lambda: sq.scheduling_matrix("pyramid", 0, 10), "num_frames must be an int >= 1"),
        (
            lambda: sq.matrix_steps(torch.tensor([0, 11]), T, 10),
            r"levels must lie in .* = \[0, 10\]",
        ),
    ],
)
def test_bad_matrix_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
    with pytest.raises(TypeError, match="sampling_steps must be an int >= 1, got 2.5"):
        sq.scheduling_matrix("pyramid", 4, 2.5)


# ---- keyed levels for training --------------------------------------------------------------


GENERATORS = {
    "independent": lambda keys, **kw: sq.independent_steps(SCHEDULE, 6, keys=keys, **kw),
    "context": lambda keys, **kw: sq.context_steps(SCHEDULE, 6, 2, keys=keys, **kw),
    "blocks": lambda keys, **kw: sq.block_steps(SCHEDULE, 7, 3, keys=keys, context_blocks=1, **kw),
    "autoregressive": lambda keys, **kw: sq.autoregressive_steps(SCHEDULE, 6, 150, keys=keys, **kw),
}


@pytest.mark.parametrize("sampler", [None, "logit_normal"])
@pytest.mark.parametrize("name", GENERATORS)
def test_levels_are_keyed_per_sample(name, sampler):
    steps, weight = GENERATORS[name](KEYS, seed=11, sampler=sampler)
    assert steps.dtype == torch.int64 and steps.shape == weight.shape and len(steps) == 5
    assert ((steps >= -1) & (steps < T)).all()
    part, part_weight = GENERATORS[name](KEYS[[3, 1]], seed=11, sampler=sampler)
    assert torch.equal(part, steps[[3, 1]]) and torch.equal(part_weight, weight[[3, 1]])
    other, _ = GENERATORS[name](KEYS, seed=12, sampler=sampler)  # negative control: a seed
    assert not torch.equal(other, steps)


def test_generators_follow_their_structure():
    keys = torch.arange(400)
    steps, _ = sq.independent_steps(SCHEDULE, 4, seed=0, keys=keys)
    # frame f is sample_time's keyed draw with frame f's seed: frame 0 the seed's own
    uniform = get_sampler("uniform")
    for f in (0, 3):
        draw, _ = sample_time(SCHEDULE, uniform, 400, seed=sq.frame_seed(0, f), keys=keys)
        assert torch.equal(steps[:, f], draw)
    context, weight = sq.context_steps(SCHEDULE, 4, 1, seed=0, keys=keys)
    assert (context[:, 0] == -1).all() and (weight[:, 0] == 0).all()
    assert (context[:, 1:] == steps[:, :1]).all()  # one shared level: frame 0's draw
    blocks, _ = sq.block_steps(SCHEDULE, 8, 3, seed=0, keys=keys)
    assert (blocks[:, :3] == blocks[:, :1]).all() and (blocks[:, 6:] == blocks[:, 6:7]).all()
    assert torch.equal(blocks[:, 0], steps[:, 0]) and torch.equal(blocks[:, 3], steps[:, 1])
    ar, _ = sq.autoregressive_steps(SCHEDULE, 5, 300, seed=0, keys=keys)
    assert torch.equal(ar, (steps[:, :1] + 300 * torch.arange(5)).clamp(max=T - 1))


def test_independent_levels_are_uniform_and_independent_across_frames():
    """Seeded statistics of 4000 x 4 levels: every frame uniform on the T steps
    (Kolmogorov-Smirnov), frames uncorrelated; each at a false-alarm rate of 1e-3 (the
    correlation bound 3.3 / sqrt(n)). Negative controls: the levels of a logit-normal
    sampler fail the uniformity test; one level shared by all frames (context_steps)
    fails the independence test."""
    n, bound = 4000, 3.3 / math.sqrt(4000)
    keys = torch.arange(n)
    steps, weight = sq.independent_steps(SCHEDULE, 4, seed=5, keys=keys)
    assert (weight == 1).all()

    def ks_uniform(column):  # D_n against the uniform law of floor(u T): cdf (k + 1) / T
        ordered = column.sort().values.double()
        empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
        return (empirical - (ordered + 1) / T).abs().max().item()

    critical = 1.95 / math.sqrt(n) + 1 / T  # KS at 1e-3, plus the steps' discreteness
    assert all(ks_uniform(steps[:, f]) < critical for f in range(4))
    correlation = torch.corrcoef(steps.T.double())
    assert (correlation - torch.eye(4)).abs().max() < bound
    peaked, _ = sq.independent_steps(SCHEDULE, 4, seed=5, keys=keys, sampler="logit_normal")
    assert ks_uniform(peaked[:, 0]) > critical
    shared, _ = sq.context_steps(SCHEDULE, 4, 0, seed=5, keys=keys)
    assert torch.corrcoef(shared.T.double())[0, 1] > 1 - bound


def test_continuous_levels_are_times_with_minus_one_clean():
    flow = nj.ForwardProcess(FlowMatching())
    steps, _ = sq.context_steps(flow, 3, 1, seed=2, keys=KEYS)
    draw, _ = sample_time(flow, flow.schedule.default_sampler(), 5, seed=2, keys=KEYS)
    assert steps.dtype == torch.float32 and (steps[:, 0] == -1.0).all()
    assert torch.equal(steps[:, 1], draw)  # the schedule's own default sampler
    ar, _ = sq.autoregressive_steps(flow, 4, 0.5, seed=2, keys=KEYS)
    torch.testing.assert_close(ar[:, 1], (ar[:, 0] + 0.5).clamp(max=1))
    x0 = torch.randn(5, 3, 2, 2)  # (B, F, H, W): the times lie along the frames
    x_t, noise = flow.q_sample(x0, sq.frame_steps(steps, x0), seed=2, keys=KEYS)
    assert torch.equal(x_t[:, 0], x0[:, 0]) and not noise[:, 0].any()


def test_levels_are_drawn_by_the_sampler_given():
    sampler = get_sampler("uniform", t_max=0.5)
    steps, weight = sq.independent_steps(SCHEDULE, 5, seed=3, keys=KEYS, sampler=sampler)
    uniform, _ = sq.independent_steps(SCHEDULE, 5, seed=3, keys=KEYS)
    assert (steps < T // 2).all() and (weight == 1).all()
    assert not torch.equal(steps, uniform)
    importance = get_sampler("importance", num_steps=T)
    _, weight = sq.independent_steps(SCHEDULE, 2, seed=3, keys=KEYS, sampler=importance)
    expected = sample_time(SCHEDULE, importance, 5, seed=sq.frame_seed(3, 1), keys=KEYS)[1]
    assert torch.equal(weight[:, 1], expected)  # the sampler's own loss weights


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sq.context_steps(SCHEDULE, 4, 4, seed=0, keys=KEYS), ValueError, "context_fr"),
        (lambda: sq.independent_steps(SCHEDULE, 0, seed=0, keys=KEYS), ValueError, "num_frames"),
        (lambda: sq.independent_steps(SCHEDULE, 3, seed=-1, keys=KEYS), ValueError, "seed must"),
        (lambda: sq.block_steps(SCHEDULE, 6, 0, seed=0, keys=KEYS), ValueError, "block_size"),
        (
            lambda: sq.block_steps(SCHEDULE, 6, 3, seed=0, keys=KEYS, context_blocks=2),
            ValueError,
            r"context_blocks must be in \[0, 1\]",
        ),
        (
            lambda: sq.autoregressive_steps(SCHEDULE, 4, -1, seed=0, keys=KEYS),
            ValueError,
            "ar_step must be an int >= 0, got -1",
        ),
        (
            lambda: sq.autoregressive_steps(FlowMatching(), 4, -0.5, seed=0, keys=KEYS),
            ValueError,
            "ar_step must be a finite float",
        ),
        (
            lambda: sq.independent_steps(SCHEDULE, 3, seed=0, keys=KEYS, sampler=3),
            TypeError,
            "samp",
        ),
        (
            lambda: sq.independent_steps(SCHEDULE, 3, seed=0, keys=KEYS, sampler="nope"),
            ValueError,
            "unknown timestep sampler",
        ),
        (lambda: sq.independent_steps(1000, 3, seed=0, keys=KEYS), TypeError, "schedule must"),
        (
            lambda: sq.independent_steps(SCHEDULE, 3, seed=0, keys=torch.tensor([])),
            ValueError,
            "keys",
        ),
    ],
)
def test_bad_generator_arguments_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- per-frame layout and weights -----------------------------------------------------------


def test_frame_steps_lay_steps_along_the_frame_axis():
    steps, _ = sq.independent_steps(SCHEDULE, 4, seed=0, keys=KEYS[:2])
    clip = torch.zeros(2, 3, 4, 5, 5)  # (B, C, F, H, W): frames on event axis 1
    noise = get_noise("frames-progressive", rho=0.5, axis=1)
    laid = sq.frame_steps(steps, clip, noise=noise)
    assert laid.shape == (2, 1, 4, 1, 1) and torch.equal(laid.flatten(1), steps)
    assert nj.ForwardProcess(SCHEDULE, noise).plan(laid, clip.shape).path == "frames"
    assert sq.frame_steps(steps, clip, axis=1).shape == (2, 1, 4, 1, 1)
    with pytest.raises(ValueError, match=r"4 frames but the sample has 3 along the noise"):
        sq.frame_steps(steps, torch.zeros(2, 3, 3, 5, 5), noise=noise)
    with pytest.raises(ValueError, match="not the frame axis"):
        sq.frame_steps(steps, clip, axis=0, noise=noise)


def test_frame_weights_are_the_weighting_at_each_frame_and_zero_when_clean():
    steps, _ = sq.context_steps(SCHEDULE, 4, 1, seed=0, keys=KEYS)
    weighting = get_weighting("min_snr", gamma=5.0)
    weights = sq.frame_weights(SCHEDULE, steps, weighting, prediction="v")
    assert (weights[:, 0] == 0).all()
    snr = SCHEDULE.snr[steps[:, 1:]]
    expected = min_snr_weight(snr, 5.0, "v").float()
    torch.testing.assert_close(weights[:, 1:], expected, rtol=0, atol=0)
    # EDM's weighting diverges at the data: clean frames still get 0, not an error
    edm = sq.frame_weights(SCHEDULE, steps, "edm", prediction="sample")
    assert (edm[:, 0] == 0).all() and torch.isfinite(edm).all() and (edm[:, 1:] > 0).all()
    with pytest.raises(TypeError, match="weighting must be a Weighting"):
        sq.frame_weights(SCHEDULE, steps, 5.0)
    with pytest.raises(ValueError, match=r"steps must be .*-1"):
        sq.frame_weights(SCHEDULE, steps - 1, weighting)
