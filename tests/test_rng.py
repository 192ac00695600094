"""Keyed noise: Philox 4x32-10 against published answers and a scalar re-implementation,
the documented stream, keys invariance through q_sample, statistics with negative controls.

Statistical tests: fixed seeds and keys, each p-value compared with ALPHA = 1e-3 (the
false-alarm rate of one test); each has a control at the same n and seed that must reject.
"""

import math

import pytest
import torch
from noise_families import TwoWhiteDraws

import noisejump as nj
from noisejump import rng, stats
from noisejump.rng import box_muller, keyed_normal, philox4x32, uniform_from_bits

ALPHA = 1e-3
MASK32 = 0xFFFFFFFF

# Random123 kat_vectors, "philox4x32 10": counter (4 words), key (2 words), output (4 words).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK32,) * 4, (MASK32, MASK32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def scalar_philox(counter, key, rounds=10):
    """Philox 4x32 on Python ints, written from Salmon et al. 2011 independently of rng.py."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(rounds):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
        k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
    return c0, c1, c2, c3


def scalar_normal(seed, key_a, key_b, n, stream=0):
    """Element n of a sample, from the layout in docs/keyed-noise.md, in float64."""
    words = scalar_philox((n // 4, stream, key_a, key_b), (seed & MASK32, seed >> 32))
    u = [((w >> 9) + 0.5) / 2**23 for w in words]
    pair = n % 4 // 2
    radius = math.sqrt(-2 * math.log(u[2 * pair]))
    theta = 2 * math.pi * u[2 * pair + 1]
    return radius * (math.cos(theta) if n % 2 == 0 else math.sin(theta))


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_known_answers(counter, key, expected):
    out = philox4x32(*(torch.tensor([c]) for c in counter), *key)
    assert [int(o) for o in out] == list(expected)


@pytest.mark.parametrize("rounds", [1, 2, 3, 7, 10])
def test_philox_matches_scalar_version_on_random_words(rounds):
    generator = torch.Generator().manual_seed(rounds)
    counters = torch.randint(0, 2**32, (4, 50), generator=generator, dtype=torch.int64)
    key = (0x12345678, 0xFEDCBA98)
    out = torch.stack(philox4x32(*counters, *key, rounds=rounds))
    for i in range(50):
        assert tuple(out[:, i].tolist()) == scalar_philox(counters[:, i].tolist(), key, rounds)


def test_uniform_map_is_exact_and_open():
    bits = torch.tensor([0, 511, 512, MASK32], dtype=torch.int64)
    u = uniform_from_bits(bits)
    assert u.dtype == torch.float32
    expected = torch.tensor([0.5, 0.5, 1.5, 2**23 - 0.5], dtype=torch.float64) / 2**23
    assert torch.equal(u.double(), expected)
    assert 0 < u.min() and u.max() < 1


def test_keyed_normal_follows_the_documented_stream():
    seed, keys = 2**40 + 7, torch.tensor([[3, 9], [2**32 - 1, 0]])
    z = keyed_normal((2, 11), seed=seed, keys=keys, stream=5)
    for b in range(2):
        for n in range(11):
            expected = scalar_normal(seed, *keys[b].tolist(), n, stream=5)
            assert abs(z[b, n].item() - expected) <= 2e-6 * max(1.0, abs(expected))


def test_cpu_blocks_do_not_change_the_noise(monkeypatch):
    keys = torch.tensor([3, 1, 4])
    whole = keyed_normal((3, 5, 9), seed=8, keys=keys)  # 12 groups per sample, one block
    monkeypatch.setattr(rng, "CHUNK_WORDS", 7)  # blocks of 2 groups x 3 samples
    assert torch.equal(keyed_normal((3, 5, 9), seed=8, keys=keys), whole)
    assert abs(whole[2, 4, 8].item() - scalar_normal(8, 4, 0, 44)) <= 2e-6 * max(
        1.0, abs(whole[2, 4, 8].item())
    )


def test_one_word_keys_are_the_pair_of_their_halves():
    keys = torch.tensor([0, 5, 2**40 + 3, 2**63 - 1])
    pairs = torch.stack([keys & MASK32, keys >> 32], dim=1)
    a = keyed_normal((4, 3, 5), seed=1, keys=keys)
    assert torch.equal(a, keyed_normal((4, 3, 5), seed=1, keys=pairs))


def test_seed_keys_and_stream_each_change_the_noise():
    keys = torch.arange(4)
    base = keyed_normal((4, 8), seed=1, keys=keys)
    assert torch.equal(base, keyed_normal((4, 8), seed=1, keys=keys.clone()))
    for other in (
        keyed_normal((4, 8), seed=2, keys=keys),
        keyed_normal((4, 8), seed=1 + 2**32, keys=keys),
        keyed_normal((4, 8), seed=1, keys=keys + 4),
        keyed_normal((4, 8), seed=1, keys=keys, stream=1),
    ):
        assert not torch.isclose(base, other).any()
    assert not torch.isclose(base[0], base[1]).any()


@pytest.fixture
def process():
    return nj.ForwardProcess(nj.get_schedule("linear", 1000))


def test_sub_batch_gets_its_rows_of_the_full_batch(process):
    x0 = torch.randn(7, 3, 5, 3)  # 45 elements per sample: not a multiple of 4
    t = torch.tensor([0, 5, 999, 10, 400, 3, 77])
    keys = torch.stack([torch.arange(7) * 1000, torch.full((7,), 12)], dim=1)
    x_t, noise = process.q_sample(x0, t, seed=11, keys=keys)
    for i, j in [(0, 7), (2, 5), (6, 7), (0, 1)]:
        x_sub, noise_sub = process.q_sample(x0[i:j], t[i:j], seed=11, keys=keys[i:j])
        assert torch.equal(noise_sub, noise[i:j])
        assert torch.equal(x_sub, x_t[i:j])
    order = torch.tensor([6, 2, 0, 5, 1, 4, 3])
    _, shuffled = process.q_sample(x0[order], t[order], seed=11, keys=keys[order])
    assert torch.equal(shuffled, noise[order])


def test_noise_follows_the_logical_index_not_the_strides(process):
    x0 = torch.randn(4, 6, 5).transpose(1, 2)  # (4, 5, 6), not contiguous
    keys = torch.arange(4)
    _, noise = process.q_sample(x0, 3, seed=0, keys=keys)
    _, noise_contiguous = process.q_sample(x0.contiguous(), 3, seed=0, keys=keys)
    assert torch.equal(noise, noise_contiguous)
    assert torch.equal(noise, keyed_normal((4, 5, 6), seed=0, keys=keys))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_keyed_pair_is_consistent_in_any_dtype(process, dtype):
    x0 = torch.randn(3, 2, 7).to(dtype)
    t = torch.tensor([0, 500, 999])
    x_t, noise = process.q_sample(x0, t, seed=3, keys=torch.arange(3))
    assert x_t.dtype == noise.dtype == dtype
    assert torch.equal(noise, keyed_normal((3, 2, 7), seed=3, keys=torch.arange(3)).to(dtype))
    abar = process.schedule.alphas_cumprod[t].reshape(-1, 1, 1)
    expected = abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double()
    tolerance = 1e-12 if dtype == torch.float64 else 2e-2
    torch.testing.assert_close(x_t.double(), expected, rtol=tolerance, atol=tolerance)


def test_q_sample_from_takes_keyed_noise(process):
    x_s = torch.randn(3, 10)
    keys = torch.tensor([4, 5, 6])
    x_t, noise = process.q_sample_from(x_s, 10, 20, seed=9, keys=keys)
    assert torch.equal(noise, keyed_normal((3, 10), seed=9, keys=keys))
    x_again, _ = process.q_sample_from(x_s, 10, 20, noise=noise)
    assert torch.equal(x_t, x_again)


def test_counters_run_over_the_white_shape():
    process = nj.ForwardProcess(nj.get_schedule("linear", 10), noise=TwoWhiteDraws())
    keys = torch.tensor([1, 2])
    _, noise = process.q_sample(torch.zeros(2, 3, 3), 4, seed=5, keys=keys)
    white = keyed_normal((2, 2, 3, 3), seed=5, keys=keys)
    assert torch.equal(noise, (white[:, 0] + white[:, 1]) / math.sqrt(2))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seed": 1}, ValueError, "seed was given without keys"),
        ({"keys": torch.arange(2)}, ValueError, "keys was given without seed"),
        ({"seed": -1, "keys": torch.arange(2)}, ValueError, "seed must be an int in"),
        ({"seed": 2**64, "keys": torch.arange(2)}, ValueError, "seed must be an int in"),
        ({"seed": True, "keys": torch.arange(2)}, TypeError, "seed must be an int in"),
        ({"seed": 1.0, "keys": torch.arange(2)}, TypeError, "seed must be an int in"),
        ({"seed": 1, "keys": torch.zeros(2)}, TypeError, "keys must be an integer tensor"),
        ({"seed": 1, "keys": [0, 1]}, TypeError, "keys must be an integer tensor"),
        ({"seed": 1, "keys": torch.arange(3)}, ValueError, "keys has 3 rows"),
        ({"seed": 1, "keys": torch.zeros(2, 3, dtype=torch.int64)}, ValueError, r"\(B, 2\)"),
        ({"seed": 1, "keys": torch.tensor([0, -1])}, ValueError, r"in \[0, 9223372036854775807"),
        ({"seed": 1, "keys": torch.tensor([[0, 2**32], [0, 0]])}, ValueError, "4294967295"),
        ({"seed": 1, "keys": torch.arange(2), "noise": torch.zeros(2, 3)}, ValueError, "not both"),
    ],
)
def test_bad_seed_and_keys_are_refused(process, kwargs, error, message):
    x0 = torch.zeros(2, 3)
    with pytest.raises(error, match=message):
        process.q_sample(x0, 1, **kwargs)


def test_stream_is_checked():
    with pytest.raises(ValueError, match="stream must be an int"):
        keyed_normal((1, 4), seed=0, keys=torch.arange(1), stream=2**32)
    with pytest.raises(TypeError, match="stream must be an int"):
        keyed_normal((1, 4), seed=0, keys=torch.arange(1), stream=1.0)


def test_keys_are_not_mutated(process):
    keys = torch.tensor([[1, 2], [3, 4]], dtype=torch.int32)
    before = keys.clone()
    process.q_sample(torch.zeros(2, 5), 1, seed=1, keys=keys)
    assert torch.equal(keys, before) and keys.dtype == torch.int32


# ---- statistics: n = 64 samples x 4096 elements, keys 0..63, seed 2024 -------------------

N_SAMPLES, N_ELEMENTS = 64, 4096


@pytest.fixture(scope="module")
def draws():
    return keyed_normal((N_SAMPLES, N_ELEMENTS), seed=2024, keys=torch.arange(N_SAMPLES))


def test_keyed_noise_is_standard_normal(draws):
    assert stats.mean_pvalue(draws) > ALPHA
    assert stats.variance_pvalue(draws) > ALPHA
    assert stats.ks_normal(draws) > ALPHA


def test_wrong_variance_or_law_is_rejected_at_the_same_n(draws):
    assert stats.variance_pvalue(draws * math.sqrt(1.05)) < ALPHA
    # Uniform noise with unit variance: right mean and variance, wrong law.
    uniform = (uniform_from_bits(torch.randint(0, 2**32, draws.shape)) - 0.5) * math.sqrt(12)
    assert stats.ks_normal(uniform) < ALPHA


def _neighbour_pairs(z):
    """Pairs that share a Philox call or sit next to each other: within a Box-Muller pair
    (z0, z1), across the pairs of one call (z1, z2), across calls (z3 of g, z0 of g + 1),
    and the same element in samples with neighbouring keys."""
    groups = z.reshape(z.shape[0], -1, 4)
    return {
        "box-muller pair": (groups[..., 0], groups[..., 1]),
        "two pairs of a call": (groups[..., 1], groups[..., 2]),
        "neighbouring calls": (groups[:, :-1, 3], groups[:, 1:, 0]),
        "neighbouring keys": (z[:-1], z[1:]),
    }


def test_neighbours_are_uncorrelated(draws):
    # Under independence the product of a pair has mean 0 and variance 1 (CLT score).
    for name, (a, b) in _neighbour_pairs(draws).items():
        assert stats.mean_pvalue(a * b) > ALPHA / 4, name


def test_injected_correlation_is_detected_at_the_same_n(draws):
    rho = 0.03
    for name, (a, b) in _neighbour_pairs(draws).items():
        correlated = rho * a + math.sqrt(1 - rho**2) * b
        assert stats.mean_pvalue(a * correlated) < ALPHA / 4, name


def test_box_muller_of_known_uniforms():
    radius_u = torch.tensor([math.exp(-0.5), math.exp(-2.0)], dtype=torch.float32)
    angle_u = torch.tensor([0.0, 0.25], dtype=torch.float32)
    cos_part, sin_part = box_muller(radius_u, angle_u)
    torch.testing.assert_close(cos_part, torch.tensor([1.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin_part, torch.tensor([0.0, 2.0]), atol=1e-6, rtol=1e-6)


# ---- keys for a training loop ----------------------------------------------------------------


def test_training_keys_are_index_and_step_words():
    keys = rng.training_keys(torch.tensor([7, 0, 2**32 - 1]), 12)
    assert keys.dtype == torch.int64
    assert keys.tolist() == [[7, 12], [0, 12], [2**32 - 1, 12]]
    micro = rng.training_keys(torch.tensor([7]), 12, micro_step=3, micro_steps=4)
    assert micro.tolist() == [[7, 12 * 4 + 3]]  # the micro-batch counter of the run
    assert rng.training_keys(torch.arange(2), torch.tensor(5).numpy())[0, 1] == 5


def test_keying_by_position_gives_micro_batches_the_same_noise_and_the_check_says_so():
    """The bug of the old example: keys from torch.arange(batch) in each of two
    micro-batches of one step: different images, equal noise. Keys from the data set
    indices give distinct noise, and check_distinct_keys tells the two apart."""
    by_position = [rng.training_keys(torch.arange(4), 0) for _ in range(2)]
    noise = [keyed_normal((4, 3, 2, 2), seed=1, keys=k) for k in by_position]
    assert torch.equal(noise[0], noise[1])  # the defect itself
    with pytest.raises(ValueError, match=r"key \[0, 0\] is used by rows \[0, 4\] of 8"):
        rng.check_distinct_keys(torch.cat(by_position))
    by_index = [rng.training_keys(torch.arange(4) + 4 * m, 0) for m in range(2)]
    rng.check_distinct_keys(torch.cat(by_index))
    noise = [keyed_normal((4, 3, 2, 2), seed=1, keys=k) for k in by_index]
    assert not torch.isclose(noise[0], noise[1]).any()
    # one index twice in a step: micro_step keeps the two draws apart
    twice = [rng.training_keys(torch.tensor([9]), 0, micro_step=m, micro_steps=2) for m in (0, 1)]
    rng.check_distinct_keys(torch.cat(twice))
    with pytest.raises(ValueError, match="same noise"):
        rng.check_distinct_keys(torch.tensor([3, 5, 3]))  # (B,) keys too


def test_training_keys_refuse_what_does_not_fit_a_key_word():
    with pytest.raises(
        ValueError, match=r"indices must be integers in \[0, 2\^32\), got values in \[-1, 3\]"
    ):
        rng.training_keys(torch.tensor([-1, 3]), 0)
    with pytest.raises(ValueError, match="exceeds the 32-bit key word"):
        rng.training_keys(torch.arange(2), 2**31, micro_steps=2)
    with pytest.raises(ValueError, match="need 0 <= micro_step < micro_steps"):
        rng.training_keys(torch.arange(2), 0, micro_step=2, micro_steps=2)
    with pytest.raises(ValueError, match="step must be an int >= 0, got -1"):
        rng.training_keys(torch.arange(2), -1)
    with pytest.raises(TypeError, match="step must be an int"):
        rng.training_keys(torch.arange(2), 1.0)
    with pytest.raises(TypeError, match="indices must be an integer tensor"):
        rng.training_keys(torch.arange(2.0), 0)
    with pytest.raises(TypeError, match=r"shape \(B,\)"):
        rng.training_keys(torch.zeros(2, 2, dtype=torch.int64), 0)
