"""noisejump against the real diffusers schedulers.

float32: the adapter's outputs equal diffusers' within |a - b| <= 1e-5 + 1e-5 |b| (the
foundation's float32 tolerance, relative for the "sigma" schedulers whose sigma_T reaches
1e2..1e4). bfloat16: on the same bf16 inputs, the adapter is closer to the float64 formula
than diffusers, which casts alphas_cumprod to bf16 before taking square roots.
"""

import inspect
import json
import math

import diffusers  # the test extra installs it: a missing diffusers must fail, not skip
import pytest
import torch

from noisejump.integrations.diffusers import SUPPORTED, DiffusersAdapter, from_diffusers

# diffusers' numpy calls warn under numpy 2 (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
F64 = torch.float64
T = 1000
BETAS = {
    "linear": {},
    "scaled_linear": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    "cosine": {"beta_schedule": "squaredcos_cap_v2"},
    "sigmoid": {"beta_schedule": "sigmoid"},
    "zero_snr": {"rescale_betas_zero_snr": True},
    "trained": {"trained_betas": torch.linspace(2e-4, 0.03, T).tolist()},
}
# diffusers' DPM-Solver/DEIS/UniPC add_noise is meant for img2img after set_timesteps: in
# the training state it reads sigmas in reverse step order, so their reference is DDPM's
# add_noise for the same config (the process they are trained with).
REVERSED_IN_TRAINING = {
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
}


def configurations():
    """Every (scheduler, beta config) that diffusers accepts and noisejump covers."""
    cases = []
    for kind in ("vp", "sigma"):
        for name in SUPPORTED[kind]:
            accepted = set(inspect.signature(getattr(diffusers, name)).parameters)
            for label, config in BETAS.items():
                if set(config) - accepted or (kind == "sigma" and label == "zero_snr"):
                    continue
                if label == "sigmoid" and name not in ("DDPMScheduler", "DDPMParallelScheduler"):
                    continue  # only DDPM-type schedulers accept the sigmoid betas
                if label == "trained" and name not in ("DDPMScheduler", "EulerDiscreteScheduler"):
                    continue  # the same code path in every scheduler: two of them suffice
                cases.append(pytest.param(name, config, id=f"{name}-{label}"))
    return cases


def data(dtype=torch.float32, n=T, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 2, 4, 4, generator=generator).to(dtype)
    noise = torch.randn(n, 2, 4, 4, generator=generator).to(dtype)
    return x0, noise


def reference_add_noise(name, config, x0, noise, t):
    """diffusers' own add_noise at integer steps t (see REVERSED_IN_TRAINING)."""
    if name in REVERSED_IN_TRAINING:
        return diffusers.DDPMScheduler(**config).add_noise(x0, noise, t)
    scheduler = getattr(diffusers, name)(**config)
    return scheduler.add_noise(x0, noise, t.float() if name in SUPPORTED["sigma"] else t)


@pytest.mark.parametrize(("name", "config"), configurations())
def test_add_noise_equals_diffusers_in_float32(name, config):
    x0, noise = data()
    t = torch.arange(T)
    ours = DiffusersAdapter(getattr(diffusers, name)(**config)).add_noise(x0, noise, t)
    expected = reference_add_noise(name, config, x0, noise, t)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", [BETAS["linear"], BETAS["zero_snr"], BETAS["cosine"]])
