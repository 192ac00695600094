"""The Triton kernels under Triton's CPU interpreter, on tiny shapes that are not block
multiples: equality with the torch reference, keys invariance, block-size independence,
the custom op's registration and backward, and the backend switch.

Not collected by itself: ``test_kernels.py`` runs this file in a fresh process with
TRITON_INTERPRET=1, which must be set before triton is first imported (triton builds its
own library functions, such as tl.philox, for the interpreter or not at import time).
"""

import os

import pytest
import torch
from noise_families import PerChannel

import noisejump as nj
import noisejump.noise
from noisejump.kernels import backend, get_backend, q_sample, q_sample_keyed, set_backend
from noisejump.kernels.mse import keyed_mse_fused, keyed_mse_reference
from noisejump.loss import keyed_mse, keyed_x_t
from noisejump.rng import keyed_normal

# The normals of two implementations agree within this (transcendentals round differently).
NORMAL_TOLERANCE = 2e-6


@pytest.fixture(scope="module", autouse=True)
def interpreter():
    """The kernels for CPU tensors, in the interpreter."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("run through tests/test_kernels.py (it sets TRITON_INTERPRET=1)")
    with backend("triton"):
        yield


SCHEDULE = nj.get_schedule("linear", 1000)


def _coefficients(t):
    signal, sigma = SCHEDULE.marginal(t, "cpu", torch.float64)
    return signal.float(), sigma.float()


def assert_normals_close(actual, expected):
    actual, expected = actual.double(), expected.double()
    bound = NORMAL_TOLERANCE * expected.abs().clamp(min=1.0)
    assert ((actual - expected).abs() <= bound).all()


SHAPE = (3, 5, 7, 3)  # 105 elements per sample: one partial block
LONG = (2, 1, 1100)  # two blocks of 1024 elements, the second partial


@pytest.mark.parametrize("shape", [SHAPE, LONG])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_kernel_equals_reference(shape, dtype):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=generator).to(dtype)
    keys = torch.tensor([[7, 1], [0, 2**32 - 1], [5, 5]])[: shape[0]]
    signal, sigma = _coefficients(torch.tensor([0, 999, 400])[: shape[0]])
    x_t, noise = q_sample_keyed(x0, signal, sigma, seed=2**63 + 5, keys=keys, stream=3)
    with backend("torch"):
        x_ref, noise_ref = q_sample_keyed(x0, signal, sigma, seed=2**63 + 5, keys=keys, stream=3)
    assert x_t.dtype == noise.dtype == dtype and x_t.shape == noise.shape == shape
    # x_t is the float32 closed form of the noise as stored, rounded once to x0's dtype.
    coefficient_shape = (-1,) + (1,) * (x0.dim() - 1)
    closed_form = signal.reshape(coefficient_shape) * x0.float()
    closed_form += sigma.reshape(coefficient_shape) * noise.float()
    rounding = torch.finfo(dtype).eps * closed_form.abs() + 1e-6
    assert ((x_t.float() - closed_form).abs() <= rounding).all()
    if dtype == torch.float32:
        assert_normals_close(noise, noise_ref)
        torch.testing.assert_close(x_t, x_ref, rtol=0, atol=1e-5)
    else:  # the same float32 normal may round either way to a short dtype: one ulp apart
        ulp = torch.finfo(dtype).eps * noise_ref.float().abs() + 1e-6
        assert ((noise.float() - noise_ref.float()).abs() <= ulp).all()


def test_kernel_noise_is_keyed_per_sample():
    x0 = torch.zeros(5, 3, 11)
    keys = torch.arange(5) * 17
    signal, sigma = _coefficients(torch.tensor([3, 4, 5, 6, 7]))
    _, full = q_sample_keyed(x0, signal, sigma, seed=1, keys=keys)
    for i, j in [(1, 4), (4, 5)]:
        _, part = q_sample_keyed(x0[i:j], signal[i:j], sigma[i:j], seed=1, keys=keys[i:j])
        assert torch.equal(part, full[i:j])
    order = torch.tensor([4, 0, 3, 1, 2])
    _, shuffled = q_sample_keyed(x0[order], signal[order], sigma[order], seed=1, keys=keys[order])
    assert torch.equal(shuffled, full[order])


def test_kernel_noise_does_not_depend_on_the_block_size(monkeypatch):
    x0 = torch.randn(2, 700)
    signal, sigma = _coefficients(torch.tensor([10, 20]))
    reference = q_sample_keyed(x0, signal, sigma, seed=9, keys=torch.arange(2))
    monkeypatch.setattr(q_sample, "BLOCK", 32)
    smaller = q_sample_keyed(x0, signal, sigma, seed=9, keys=torch.arange(2))
    assert torch.equal(smaller[0], reference[0]) and torch.equal(smaller[1], reference[1])


def test_kernel_without_noise_writes_the_same_x_t():
    x0 = torch.randn(2, 3, 9)
    signal, sigma = _coefficients(torch.tensor([0, 500]))
    x_t, noise = q_sample_keyed(x0, signal, sigma, seed=4, keys=torch.arange(2))
    x_only, none = q_sample_keyed(
        x0, signal, sigma, seed=4, keys=torch.arange(2), store_noise=False
    )
    assert none is None and torch.equal(x_only, x_t)


def test_diagonal_scale_multiplies_the_keyed_noise():
    x0 = torch.randn(2, 3, 5)
    scale = torch.linspace(0.1, 2.0, 15).reshape(3, 5)
    signal, sigma = _coefficients(torch.tensor([100, 200]))
    _, noise = q_sample_keyed(x0, signal, sigma, seed=2, keys=torch.arange(2), scale=scale)
    assert_normals_close(noise, scale * keyed_normal((2, 3, 5), seed=2, keys=torch.arange(2)))


def test_forward_process_takes_the_kernel_when_forced():
    process = nj.ForwardProcess(nj.get_schedule("cosine", 1000))
    x0 = torch.randn(4, 2, 13)
    t, keys = torch.tensor([0, 1, 998, 999]), torch.arange(4) + 100
    x_t, noise = process.q_sample(x0, t, seed=77, keys=keys)
    with backend("torch"):
        x_ref, noise_ref = process.q_sample(x0, t, seed=77, keys=keys)
    assert_normals_close(noise, noise_ref)
    torch.testing.assert_close(x_t, x_ref, rtol=0, atol=1e-5)


def test_forward_process_passes_a_diagonal_family_s_scale_to_the_kernel():
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000), noise=PerChannel())
    x0, t, keys = torch.randn(2, 3, 4, 5), torch.tensor([3, 700]), torch.arange(2)
    x_t, noise = process.q_sample(x0, t, seed=6, keys=keys)
    with backend("torch"):
        x_ref, noise_ref = process.q_sample(x0, t, seed=6, keys=keys)
    assert_normals_close(noise, noise_ref)
    torch.testing.assert_close(x_t, x_ref, rtol=0, atol=1e-5)


def test_keyed_x_t_takes_the_kernel_without_noise():
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000))
    x0, t, keys = torch.randn(3, 2, 9), torch.tensor([0, 50, 999]), torch.arange(3)
    x_t = keyed_x_t(process, x0, t, seed=12, keys=keys)
    with backend("torch"):
        x_ref, _ = process.q_sample(x0, t, seed=12, keys=keys)
    torch.testing.assert_close(x_t, x_ref, rtol=0, atol=1e-5)


def test_custom_op_backward_is_signal():
    x0 = torch.randn(3, 4, 5, requires_grad=True)
    signal, sigma = _coefficients(torch.tensor([0, 300, 999]))
    x_t, _ = q_sample_keyed(x0, signal, sigma, seed=1, keys=torch.arange(3))
    grad_out = torch.randn_like(x_t)
    x_t.backward(grad_out)
    torch.testing.assert_close(x0.grad, grad_out * signal.reshape(-1, 1, 1), rtol=0, atol=0)


def test_custom_op_passes_opcheck():
    # Schema, fake (meta) kernel and autograd registration, on the torch reference path.
    x0 = torch.randn(2, 6, requires_grad=True)
    signal, sigma = _coefficients(torch.tensor([5, 6]))
    words = torch.tensor([[1, 2], [0, 0]])
    with backend("torch"):
        for store_noise in (True, False):
            torch.library.opcheck(
                torch.ops.noisejump.q_sample_keyed.default,
                (x0, signal, sigma, None, None, words, 3, 0, 0, 1, 6, [], store_noise, False),
                test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
            )


@pytest.mark.parametrize("v_target", [False, True])
@pytest.mark.parametrize(
    ("pred_dtype", "noise_dtype"),
    [
        (torch.float32, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.bfloat16),
    ],
)
def test_loss_kernel_regenerates_the_noise_of_the_q_sample_kernel(
    v_target, pred_dtype, noise_dtype
):
    generator = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 1030, generator=generator).to(pred_dtype)
    x0 = torch.randn(3, 1030, generator=generator) if v_target else None
    signal, sigma = _coefficients(torch.tensor([0, 10, 999]))
    weight = torch.tensor([0.5, 1.0, 2.0]) / pred.numel()
    words = torch.tensor([[4, 5, 6], [0, 0, 1]])
    scale = torch.rand(1030, generator=generator) + 0.5
    # The noise as the q_sample kernel stores it. (The interpreter truncates to bfloat16
    # where a GPU rounds to nearest, so the reference is the kernel's own rounding.)
    zeros = torch.zeros(3, 1030, dtype=noise_dtype)
    _, noise = q_sample_keyed(zeros, signal, sigma, seed=123, keys=words.T, scale=scale)
    target = noise.float()
    if v_target:
        target = signal.reshape(-1, 1) * target - sigma.reshape(-1, 1) * x0
    error = pred.float() - target
    loss, grad = keyed_mse_fused(pred, x0, signal, sigma, scale, weight, words, 123, 0, noise_dtype)
    assert loss.dtype == torch.float32 and grad.dtype == pred_dtype
    torch.testing.assert_close(loss, (weight.reshape(-1, 1) * error**2).sum(), rtol=1e-5, atol=0)
    exact_grad = 2 * weight.reshape(-1, 1) * error
    rounding = torch.finfo(pred_dtype).eps * exact_grad.abs() + 1e-12
    assert ((grad.float() - exact_grad).abs() <= rounding).all()
    if noise_dtype == torch.float32:  # no rounding to a short dtype: the torch reference too
        arguments = (pred, x0, signal, sigma, scale, weight, words, 123, 0, noise_dtype)
        loss_ref, grad_ref = keyed_mse_reference(*arguments)
        torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=0)
        # |e| <= 5.77 and scale < 1.5: the normals' tolerance moves grad by at most this
        normals = 2 * weight.max() * NORMAL_TOLERANCE * 9
        bound = torch.finfo(pred_dtype).eps * grad_ref.float().abs() + normals
        assert ((grad.float() - grad_ref.float()).abs() <= bound).all()


@pytest.mark.parametrize("target", ["sample", "flow_velocity"])
def test_loss_kernel_serves_every_target_and_per_sample_sums(target):
    """The kernel's v branch is the general target a e - b x0: the sample (a = 0, b = -1)
    and the flow velocity (a = b = 1) with no kernel of their own; per-sample sums too."""
    generator = torch.Generator().manual_seed(2)
    pred, x0 = (torch.randn(3, 1030, generator=generator) for _ in range(2))
    a = torch.zeros(3) if target == "sample" else torch.ones(3)
    b = -torch.ones(3) if target == "sample" else torch.ones(3)
    weight = torch.tensor([0.5, 1.0, 2.0]) / pred.numel()
    words = torch.tensor([[4, 5, 6], [0, 0, 1]])
    arguments = (pred, x0, a, b, None, weight, words, 123, 0, torch.float32)
    _, noise = q_sample_keyed(torch.zeros(3, 1030), a, a, seed=123, keys=words.T)
    goal = x0 if target == "sample" else noise - x0
    for per_sample in (False, True):
        loss, grad = keyed_mse_fused(*arguments, per_sample=per_sample)
        squares = weight.reshape(-1, 1) * (pred - goal) ** 2
        expected = squares.sum(1) if per_sample else squares.sum()
        assert loss.shape == expected.shape
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)
        with backend("torch"):
            loss_ref, grad_ref = keyed_mse_reference(*arguments, per_sample=per_sample)
        torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=0)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-9)


# ---- sequences (issue 12): per-frame coefficients, clean frames, shards ----------------------

CLIP = (3, 5, 2, 7, 11)  # (B, F, C, H, W): 154 elements per frame, 770 per sample


def _clip_case():
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(CLIP, generator=generator)
    t = torch.randint(0, 1000, (3, 5, 1, 1, 1), generator=generator)
    t[:, 1] = -1  # a clean frame
    return x0, t


def test_kernel_takes_per_frame_steps_and_clean_frames():
    process = nj.ForwardProcess(SCHEDULE)
    x0, t = _clip_case()
    keys = torch.arange(3) + 40
    x_t, noise = process.q_sample(x0, t, seed=8, keys=keys)
    with backend("torch"):
        x_ref, noise_ref = process.q_sample(x0, t, seed=8, keys=keys)
    assert torch.equal(x_t[:, 1], x0[:, 1]) and not noise[:, 1].any()  # exactly the data
    assert_normals_close(noise, noise_ref)
    torch.testing.assert_close(x_t, x_ref, rtol=0, atol=1e-5)
    # one coefficient per frame reaches every element of its frame
    signal, sigma = SCHEDULE.marginal(t, "cpu", torch.float32)
    torch.testing.assert_close(x_t, signal * x0 + sigma * noise, rtol=0, atol=1e-5)


def test_loss_kernel_takes_per_frame_weights():
    variance = torch.tensor([0.5, 1.0, 2.0]).reshape(3, 1)  # per channel, event axis 1
    process = nj.ForwardProcess(SCHEDULE, noise=nj.noise.get_noise("diagonal", variance=variance))
    generator = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, 5, 3, 37, generator=generator)
    t = torch.randint(0, 1000, (3, 5, 1, 1), generator=generator)
    t[:, 1] = -1
    output = torch.randn(x0.shape, generator=generator)
    weights = torch.rand(3, 5, 1, 1, generator=torch.Generator().manual_seed(5))
    kwargs = dict(seed=3, keys=torch.arange(3), weights=weights, prediction="v", x0=x0)
    pred = output.clone().requires_grad_()
    loss = keyed_mse(process, pred, t, **kwargs)
    loss.backward()
    with backend("torch"):
        ref = output.clone().requires_grad_()
        loss_ref = keyed_mse(process, ref, t, **kwargs)
        loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(pred.grad, ref.grad, rtol=0, atol=1e-6)
    assert not pred.grad[:, 1].any()  # the clean frame adds nothing


@pytest.mark.parametrize("axis", [0, 2])  # frames; channels: runs off group boundaries
def test_kernel_shards_are_slices_of_the_unsharded_kernel(axis):
    process = nj.ForwardProcess(SCHEDULE)
    x0, t = _clip_case()
    keys = torch.arange(3)
    full_x_t, full_noise = process.q_sample(x0, t, seed=2, keys=keys)
    size = CLIP[axis + 1]
    output = torch.randn(CLIP, generator=torch.Generator().manual_seed(6))
    full = output.clone().requires_grad_()
    keyed_mse(process, full, t, seed=2, keys=keys).backward()
    pieces, grads = [], []
    for start, stop in [(0, 1), (1, size)]:
        local = t.narrow(1, start, stop - start) if axis == 0 else t
        shard = (axis, start, stop, size)
        piece = x0.narrow(axis + 1, start, stop - start)
        pieces.append(process.q_sample(piece, local, seed=2, keys=keys, shard=shard))
        pred = output.narrow(axis + 1, start, stop - start).clone().requires_grad_()
        keyed_mse(process, pred, local, seed=2, keys=keys, shard=shard).backward()
        grads.append(pred.grad)
    assert torch.equal(torch.cat([p[0] for p in pieces], axis + 1), full_x_t)
    assert torch.equal(torch.cat([p[1] for p in pieces], axis + 1), full_noise)
    assert torch.equal(torch.cat(grads, axis + 1), full.grad)


def test_backend_switch():
    assert get_backend() == "triton"
    with backend("torch"):
        assert get_backend() == "torch"
    assert get_backend() == "triton"
    with pytest.raises(ValueError, match=r"backend must be one of .*'fast'"):
        set_backend("fast")


def test_backend_from_the_environment(monkeypatch):
    monkeypatch.setenv("NOISEJUMP_BACKEND", "torch")
    set_backend(None)
    try:
        assert get_backend() == "torch"
        monkeypatch.setenv("NOISEJUMP_BACKEND", "cuda")
        with pytest.raises(ValueError, match="'cuda'"):
            get_backend()
    finally:
        set_backend("triton")  # the module fixture's choice; it restores its own on exit
