"""torch.compile keeps every result bitwise (issue 9, item 1).

One compiled function (fullgraph, tensor t) covers isotropic noise, a correlated family
(pink: FFT), a diagonal family with per-element steps, per-frame steps with clean frames
and frame-correlated noise (the "frames" path: no host read), keyed_mse (v target with
min-SNR weights, a correlated family, per-element steps and weights; the sample target
with EDM's weighting, the flow velocity with cosmap, P2 per element with per-sample
losses), keyed_x_t, the
diffusers adapter's add_fresh_noise, a discrete and a continuous schedule; every output
must equal eager's bit for bit. Compiling costs seconds, so this is the one compile test
of the suite; the wider matrix (every family, dtypes, default and fullgraph modes) is
benchmarks/compile_check.py.

The bug this guards against: inductor fused the Philox rounds and multiplied the counters,
derived from torch.arange, in 32-bit index arithmetic, so that from counter group 3 on the
products overflowed and compiled keyed noise differed from eager by up to 5.2; and it
contracted a x + b e into fused multiply-adds, which round once instead of twice.
"""

import pytest
import torch
from diffusers import DDPMScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

import noisejump as nj
from noisejump.continuous import FlowMatching
from noisejump.integrations.diffusers import DiffusersAdapter
from noisejump.loss import keyed_mse, keyed_x_t
from noisejump.noise import get_noise
from noisejump.objective import get_weighting

pytestmark = pytest.mark.slow  # one compile with its backward: ~15-40 s cold


def _processes():
    schedule = nj.get_schedule("linear", 1000)
    variance = torch.tensor([0.5, 1.0, 2.0]).reshape(3, 1, 1)
    return {
        "isotropic": nj.ForwardProcess(schedule),
        "diagonal": nj.ForwardProcess(schedule, noise=get_noise("diagonal", variance=variance)),
        "pink": nj.ForwardProcess(schedule, noise="pink"),
        "frames": nj.ForwardProcess(schedule, noise=get_noise("frames-progressive", rho=0.9)),
        "flow": nj.ForwardProcess(FlowMatching()),
    }


def test_one_compiled_training_function_equals_eager_bitwise():
    processes = _processes()
    adapter = DiffusersAdapter(DDPMScheduler(num_train_timesteps=1000))
    euler = DiffusersAdapter(EulerDiscreteScheduler(num_train_timesteps=1000))
    flow_adapter = DiffusersAdapter(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8, generator=generator)
    model_output = torch.randn(4, 3, 8, 8, generator=generator)
    t = torch.tensor([0, 10, 500, 999])
    t_element = torch.randint(0, 1000, (4, 3, 1, 1), generator=generator)
    t_element[:, 0] = -1  # a clean context frame
    frame_weights = torch.rand(4, 3, 1, 1, generator=generator)
    t_flow = torch.rand(4, generator=generator, dtype=torch.float64)
    keys = torch.arange(4) + 2**40  # keys beyond 32 bits: both key words in play
    log_weights = torch.zeros(4)
    edm, cosmap, p2 = (get_weighting(name) for name in ("edm", "cosmap", "p2"))

    def step(x0, model_output, t, t_element, t_flow, keys, log_weights):
        names = ("isotropic", "diagonal", "pink", "flow", "frames")
        iso, diag, pink, flow, frames = (processes[n] for n in names)
        return {
            "isotropic": iso.q_sample(x0, t, seed=7, keys=keys),
            "pink": pink.q_sample(x0, t, seed=7, keys=keys),
            "diagonal per element": diag.q_sample(x0, t_element, seed=7, keys=keys),
            "frames per frame": frames.q_sample(x0, t_element, seed=7, keys=keys),
            "flow": flow.q_sample(x0, t_flow, seed=7, keys=keys),
            "keyed_mse v min-snr": keyed_mse(
                iso, model_output, t, seed=7, keys=keys, prediction="v", x0=x0, min_snr_gamma=5.0
            ),
            "keyed_mse learned weights": keyed_mse(
                diag,
                model_output,
                t,
                seed=7,
                keys=keys,
                prediction="v",
                x0=x0,
                weights=torch.exp(-log_weights),
            ),  # fmt: skip
            "keyed_mse pink": keyed_mse(pink, model_output, t, seed=7, keys=keys),
            "keyed_mse per element": keyed_mse(
                diag, model_output, t_element, seed=7, keys=keys, weights=frame_weights
            ),
            "keyed_mse sample edm": keyed_mse(
                iso, model_output, t, seed=7, keys=keys, prediction="sample", x0=x0, weighting=edm
            ),
            "keyed_mse flow velocity cosmap": keyed_mse(
                flow,
                model_output,
                t_flow,
                seed=7,
                keys=keys,
                prediction="flow_velocity",
                x0=x0,
                weighting=cosmap,
            ),  # fmt: skip
            "keyed_mse p2 per element per sample": keyed_mse(
                diag, model_output, t_element, seed=7, keys=keys, weighting=p2, reduction="none"
            ),
            "keyed_x_t": keyed_x_t(diag, x0, t, seed=7, keys=keys),
            "add_fresh_noise": adapter.add_fresh_noise(x0, t, seed=7, keys=keys),
            # no host read anywhere: a 0-d step, float timesteps, the epsilon inverse
            "0-d step": iso.q_sample(x0, t[3], seed=7, keys=keys),
            "euler add_noise": euler.add_noise(x0, model_output, t.double()),
            "flow scale_noise": flow_adapter.scale_noise(x0, t.double(), model_output),
            "predict_x0": iso.predict_x0(x0, model_output, t),
        }

    def leaves():  # fresh inputs that need gradients: x0 from an encoder, learned weights
        return [v.clone().requires_grad_() for v in (x0, model_output, log_weights)]

    eager_leaves, compiled_leaves = leaves(), leaves()
    eager = step(eager_leaves[0], eager_leaves[1], t, t_element, t_flow, keys, eager_leaves[2])
    compiled_step = torch.compile(step, fullgraph=True)
    compiled = compiled_step(
        compiled_leaves[0], compiled_leaves[1], t, t_element, t_flow, keys, compiled_leaves[2]
    )
    for name, expected in eager.items():
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = compiled[name] if isinstance(compiled[name], tuple) else (compiled[name],)
        for e, g in zip(expected, got, strict=True):
            assert torch.equal(e, g), f"{name}: compiled differs by {(e - g).abs().max()}"
    # Gradients reach x0, the model output and the learned weights, compiled as eager (the
    # backward passes are compiled code: equal to float32 rounding).
    for results in (eager, compiled):
        total = sum(
            v.float().sum() for r in results.values() for v in (r if isinstance(r, tuple) else (r,))
        )
        total.backward()
    for e, c in zip(eager_leaves, compiled_leaves, strict=True):
        assert e.grad is not None and e.grad.abs().sum() > 0
        torch.testing.assert_close(c.grad, e.grad, rtol=1e-5, atol=1e-6)
    # The range check lives inside the graph (no host read, no graph break) and still fires.
    with pytest.raises(RuntimeError, match="t out of range"):
        compiled_step(x0, model_output, t + 1000, t_element, t_flow, keys, log_weights)