def test_get_velocity_equals_diffusers_in_float32(config):
    scheduler = diffusers.DDPMScheduler(**config)
    x0, noise = data()
    t = torch.arange(T)
    ours = DiffusersAdapter(scheduler).get_velocity(x0, noise, t)
    torch.testing.assert_close(ours, scheduler.get_velocity(x0, noise, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SUPPORTED["flow"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_scale_noise_equals_diffusers_in_float32(name, shift):
    x0, noise = data(n=8)
    for index in (0, 1, 37, 500, 999):
        scheduler = getattr(diffusers, name)(shift=shift)  # Heun keeps a step index: fresh
        timestep = scheduler.timesteps[index]
        expected = scheduler.scale_noise(x0, timestep.reshape(1), noise)
        ours = DiffusersAdapter(scheduler).scale_noise(x0, timestep.reshape(1), noise)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def float64_formula(adapter, x0, noise, t):
    """The exact x_t of bf16 inputs, in float64 from the float64 tables."""
    signal, sigma = adapter.process.schedule.marginal(t, "cpu", F64)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    return signal.reshape(shape) * x0.to(F64) + sigma.reshape(shape) * noise.to(F64)


BF16_CASES = [
    ("DDPMScheduler", BETAS["linear"]),
    ("DDPMScheduler", BETAS["scaled_linear"]),
    ("DDIMScheduler", BETAS["zero_snr"]),
    ("EulerDiscreteScheduler", BETAS["scaled_linear"]),
]


@pytest.mark.parametrize(("name", "config"), BF16_CASES)
def test_bfloat16_is_closer_to_the_float64_formula_than_diffusers(name, config):
    """Mean and max |error| over all 1000 steps, and the smallest steps' noise survives."""
    x0, noise = data(torch.bfloat16)
    t = torch.arange(T)
    adapter = DiffusersAdapter(getattr(diffusers, name)(**config))
    exact = float64_formula(adapter, x0, noise, t)
    ours = adapter.add_noise(x0, noise, t).to(F64)
    theirs = reference_add_noise(name, config, x0, noise, t).to(F64)
    error_ours, error_theirs = (ours - exact).abs(), (theirs - exact).abs()
    assert error_ours.mean() < error_theirs.mean()
    assert error_ours.max() <= error_theirs.max()
    # One rounding to bf16 (8 significant bits): |error| <= 2^-8 |exact|.
    assert bool((error_ours <= 2.0**-8 * exact.abs() + 1e-30).all())


def test_bfloat16_flow_matching_is_closer_than_diffusers():
    """scale_noise at FlowMatchEuler's 1000 timesteps (shift 3): diffusers rounds sigma to
    bf16 before using it; noisejump applies the float64 sigma in float32."""
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    x0, noise = data(torch.bfloat16)
    sigma = (scheduler.timesteps.to(F64) / T).reshape(-1, 1, 1, 1)
    exact = (1 - sigma) * x0.to(F64) + sigma * noise.to(F64)
    ours = DiffusersAdapter(scheduler).scale_noise(x0, scheduler.timesteps, noise).to(F64)
    theirs = scheduler.scale_noise(x0, scheduler.timesteps, noise).to(F64)
    error_ours, error_theirs = (ours - exact).abs(), (theirs - exact).abs()
    assert error_ours.mean() < error_theirs.mean()
    assert error_ours.max() <= error_theirs.max()
    assert bool((error_ours <= 2.0**-8 * exact.abs() + 1e-30).all())


def test_bfloat16_smallest_steps_get_noise():
    """At t = 0 (beta = 1e-4) diffusers' bf16 path rounds 1 - abar to 0: x_t == x0."""
    scheduler = diffusers.DDPMScheduler()
    x0 = torch.zeros(4, 8, dtype=torch.bfloat16)
    noise = torch.ones(4, 8, dtype=torch.bfloat16)
    t = torch.zeros(4, dtype=torch.int64)
    ours = DiffusersAdapter(scheduler).add_noise(x0, noise, t)
    torch.testing.assert_close(ours.float(), torch.full((4, 8), 0.01), rtol=2**-8, atol=0)
    assert bool((scheduler.add_noise(x0, noise, t) == 0).all())  # the bug we fix


def test_config_mapping_and_saved_config(tmp_path):
    scheduler = diffusers.DDIMScheduler(**BETAS["scaled_linear"])
    scheduler.save_config(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    x0, noise = data(n=8)
    t = torch.arange(0, T, 125)
    expected = scheduler.add_noise(x0, noise, t)
    for config in (saved, diffusers.DDIMScheduler.load_config(tmp_path)):
        ours = from_diffusers(config).q_sample(x0, t, noise=noise)[0]
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_nothing_is_mutated():
    scheduler = diffusers.DDPMScheduler()
    before = scheduler.alphas_cumprod.clone()
    x0, noise = data(n=4)
    x0_copy, noise_copy = x0.clone(), noise.clone()
    adapter = DiffusersAdapter(scheduler)
    adapter.add_noise(x0, noise, torch.tensor([0, 1, 2, 3]))
    adapter.get_velocity(x0, noise, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(scheduler.alphas_cumprod, before)
    assert torch.equal(x0, x0_copy) and torch.equal(noise, noise_copy)


# ---- the lines around add_noise -------------------------------------------------------------
# diffusers' examples/unconditional_image_generation/train_unconditional.py, prediction_type
# "sample": after add_noise it reads noise_scheduler.alphas_cumprod for SNR weights. Its
# helper _extract_into_tensor indexes the table with the timesteps first and moves the
# result to their device second, so the table must already be on the timesteps' device:
# diffusers' add_noise put it there (it reassigns scheduler.alphas_cumprod); the adapter
# does not. Transcribed here (same steps, our words).


def extract_into_tensor(table, timesteps, broadcast_shape):
    values = table[timesteps].float().to(timesteps.device)
    return values.reshape(-1, *[1] * (len(broadcast_shape) - 1)).expand(broadcast_shape)


def sample_prediction_loss(alphas_cumprod, model_output, clean_images, timesteps):
    """The script's "sample" branch: SNR-weighted MSE against x0; (loss, weights)."""
    alpha_t = extract_into_tensor(alphas_cumprod, timesteps, (len(clean_images), 1, 1, 1))
    snr_weights = alpha_t / (1 - alpha_t)
    loss = snr_weights * torch.nn.functional.mse_loss(model_output, clean_images, reduction="none")
    return loss.mean(), snr_weights


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler"])
@pytest.mark.parametrize("label", ["linear", "cosine", "zero_snr"])
def test_sample_prediction_lines_around_add_noise(name, label):
    """The script's lines with diffusers' add_noise, and with the adapter's: on the CPU the
    unchanged lines still run and give diffusers' numbers exactly (the scheduler's table is
    untouched and already on the CPU); the documented replacement
    adapter.alphas_cumprod(timesteps.device) gives abar within 1.4e-5 relative (diffusers'
    float32 cumulative product against one rounding of the float64 value) and SNR weights
    within 5e-4 (the script's float32 1 - abar, ~1e-4 at the first steps)."""
    x0, noise = data()
    model_output = data(seed=1)[0]
    timesteps = torch.arange(T)
    ours_scheduler = getattr(diffusers, name)(**BETAS[label])
    theirs_scheduler = getattr(diffusers, name)(**BETAS[label])
    theirs_scheduler.add_noise(x0, noise, timesteps)
    loss, weights = sample_prediction_loss(
        theirs_scheduler.alphas_cumprod, model_output, x0, timesteps
    )
    adapter = DiffusersAdapter(ours_scheduler)
    adapter.add_noise(x0, noise, timesteps)
    unchanged = sample_prediction_loss(ours_scheduler.alphas_cumprod, model_output, x0, timesteps)
    assert torch.equal(unchanged[0], loss) and torch.equal(unchanged[1], weights)
    replaced = sample_prediction_loss(
        adapter.alphas_cumprod(timesteps.device), model_output, x0, timesteps
    )
    torch.testing.assert_close(
        adapter.alphas_cumprod(), theirs_scheduler.alphas_cumprod, rtol=1.4e-5, atol=0
    )
    torch.testing.assert_close(replaced[1], weights, rtol=5e-4, atol=0)
    torch.testing.assert_close(replaced[0], loss, rtol=5e-4, atol=0)
    # diffusers' compute_snr moves the table itself: it needs no change
    from diffusers.training_utils import compute_snr

    torch.testing.assert_close(
        compute_snr(ours_scheduler, timesteps),
        compute_snr(theirs_scheduler, timesteps),
        rtol=0,
        atol=0,
    )


def test_alphas_cumprod_is_a_fresh_table_in_the_asked_dtype():
    adapter = DiffusersAdapter(diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2"))
    exact = adapter.process.schedule.alphas_cumprod
    assert torch.equal(adapter.alphas_cumprod(dtype=F64), exact)
    table = adapter.alphas_cumprod("cpu")
    assert table.dtype == torch.float32 and torch.equal(table, exact.float())
    table.add_(1)  # the caller's copy: the next call is unharmed
    assert torch.equal(adapter.alphas_cumprod("cpu"), exact.float())
    euler = DiffusersAdapter(diffusers.EulerDiscreteScheduler())
    torch.testing.assert_close(
        euler.alphas_cumprod(), diffusers.EulerDiscreteScheduler().alphas_cumprod, rtol=1e-6, atol=0
    )
    with pytest.raises(TypeError, match="has no alphas_cumprod"):
        DiffusersAdapter(diffusers.FlowMatchEulerDiscreteScheduler()).alphas_cumprod()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sample_prediction_lines_on_a_gpu_need_the_replacement():
    """On a GPU the unchanged line fails with the adapter (a CPU table indexed by CUDA
    timesteps) and the documented replacement runs, as close as on the CPU."""
    x0, noise = (v.cuda() for v in data())
    timesteps = torch.arange(T, device="cuda")
    theirs = diffusers.DDPMScheduler()
    theirs.add_noise(x0, noise, timesteps)
    assert theirs.alphas_cumprod.device.type == "cuda"  # diffusers moved it
    loss, _ = sample_prediction_loss(theirs.alphas_cumprod, x0 * 0.5, x0, timesteps)
    ours = diffusers.DDPMScheduler()
    adapter = DiffusersAdapter(ours)
    adapter.add_noise(x0, noise, timesteps)
    assert ours.alphas_cumprod.device.type == "cpu"  # the adapter did not
    with pytest.raises(RuntimeError):
        sample_prediction_loss(ours.alphas_cumprod, x0 * 0.5, x0, timesteps)
    replaced, _ = sample_prediction_loss(
        adapter.alphas_cumprod(timesteps.device), x0 * 0.5, x0, timesteps
    )
    torch.testing.assert_close(replaced, loss, rtol=5e-4, atol=0)


# ---- bad input -------------------------------------------------------------------------


def test_unsupported_scheduler_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"'ScoreSdeVeScheduler' is not supported; supported:.*"):
        DiffusersAdapter(diffusers.ScoreSdeVeScheduler())
    with pytest.raises(ValueError, match="DDPMScheduler, DDIMScheduler"):
        from_diffusers({"_class_name": "CMStochasticIterativeScheduler"})
    with pytest.raises(ValueError, match="_class_name"):
        from_diffusers({"num_train_timesteps": 1000})
    with pytest.raises(TypeError, match="diffusers scheduler or its config"):
        from_diffusers(42)


def test_unsupported_configurations_are_refused():
    with pytest.raises(ValueError, match="beta_schedule='laplace' is not supported"):
        from_diffusers(diffusers.DDPMScheduler(beta_schedule="laplace"))
    with pytest.raises(ValueError, match="rescale_betas_zero_snr=True is not supported"):
        from_diffusers(diffusers.EulerDiscreteScheduler(rescale_betas_zero_snr=True))
    continuous = diffusers.EulerDiscreteScheduler(
        timestep_type="continuous", prediction_type="v_prediction"
    )
    with pytest.raises(ValueError, match="timestep_type='continuous' is not supported"):
        from_diffusers(continuous)


def test_wrong_method_or_timesteps_for_the_scheduler():
    x0, noise = data(n=2)
    flow = DiffusersAdapter(diffusers.FlowMatchEulerDiscreteScheduler())
    with pytest.raises(TypeError, match="scale_noise"):
        flow.add_noise(x0, noise, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"timestep must be in \[0, 1000\], got 1001.0"):
        flow.scale_noise(x0, torch.tensor([500.0, 1001.0]), noise)
    vp = DiffusersAdapter(diffusers.DDPMScheduler())
    with pytest.raises(TypeError, match="add_noise"):
        vp.scale_noise(x0, 500.0, noise)
    with pytest.raises(ValueError, match="whole numbers"):
        vp.add_noise(x0, noise, torch.tensor([1.5, 2.0]))
    with pytest.raises(ValueError, match=r"integers in \[0, 999\]"):
        vp.add_noise(x0, noise, torch.tensor([0, 1000]))


@pytest.mark.parametrize("name", ["DDPMScheduler", "EulerDiscreteScheduler"])
def test_add_fresh_noise_is_add_noise_of_its_keyed_noise(name):
    """The fused path returns (x_t, noise) with x_t = add_noise(x0, noise, t), and a
    sub-batch gets exactly its rows of the full batch (keyed noise)."""
    adapter = DiffusersAdapter(getattr(diffusers, name)())
    x0, _ = data(n=6)
    t, keys = torch.tensor([0, 10, 100, 400, 800, 999]), torch.arange(6) + 100
    x_t, noise = adapter.add_fresh_noise(x0, t, seed=7, keys=keys)
    torch.testing.assert_close(x_t, adapter.add_noise(x0, noise, t), rtol=0, atol=0)
    part, part_noise = adapter.add_fresh_noise(x0[2:5], t[2:5], seed=7, keys=keys[2:5])
    assert torch.equal(part, x_t[2:5]) and torch.equal(part_noise, noise[2:5])
    other, _ = adapter.add_fresh_noise(x0, t, seed=8, keys=keys)
    assert not torch.equal(other, x_t)


def test_add_fresh_noise_for_flow_matching():
    adapter = DiffusersAdapter(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    x0, _ = data(n=3)
    timesteps = torch.tensor([1000.0, 500.0, 1.0])
    x_t, noise = adapter.add_fresh_noise(x0, timesteps, seed=1, keys=torch.arange(3))
    torch.testing.assert_close(x_t, adapter.scale_noise(x0, timesteps, noise))


def load_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "train_diffusers_unet.py"
    spec = importlib.util.spec_from_file_location("train_diffusers_unet", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--keyed", "--prediction", "v_prediction"],
        ["--keyed", "--batch", "2", "--accumulate", "2"],
    ],
)
def test_example_trains_a_tiny_unet(options):
    """examples/train_diffusers_unet.py runs 3 steps and its losses are finite and change."""
    losses = load_example().main(["--steps", "3", "--batch", "4", *options])
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert len(set(losses)) == 3


def test_example_keys_are_distinct_in_a_step_and_independent_of_accumulation():
    """The example keys by (data set index, step): with --accumulate 4 every sample of a
    step has its own key, and each image gets the same noise at a step as with one
    micro-batch of 32 (the old arange(batch) keys gave the 4 micro-batches equal noise)."""
    example = load_example()
    for step in (0, 7, 8, 100):  # 8 steps of 32 make an epoch of 256: 8 starts the next
        split = example.micro_batch_keys(step, batch=8, accumulate=4, seed=0)
        (whole,) = example.micro_batch_keys(step, batch=32, accumulate=1, seed=0)
        assert len(split) == 4 and torch.equal(torch.cat(split), whole)
        assert len(set(whole[:, 0].tolist())) == 32 and set(whole[:, 1].tolist()) == {step}
        adapter = DiffusersAdapter(diffusers.DDPMScheduler())
        x0 = torch.zeros(8, 1, 8, 8)
        t = torch.full((8,), 999)
        noise = [adapter.add_fresh_noise(x0, t, seed=0, keys=k)[1] for k in split]
        assert torch.equal(
            torch.cat(noise),
            adapter.add_fresh_noise(
                torch.zeros(32, 1, 8, 8), torch.full((32,), 999), seed=0, keys=whole
            )[1],
        )


def test_sigma_view_chain_matches_its_closed_form():
    """DiscreteSigmas: the chain x_k = x_{k-1} + sqrt(sigma_k^2 - sigma_{k-1}^2) e_k at
    t = 60 against q_sample, KS on 8 projections (p > 1e-3 / 8, n = 3000); the chain
    stopped at t = 40 must be rejected at the same n and seed."""
    from noisejump import stats

    process = from_diffusers(diffusers.EulerDiscreteScheduler())
    generator = torch.Generator().manual_seed(3)
    x0 = torch.linspace(-1, 1, 6, dtype=F64).expand(3000, 6)
    closed, _ = process.q_sample(x0, 60, generator=generator)
    chain = process.q_sample_loop(x0, 60, generator=generator)
    p = stats.projection_pvalues(closed, chain)
    assert min(p) > 1e-3 / len(p), p
    short = process.q_sample_loop(x0, 40, generator=generator)
    assert min(stats.projection_pvalues(closed, short)) < 1e-3 / len(p)


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
def test_flow_sigmas_of_a_vp_scheduler_are_refused(name):
    """use_flow_sigmas=True makes add_noise (1 - sigma) x0 + sigma e: not the betas' process
    (the adapter gave a VP linear schedule, 162 away from the scheduler's own add_noise)."""
    scheduler = getattr(diffusers, name)(
        use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0
    )
    with pytest.raises(ValueError, match="use_flow_sigmas=True is not supported"):
        from_diffusers(scheduler)
