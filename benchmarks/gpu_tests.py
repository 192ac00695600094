"""GPU tests of the kernels (run by benchmarks/gpu_check.sh on a CUDA machine; not part of
the CPU suite): the CUDA kernels against the CPU reference, keys invariance, the fast
mode's error, the custom op under torch.compile(fullgraph=True) and in a CUDA graph, the
fused loss, and ForwardProcess's dispatch.

    python -m pytest benchmarks/gpu_tests.py -q -s      (-s shows the measured errors)
"""

import pytest
import torch

import noisejump as nj
from noisejump.kernels import backend, q_sample_keyed
from noisejump.kernels.mse import keyed_mse_fused, keyed_mse_reference
from noisejump.loss import keyed_mse

NORMAL_TOLERANCE = 2e-6  # the bound: |z_gpu - z_cpu| <= 2e-6 max(1, |z|)
CUDA = torch.device("cuda")
SCHEDULE = nj.get_schedule("linear", 1000)


@pytest.fixture(scope="module", autouse=True)
def need_cuda():
    if not torch.cuda.is_available():
        raise RuntimeError("benchmarks/gpu_tests.py needs a CUDA device")


def _inputs(shape, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=generator).to(dtype)
    t = torch.randint(0, 1000, (shape[0],), generator=generator)
    keys = torch.stack([torch.arange(shape[0]) * 3, torch.full((shape[0],), 11)], dim=1)
    signal, sigma = SCHEDULE.marginal(t, "cpu", torch.float32)
    return x0, t, keys, signal, sigma


def _relative_error(actual, expected):
    actual, expected = actual.double().cpu(), expected.double().cpu()
    return float(((actual - expected).abs() / expected.abs().clamp(min=1.0)).max())


