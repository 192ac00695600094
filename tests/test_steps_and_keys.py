"""Steps and keys as a hostile user gives them (issue 9, item 3): every integer dtype, the
wrong device, meta tensors, 64-bit unsigned keys; and tables a caller cannot corrupt."""

import pytest
import torch

import noisejump as nj
from noisejump import rng
from noisejump.continuous import VPSDE
from noisejump.loss import keyed_mse
from noisejump.schedules import DiscreteSigmas

SCHEDULE = nj.get_schedule("linear", 1000)
PROCESS = nj.ForwardProcess(SCHEDULE)
X0 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "dtype",
    [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.uint32, torch.uint64],
)
def test_steps_of_every_integer_dtype_give_the_int64_answer(dtype):
    t = torch.tensor([0, 7, 120])
    expected = PROCESS.q_sample(X0, t, seed=1, keys=torch.arange(3))
    got = PROCESS.q_sample(X0, t.to(dtype), seed=1, keys=torch.arange(3))
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_unsigned_steps_out_of_range_name_their_real_values(dtype):
    with pytest.raises(
        ValueError, match=r"t must be integers in \[-1, 999\], got values in \[5, 1000\]"
    ):
        PROCESS.q_sample(X0, torch.tensor([5, 1000, 7]).to(dtype))


def test_uint64_step_above_2_63_is_refused_with_its_value():
    t = torch.tensor([1, 2**63 + 5, 3], dtype=torch.uint64)
    with pytest.raises(ValueError, match=str(2**63 + 5)):
        PROCESS.q_sample(X0, t)


def test_meta_steps_with_a_cpu_sample_are_refused():
    with pytest.raises(ValueError, match="t is on meta but x0 is on cpu"):
        PROCESS.q_sample(X0, torch.zeros(3, dtype=torch.int64, device="meta"))
    with pytest.raises(ValueError, match="t is on meta"):
        nj.ForwardProcess(VPSDE()).q_sample(X0, torch.zeros(3, device="meta"))


def test_meta_keys_with_a_cpu_sample_are_refused():
    with pytest.raises(ValueError, match="keys is on meta but the sample is on cpu"):
        PROCESS.q_sample(X0, 5, seed=1, keys=torch.zeros(3, dtype=torch.int64, device="meta"))


def test_a_meta_sample_with_meta_steps_is_shape_only():
    x0 = torch.empty(3, 2, 4, 4, device="meta")
    x_t, noise = PROCESS.q_sample(x0, torch.zeros(3, dtype=torch.int64, device="meta"), noise=x0)
    assert x_t.device.type == "meta" and x_t.shape == x0.shape


def test_uint64_keys_use_all_64_bits():
    """A (B,) key K is the word pair (K mod 2^32, K >> 32), for uint64 up to 2^64 - 1."""
    big = torch.tensor([2**64 - 1, 2**63 + 12345], dtype=torch.uint64)
    words = torch.tensor([[2**32 - 1, 2**32 - 1], [12345, 2**31]])
    assert torch.equal(
        rng.keyed_normal((2, 10), seed=3, keys=big), rng.keyed_normal((2, 10), seed=3, keys=words)
    )


def test_int64_keys_out_of_range_quote_the_values_given():
    with pytest.raises(
        ValueError,
        match=r"keys must be integers in \[0, 9223372036854775807\], got values in \[-4, 2\]",
    ):
        rng.keyed_normal((2, 4), seed=1, keys=torch.tensor([2, -4]))
    with pytest.raises(ValueError, match=r"\[0, 4294967295\], got values in \[0, 4294967296\]"):
        rng.keyed_normal((1, 4), seed=1, keys=torch.tensor([[0, 2**32]]))


@pytest.mark.parametrize(
    "schedule", [SCHEDULE, DiscreteSigmas(SCHEDULE), VPSDE()], ids=["discrete", "sigmas", "vp"]
)
def test_marginal_returns_fresh_tensors(schedule):
    continuous = getattr(schedule, "is_continuous", False)
    for t in (5, torch.tensor(5), torch.tensor([1, 2, 3])):
        t = t / 10 if continuous else t
        signal, sigma = schedule.marginal(t, "cpu", torch.float32)
        before = schedule.marginal(t, "cpu", torch.float32)
        signal.add_(1)
        sigma.mul_(0)
        after = schedule.marginal(t, "cpu", torch.float32)
        assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    x_t, _ = PROCESS.q_sample(X0, 5, noise=torch.zeros_like(X0))
    assert torch.allclose(x_t, SCHEDULE.sqrt_alphas_cumprod[5].float() * X0)


def test_numpy_seed_and_keys_work_as_torch_ones():
    import numpy as np

    expected = rng.keyed_normal((2, 6), seed=5, keys=torch.tensor([3, 4]))
    got = rng.keyed_normal((2, 6), seed=np.uint64(5), keys=np.array([3, 4]))
    assert torch.equal(expected, got)


