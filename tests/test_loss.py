"""The keyed loss on the torch path: it equals F.mse_loss against the noise q_sample
returned (and its v target), with the same gradient, per-sample and min-SNR weights."""

import pytest
import torch
import torch.nn.functional as F
from noise_families import PerChannel, TwoWhiteDraws

import noisejump as nj
from noisejump.loss import keyed_mse, keyed_x_t, min_snr_weights

SEED = 31


@pytest.fixture
def process():
    return nj.ForwardProcess(nj.get_schedule("linear", 1000))


def _batch(shape=(4, 3, 5, 3), dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=generator).to(dtype)
    pred = torch.randn(shape, generator=generator).to(dtype).requires_grad_()
    t = torch.tensor([0, 10, 500, 999])[: shape[0]]
    keys = torch.stack([torch.arange(shape[0]), torch.full((shape[0],), 8)], dim=1)
    return x0, pred, t, keys


def test_epsilon_loss_is_mse_against_the_noise_q_sample_returned(process):
    x0, pred, t, keys = _batch()
    _, noise = process.q_sample(x0, t, seed=SEED, keys=keys)
    loss = keyed_mse(process, pred, t, seed=SEED, keys=keys)
    (grad,) = torch.autograd.grad(loss, pred)
    expected = F.mse_loss(pred, noise)
    (expected_grad,) = torch.autograd.grad(expected, pred)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-9)


def test_keyed_x_t_is_q_sample_s_x_t(process):
    x0, _, t, keys = _batch()
    x_t, _ = process.q_sample(x0, t, seed=SEED, keys=keys)
    assert torch.equal(keyed_x_t(process, x0, t, seed=SEED, keys=keys), x_t)


def test_other_keys_give_another_loss(process):
    x0, pred, t, keys = _batch()
    loss = keyed_mse(process, pred, t, seed=SEED, keys=keys)
    assert not torch.isclose(loss, keyed_mse(process, pred, t, seed=SEED, keys=keys + 1))
    assert not torch.isclose(loss, keyed_mse(process, pred, t, seed=SEED + 1, keys=keys))


def test_v_loss_is_mse_against_v_target(process):
    x0, pred, t, keys = _batch()
    _, noise = process.q_sample(x0, t, seed=SEED, keys=keys)
    v = process.v_target(x0, noise, t)
    loss = keyed_mse(process, pred, t, seed=SEED, keys=keys, prediction="v", x0=x0)
    (grad,) = torch.autograd.grad(loss, pred)
    expected = F.mse_loss(pred, v)
    (expected_grad,) = torch.autograd.grad(expected, pred)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-9)


def test_noise_is_rounded_to_x0_dtype_as_q_sample_returns_it(process):
    x0, pred, t, keys = _batch(dtype=torch.bfloat16)
    _, noise = process.q_sample(x0, t, seed=SEED, keys=keys)
    pred32 = pred.detach().float()
    loss = keyed_mse(process, pred32, t, seed=SEED, keys=keys, x0=x0)
    torch.testing.assert_close(loss, F.mse_loss(pred32, noise.float()), rtol=1e-6, atol=0)


def test_per_sample_weights(process):
    x0, pred, t, keys = _batch()
    weights = torch.tensor([0.0, 0.5, 1.0, 3.0])
    _, noise = process.q_sample(x0, t, seed=SEED, keys=keys)
    loss = keyed_mse(process, pred, t, seed=SEED, keys=keys, weights=weights)
    per_sample = ((pred - noise) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(loss, (weights * per_sample).mean(), rtol=1e-6, atol=0)
    (grad,) = torch.autograd.grad(loss, pred)
    assert torch.equal(grad[0], torch.zeros_like(grad[0]))


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_min_snr_weights_follow_hang_et_al(process, prediction):
    t = torch.tensor([0, 100, 400, 999])
    abar = process.schedule.alphas_cumprod[t]
    snr = abar / (1 - abar)
    gamma = 5.0
    if prediction == "epsilon":
        expected = torch.minimum(gamma / snr, torch.ones_like(snr))
    else:
        expected = torch.minimum(snr, torch.full_like(snr, gamma)) / (snr + 1)
    weights = min_snr_weights(process.schedule, t, gamma, prediction)
    torch.testing.assert_close(weights, expected.float(), rtol=1e-6, atol=0)
    x0, pred, _, keys = _batch()
    kwargs = {"prediction": prediction, "x0": x0, "seed": SEED, "keys": keys}
    loss = keyed_mse(process, pred, t, min_snr_gamma=gamma, **kwargs)
    weighted = keyed_mse(process, pred, t, weights=weights, **kwargs)
    torch.testing.assert_close(loss, weighted, rtol=1e-6, atol=0)


def test_min_snr_is_finite_at_zero_terminal_snr():
    schedule = nj.get_schedule("linear", 1000, rescale_zero_terminal_snr=True)
    last = torch.tensor([998, 999])
    epsilon = min_snr_weights(schedule, last, 5.0, "epsilon")
    v = min_snr_weights(schedule, last, 5.0, "v")
    assert torch.isfinite(epsilon).all() and torch.isfinite(v).all()
    assert epsilon[1] == 1.0 and v[1] == 0.0


def test_any_family_regenerates_its_structured_noise():
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000), noise=TwoWhiteDraws())
    x0, pred, t, keys = _batch()
    _, noise = process.q_sample(x0, t, seed=SEED, keys=keys)
    loss = keyed_mse(process, pred, t, seed=SEED, keys=keys)
    torch.testing.assert_close(loss, F.mse_loss(pred, noise), rtol=1e-6, atol=0)


