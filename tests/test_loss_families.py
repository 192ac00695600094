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