@pytest.mark.parametrize("which", ["model_output", "x0"])
def test_keyed_mse_refuses_float8(which):
    good = torch.zeros(3, 2, 4, 4)
    bad = good.to(torch.float8_e4m3fn)
    arguments = {"model_output": good, "x0": good, which: bad}
    with pytest.raises(TypeError, match=f"{which} must be a floating tensor.*float8"):
        keyed_mse(
            PROCESS, arguments["model_output"], 5, seed=1, keys=torch.arange(3), x0=arguments["x0"]
        )


@pytest.mark.parametrize("t", [torch.tensor([-1]), torch.tensor([1000]), torch.tensor([-1000])])
def test_min_snr_weights_refuse_steps_out_of_range(t):
    from noisejump.loss import min_snr_weights

    with pytest.raises(ValueError, match=r"t must be integers in \[0, 999\]"):
        min_snr_weights(SCHEDULE, t, 5.0)


def test_min_snr_weights_of_an_int_step_and_float_steps():
    from noisejump.loss import min_snr_weights

    assert torch.equal(
        min_snr_weights(SCHEDULE, 5, 5.0), min_snr_weights(SCHEDULE, torch.tensor(5), 5.0)
    )
    with pytest.raises(TypeError, match="floating t belongs to a continuous-time process"):
        min_snr_weights(SCHEDULE, torch.tensor([0.5]), 5.0)


def test_uint64_key_words_and_indices_name_their_real_values():
    words = torch.tensor([[2**63, 0], [1, 1]], dtype=torch.uint64)
    with pytest.raises(ValueError, match=str(2**63)):
        PROCESS.q_sample(X0[:2], 5, seed=1, keys=words)
    with pytest.raises(ValueError, match=str(2**63 + 1)):
        rng.training_keys(torch.tensor([2**63 + 1], dtype=torch.uint64), 0)
    import numpy as np

    assert torch.equal(
        rng.training_keys(np.array([1, 2]), 3), rng.training_keys(torch.tensor([1, 2]), 3)
    )


def test_public_entry_points_refuse_bad_arguments_clearly():
    from noisejump.integrations.diffusers import DiffusersAdapter, from_diffusers

    cases = [
        (lambda: nj.ForwardProcess("linear"), TypeError, r"get_schedule\('linear'\)"),
        (lambda: nj.ForwardProcess(None), TypeError, "schedule must be a noisejump schedule"),
        (
            lambda: nj.ForwardProcess(SCHEDULE, validate="no"),
            TypeError,
            "validate must be True or False",
        ),
        (lambda: nj.Schedule.from_betas("abc"), TypeError, "betas must be a 1-D sequence"),
        (
            lambda: rng.keyed_normal((2, -3), seed=1, keys=torch.arange(2)),
            ValueError,
            "shape entries",
        ),
        (
            lambda: rng.keyed_normal((2, 2.5), seed=1, keys=torch.arange(2)),
            TypeError,
            "shape entries",
        ),
        (
            lambda: rng.keyed_normal((2, 3), seed=1, keys=torch.arange(2), device="gpu"),
            ValueError,
            "device must be",
        ),
        (
            lambda: rng.check_distinct_keys(torch.zeros(3, 3, dtype=torch.int64)),
            TypeError,
            r"\(B, 2\)",
        ),
        (lambda: rng.check_distinct_keys(torch.zeros(3)), TypeError, "integer tensor"),
        (lambda: DiffusersAdapter(DDPM()).alphas_cumprod("gpu"), ValueError, "device must be"),
        (
            lambda: from_diffusers({"_class_name": "DDPMScheduler", "beta_start": "x"}),
            ValueError,
            "'beta_start' must be a number",
        ),
        (
            lambda: keyed_mse(PROCESS, torch.zeros(()), 5, seed=1, keys=torch.arange(1)),
            ValueError,
            "batch dimension",
        ),
        (
            lambda: keyed_mse(PROCESS, torch.zeros(0, 2), 5, seed=1, keys=torch.arange(0)),
            ValueError,
            "empty",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    rng.check_distinct_keys(torch.zeros(0, dtype=torch.int64))  # nothing to compare: fine


def DDPM():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000)


def test_keyed_mse_refuses_one_dimensional_data_for_a_two_dimensional_family():
    pink = nj.ForwardProcess(SCHEDULE, noise="pink")
    with pytest.raises(ValueError, match="not read as H x W"):
        keyed_mse(pink, torch.randn(2, 3, 16), 5, seed=1, keys=torch.arange(2))


def test_numpy_times_work_for_continuous_schedules():
    import numpy as np

    process = nj.ForwardProcess(VPSDE())
    for given, same in [
        (np.int64(1), 1),
        (np.float32(0.5), 0.5),
        (np.array([0.5, 0.7, 0.2]), torch.tensor([0.5, 0.7, 0.2], dtype=torch.float64)),
    ]:
        a = process.q_sample(X0, given, noise=torch.zeros_like(X0))[0]
        b = process.q_sample(X0, same, noise=torch.zeros_like(X0))[0]
        assert torch.equal(a, b)
