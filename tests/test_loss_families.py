"""keyed_mse with every noise family and every step shape (issue 9, item 2).

The reference is the definition: F.mse_loss of the model output against the target built
from the noise ``q_sample`` returned for the same (seed, keys), weighted per sample or per
element where weights are given. Offset, pyramid, sum and Kronecker noise draw L e from a
white shape larger than the sample (L not square); per-element steps with correlated noise
take the increments path.
"""

import pytest
import torch
import torch.nn.functional as F

import noisejump as nj
from noisejump.loss import keyed_mse, min_snr_weights
from noisejump.noise import available
from noisejump.noise.examples import EXAMPLES

SCHEDULE = nj.get_schedule("linear", 1000)


def _case(name: str, per_element: bool):
    family = EXAMPLES[name].build()
    event = EXAMPLES[name].exact
    process = nj.ForwardProcess(SCHEDULE, noise=family)
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(3, *event, generator=generator)
    output = torch.randn(3, *event, generator=generator)
    if per_element:  # one step per element along the first event axis (frames, channels)
        t = torch.randint(0, 1000, (3, event[0], *[1] * (len(event) - 1)), generator=generator)
    else:
        t = torch.tensor([3, 400, 999])
    return process, x0, output, t


def test_every_family_is_covered():
    assert sorted(EXAMPLES) == available()


@pytest.mark.parametrize(
    ("prediction", "per_element"),
    [(p, False) for p in ("epsilon", "v", "sample")] + [(p, True) for p in ("epsilon", "v")],
    ids=lambda value: {False: "per-sample", True: "per-element"}.get(value, value),
)
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_keyed_mse_equals_mse_against_the_noise_q_sample_returned(name, prediction, per_element):
    process, x0, output, t = _case(name, per_element)
    keys = torch.tensor([5, 2**33 + 1, 11])
    _, noise = process.q_sample(x0, t, seed=9, keys=keys)
    target = nj.objective.target(process, x0, noise, t, prediction)
    got = keyed_mse(process, output, t, seed=9, keys=keys, prediction=prediction, x0=x0)
    torch.testing.assert_close(got, F.mse_loss(output, target), rtol=1e-5, atol=1e-6)
    # weighted: user weights per sample times min-SNR weights (per element for per-element t)
    weights = torch.tensor([0.5, 2.0, 1.0])
    got = keyed_mse(
        process, output, t, seed=9, keys=keys, prediction=prediction, x0=x0,
        weights=weights, min_snr_gamma=5.0,
    )  # fmt: skip
    steps = t.expand(output.shape) if per_element else t
    w = min_snr_weights(SCHEDULE, steps, 5.0, prediction)
    w = w.reshape(w.shape + (1,) * (output.dim() - w.dim()))
    w = w * weights.reshape((3,) + (1,) * (output.dim() - 1))
    expected = (w * (output - target) ** 2).mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["offset", "pink", "diagonal"])
def test_keyed_mse_rejects_the_noise_of_other_keys(name):
    """Negative control: the loss against another key's noise is not the same number."""
    process, x0, output, t = _case(name, False)
    _, noise = process.q_sample(x0, t, seed=9, keys=torch.tensor([5, 6, 7]))
    got = keyed_mse(process, noise, t, seed=9, keys=torch.tensor([5, 6, 7]))
    other = keyed_mse(process, noise, t, seed=9, keys=torch.tensor([5, 6, 8]))
    assert got < 1e-6 < other


def test_keyed_mse_gradient_per_element_matches_autograd():
    process, x0, output, t = _case("pink", True)
    keys = torch.arange(3)
    output.requires_grad_(True)
    keyed_mse(process, output, t, seed=1, keys=keys).backward()
    reference = output.detach().clone().requires_grad_(True)
    F.mse_loss(reference, process.q_sample(x0, t, seed=1, keys=keys)[1]).backward()
    torch.testing.assert_close(output.grad, reference.grad)


class _LearnedLogSNR(torch.nn.Module):
    """lambda(t) = a - b t with learnable a, b (a VDM-style learned schedule)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = (
            torch.nn.Parameter(torch.tensor(8.0)),
            torch.nn.Parameter(torch.tensor(16.0)),
        )

    def forward(self, t):
        return self.a - self.b * t


def _target(prediction, x0, noise, process, t):
    if prediction == "v":
        return process.v_target(x0, noise, t)
    return x0 if prediction == "sample" else noise - x0  # flow_velocity's e - x0


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("prediction", ["v", "sample"])
@pytest.mark.parametrize("name", ["isotropic", "diagonal", "pink"])
def test_keyed_mse_gives_every_input_its_gradient(name, prediction, reduction):
    """x0 (an encoder being trained), learned loss weights (EDM2) and the model output get
    the gradients of the plain differentiable loss against the same keyed noise, for every
    target that holds x0 and for per-sample losses."""
    process, x0, output, t = _case(name, False)
    _check_every_gradient(process, x0, output, t, prediction, reduction)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_keyed_mse_flow_velocity_gives_every_input_its_gradient(reduction):
    from noisejump.continuous import FlowMatching

    process = nj.ForwardProcess(FlowMatching())
    x0 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    _check_every_gradient(process, x0, torch.randn_like(x0), t, "flow_velocity", reduction)


def _check_every_gradient(process, x0, output, t, prediction, reduction):
    keys = torch.tensor([5, 6, 7])

    def leaves():
        return [v.clone().requires_grad_() for v in (x0, output, torch.zeros(3))]

    got, expected = leaves(), leaves()
    x0_, out_, u_ = got
    loss = keyed_mse(
        process,
        out_,
        t,
        seed=3,
        keys=keys,
        prediction=prediction,
        x0=x0_,
        weights=torch.exp(-u_),
        reduction=reduction,
    )
    rx0, rout, ru = expected
    noise = process.q_sample(x0, t, seed=3, keys=keys)[1]
    w = torch.exp(-ru).reshape((3,) + (1,) * (x0.dim() - 1))
    squares = w * (rout - _target(prediction, rx0, noise, process, t)) ** 2
    reference = squares.mean() if reduction == "mean" else squares.flatten(1).mean(1)
    scale = torch.tensor([1.0, 2.0, 3.0]) if reduction == "none" else torch.tensor(1.0)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-7)
    (loss * scale).sum().backward()
    (reference * scale).sum().backward()
    for mine, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-7)


def test_keyed_mse_trains_a_learned_schedule():
    from noisejump.continuous import LogSNR

    learned = _LearnedLogSNR()
    process = nj.ForwardProcess(LogSNR(learned))
    x0 = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    output = torch.randn_like(x0)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=torch.float64)
    keys = torch.arange(4)
    keyed_mse(process, output, t, seed=1, keys=keys, prediction="v", x0=x0).backward()
    got = [p.grad.clone() for p in learned.parameters()]
    learned.zero_grad()
    noise = process.q_sample(x0, t, seed=1, keys=keys)[1].detach()
    F.mse_loss(output, process.v_target(x0, noise, t)).backward()
    for g, expected in zip(got, [p.grad for p in learned.parameters()], strict=True):
        assert expected.abs() > 0
        torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-7)