def test_diagonal_family_takes_the_fused_path_with_its_scale():
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000), noise=PerChannel())
    x0, pred, t, keys = _batch()
    _, noise = process.q_sample(x0, t, seed=SEED, keys=keys)
    loss = keyed_mse(process, pred, t, seed=SEED, keys=keys, prediction="v", x0=x0)
    expected = F.mse_loss(pred, process.v_target(x0, noise, t))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)


def test_inputs_are_not_mutated(process):
    x0, pred, t, keys = _batch()
    before = (x0.clone(), pred.detach().clone(), keys.clone())
    keyed_mse(process, pred, t, seed=SEED, keys=keys, prediction="v", x0=x0).backward()
    assert torch.equal(x0, before[0]) and torch.equal(pred.detach(), before[1])
    assert torch.equal(keys, before[2])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prediction": "x0"}, ValueError, "prediction must be one of"),
        ({"prediction": "v"}, ValueError, "prediction='v' needs x0"),
        ({"prediction": "sample"}, ValueError, "prediction='sample' needs x0"),
        ({"prediction": "flow_velocity"}, ValueError, "not a flow-matching schedule"),
        ({"reduction": "sum"}, ValueError, "reduction must be one of"),
        ({"weighting": "snr"}, ValueError, "unknown weighting 'snr'"),
        ({"weighting": 5.0}, TypeError, "weighting must be a Weighting"),
        ({"weighting": "edm2"}, ValueError, "pass the LearnedUncertainty module itself"),
        ({"weighting": "p2", "min_snr_gamma": 5.0}, ValueError, "min_snr_gamma or weighting"),
        ({"x0": torch.zeros(2, 3)}, ValueError, "x0 must match model_output's shape"),
        ({"x0": [0.0]}, TypeError, "x0 must be a floating tensor .* or None"),
        ({"weights": torch.ones(3)}, ValueError, r"weights must have shape \(4,\)"),
        ({"weights": torch.ones(4, dtype=torch.int64)}, TypeError, "weights must be a floating"),
        ({"min_snr_gamma": 0.0}, ValueError, "min_snr_gamma must be a positive number"),
        ({"keys": torch.arange(3)}, ValueError, "keys has 3 rows"),
    ],
)
def test_bad_arguments_are_refused(process, kwargs, error, message):
    _, pred, t, keys = _batch()
    arguments = {"seed": SEED, "keys": keys} | kwargs
    with pytest.raises(error, match=message):
        keyed_mse(process, pred, t, **arguments)


# ---- every target, per-sample losses, weightings, EDM2's learned weighting (issue 11) --------


@pytest.mark.parametrize("noise", [None, PerChannel(), "pink"], ids=["iso", "diagonal", "pink"])
def test_sample_and_flow_velocity_targets(noise):
    """The fused pass (isotropic, diagonal) and the general one (pink) against F.mse_loss of
    the target built from q_sample's noise, with the same gradient."""
    from noisejump.continuous import FlowMatching

    x0, pred, t, keys = _batch()
    cases = {
        "sample": (nj.get_schedule("linear", 1000), t),
        "flow_velocity": (FlowMatching(), torch.tensor([0.0, 0.3, 0.7, 1.0])),
    }
    for prediction, (schedule, steps) in cases.items():
        process = nj.ForwardProcess(schedule, noise=noise)
        _, e = process.q_sample(x0, steps, seed=SEED, keys=keys)
        goal = nj.objective.target(process, x0, e, steps, prediction)
        loss = keyed_mse(process, pred, steps, seed=SEED, keys=keys, prediction=prediction, x0=x0)
        (grad,) = torch.autograd.grad(loss, pred)
        expected = F.mse_loss(pred, goal)
        (expected_grad,) = torch.autograd.grad(expected, pred)
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-9)
    # negative control: the flow velocity is not the v target of the same path
    process = nj.ForwardProcess(FlowMatching(), noise=noise)
    times = torch.tensor([0.2, 0.3, 0.7, 0.9])
    _, e = process.q_sample(x0, times, seed=SEED, keys=keys)
    velocity = keyed_mse(
        process, e - x0, times, seed=SEED, keys=keys, prediction="flow_velocity", x0=x0
    )
    v = keyed_mse(process, e - x0, times, seed=SEED, keys=keys, prediction="v", x0=x0)
    assert velocity < 1e-10 < v