@pytest.mark.parametrize("shape", [(3, 5, 7, 3), (2, 1, 1100), (8, 3, 64, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_kernel_equals_cpu_reference(shape, dtype):
    x0, _, keys, signal, sigma = _inputs(shape, dtype)
    x_ref, noise_ref = q_sample_keyed(x0, signal, sigma, seed=2**63 + 1, keys=keys)
    x_t, noise = q_sample_keyed(
        x0.to(CUDA), signal.to(CUDA), sigma.to(CUDA), seed=2**63 + 1, keys=keys.to(CUDA)
    )
    if dtype == torch.float32:
        assert _relative_error(noise, noise_ref) <= NORMAL_TOLERANCE
        torch.testing.assert_close(x_t.cpu(), x_ref, rtol=0, atol=1e-5)
    else:  # a float32 normal a few ulp apart may round either way: one short ulp
        ulp = torch.finfo(dtype).eps * noise_ref.float().abs() + 1e-6
        assert ((noise.cpu().float() - noise_ref.float()).abs() <= ulp).all()


def test_cuda_keys_invariance():
    x0, _, keys, signal, sigma = [v.to(CUDA) for v in _inputs((6, 3, 33, 17), torch.float32)]
    _, full = q_sample_keyed(x0, signal, sigma, seed=5, keys=keys)
    _, part = q_sample_keyed(x0[2:5], signal[2:5], sigma[2:5], seed=5, keys=keys[2:5])
    assert torch.equal(part, full[2:5])
    order = torch.tensor([5, 0, 4, 1, 3, 2], device=CUDA)
    _, shuffled = q_sample_keyed(x0[order], signal[order], sigma[order], seed=5, keys=keys[order])
    assert torch.equal(shuffled, full[order])


def test_fast_mode_error_is_small():
    x0, _, keys, signal, sigma = _inputs((16, 3, 64, 64), torch.float32)
    _, noise_ref = q_sample_keyed(x0, signal, sigma, seed=3, keys=keys)
    _, fast = q_sample_keyed(
        x0.to(CUDA), signal.to(CUDA), sigma.to(CUDA), seed=3, keys=keys.to(CUDA), fast=True
    )
    error = _relative_error(fast, noise_ref)
    print(f"\nfast mode: max |z_fast - z_ref| / max(1, |z|) = {error:.3g}")
    assert error < 1e-3


def test_custom_op_under_torch_compile_fullgraph_and_its_backward():
    x0, _, keys, signal, sigma = [v.to(CUDA) for v in _inputs((4, 3, 32, 32), torch.float32)]

    def noised(x):
        x_t, noise = q_sample_keyed(x, signal, sigma, seed=9, keys=keys)
        return x_t, noise

    compiled = torch.compile(noised, fullgraph=True)
    x = x0.clone().requires_grad_()
    x_t, noise = compiled(x)
    x_eager, noise_eager = noised(x0)
    assert torch.equal(noise, noise_eager)
    torch.testing.assert_close(x_t, x_eager, rtol=0, atol=1e-6)
    x_t.sum().backward()
    torch.testing.assert_close(x.grad, signal.reshape(-1, 1, 1, 1).expand_as(x), rtol=0, atol=0)


def test_custom_op_in_a_cuda_graph():
    x0, _, keys, signal, sigma = [v.to(CUDA) for v in _inputs((4, 3, 32, 32), torch.float32)]
    static_x0 = x0.clone()
    q_sample_keyed(static_x0, signal, sigma, seed=1, keys=keys)  # warm up (compiles)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_x_t, static_noise = q_sample_keyed(static_x0, signal, sigma, seed=1, keys=keys)
    static_x0.copy_(x0 * 2)
    graph.replay()
    x_t, noise = q_sample_keyed(x0 * 2, signal, sigma, seed=1, keys=keys)
    assert torch.equal(static_noise, noise) and torch.equal(static_x_t, x_t)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("target", ["epsilon", "v", "sample", "flow_velocity"])
def test_cuda_loss_equals_cpu_reference(target, per_sample):
    """Every target is the kernel's a e - b x0 ((a, b) = (signal, sigma) for v, (0, -1) for
    the sample, (1, 1) for the flow velocity); per-sample sums as well as the total."""
    x0, _, keys, signal, sigma = _inputs((4, 3, 40, 40), torch.float32)
    pred = torch.randn_like(x0)
    weight = torch.tensor([0.5, 1.0, 1.5, 2.0]) / pred.numel()
    words = keys.T.contiguous()
    one = torch.ones_like(signal)
    a, b = {"sample": (0 * one, -one), "flow_velocity": (one, one)}.get(target, (signal, sigma))
    target_x0 = None if target == "epsilon" else x0
    arguments = (pred, target_x0, a, b, None, weight, words, 77, 0, torch.float32)
    loss_ref, grad_ref = keyed_mse_reference(*arguments, per_sample=per_sample)
    on_gpu = [a.to(CUDA) if isinstance(a, torch.Tensor) else a for a in arguments]
    loss, grad = keyed_mse_fused(*on_gpu, per_sample=per_sample)
    torch.testing.assert_close(loss.cpu(), loss_ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad.cpu(), grad_ref, rtol=1e-4, atol=1e-9)


def test_forward_process_dispatches_cuda_to_the_kernel():
    process = nj.ForwardProcess(SCHEDULE)
    x0, t, keys, _, _ = _inputs((4, 3, 16, 16), torch.bfloat16)
    x_t, noise = process.q_sample(x0.to(CUDA), t.to(CUDA), seed=4, keys=keys.to(CUDA))
    with backend("torch"):
        x_cuda_torch, noise_cuda_torch = process.q_sample(
            x0.to(CUDA), t.to(CUDA), seed=4, keys=keys.to(CUDA)
        )
    _, noise_cpu = process.q_sample(x0, t, seed=4, keys=keys)
    ulp = torch.finfo(torch.bfloat16).eps * noise_cpu.float().abs() + 1e-6
    assert ((noise.cpu().float() - noise_cpu.float()).abs() <= ulp).all()
    assert ((noise_cuda_torch.cpu().float() - noise_cpu.float()).abs() <= ulp).all()
    pred = torch.zeros_like(x0, dtype=torch.float32, device=CUDA, requires_grad=True)
    keyed_mse(process, pred, t.to(CUDA), seed=4, keys=keys.to(CUDA), x0=x0.to(CUDA)).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