def test_per_sample_losses_mean_to_the_loss_and_carry_the_gradient(process):
    x0, pred, t, keys = _batch()
    _, noise = process.q_sample(x0, t, seed=SEED, keys=keys)
    kwargs = {"seed": SEED, "keys": keys, "prediction": "v", "x0": x0, "weighting": "min_snr"}
    per_sample = keyed_mse(process, pred, t, reduction="none", **kwargs)
    w = min_snr_weights(process.schedule, t, 5.0, "v")
    goal = process.v_target(x0, noise, t)
    expected = w * ((pred - goal) ** 2).flatten(1).mean(1)
    assert per_sample.shape == (4,)
    torch.testing.assert_close(per_sample, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(per_sample.mean(), keyed_mse(process, pred, t, **kwargs))
    scale = torch.tensor([1.0, 0.0, 2.0, 3.0])
    (grad,) = torch.autograd.grad((per_sample * scale).sum(), pred)
    (expected_grad,) = torch.autograd.grad((expected * scale).sum(), pred)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-9)


def test_weighting_by_name_equals_min_snr_gamma(process):
    x0, pred, t, keys = _batch()
    kwargs = {"seed": SEED, "keys": keys, "prediction": "v", "x0": x0}
    by_name = keyed_mse(process, pred, t, weighting="min_snr", **kwargs)
    assert torch.equal(by_name, keyed_mse(process, pred, t, min_snr_gamma=5.0, **kwargs))


def test_a_weighting_that_diverges_at_zero_terminal_snr_is_refused():
    schedule = nj.get_schedule("linear", 1000, rescale_zero_terminal_snr=True)
    process = nj.ForwardProcess(schedule)
    _, pred, _, keys = _batch()
    t = torch.tensor([0, 10, 500, 999])
    with pytest.raises(ValueError, match="debiased weighting diverges .* lambda = -inf"):
        keyed_mse(process, pred, t, seed=SEED, keys=keys, weighting="debiased")
    capped = nj.objective.get_weighting("debiased", max_weight=50.0)
    loss = keyed_mse(process, pred, t, seed=SEED, keys=keys, weighting=capped)
    assert torch.isfinite(loss)


def test_edm2_learned_weighting_trains_u_and_equals_its_formula():
    from noisejump.continuous import EDM
    from noisejump.objective import LearnedUncertainty

    process = nj.ForwardProcess(EDM())
    x0, pred, _, keys = _batch()
    sigma = torch.tensor([0.01, 0.3, 1.5, 40.0], dtype=torch.float64)
    learned = LearnedUncertainty(channels=16)
    kwargs = {"seed": SEED, "keys": keys, "prediction": "sample", "x0": x0}
    loss = keyed_mse(process, pred, sigma, weighting=learned, **kwargs)
    per_sample = keyed_mse(process, pred, sigma, weighting=learned.base, reduction="none", **kwargs)
    u = learned(sigma)
    expected = (per_sample * torch.exp(-u) + u).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(loss, learned.loss(per_sample, sigma))
    grad_u, grad_pred = torch.autograd.grad(loss, [learned.weight, pred])
    assert grad_u.abs().sum() > 0 and grad_pred.abs().sum() > 0
    # the base weighting is EDM's: lambda(sigma) on the x0-MSE, as EDM.loss_weight
    _, e = process.q_sample(x0, sigma, seed=SEED, keys=keys)
    weight = EDM().loss_weight(sigma).float()
    mse = ((pred - x0) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(per_sample, weight * mse, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="one step or time per sample"):
        elementwise = nj.ForwardProcess(nj.get_schedule("linear", 1000))
        t = torch.zeros(4, 3, 1, 1, dtype=torch.int64)
        keyed_mse(elementwise, pred, t, weighting=learned, **kwargs)
