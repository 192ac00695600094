"""Keyed noise on every plan: a sample's noise depends only on (seed, its key), never on
the rest of the batch, also where one call takes several draws."""

import pytest
import torch

import noisejump as nj


@pytest.mark.parametrize("path", ["auto", "chain"])
@pytest.mark.parametrize("noise", ["isotropic", "pink", "offset"])
def test_sub_batch_gets_its_rows_of_the_full_call(noise, path):
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000), noise=noise, path=path)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 8, 8, generator=g)
    high = 40 if path == "chain" else 1000
    per_element = torch.randint(0, high, (5, 1, 8, 8), generator=g)  # one step per pixel
    per_sample = torch.randint(0, high, (5,), generator=g)
    keys = torch.tensor([[11, 0], [12, 0], [13, 0], [14, 0], [15, 0]])
    for t in (per_sample, per_element):
        full, full_noise = process.q_sample(x0, t, seed=7, keys=keys)
        part, part_noise = process.q_sample(x0[1:4], t[1:4], seed=7, keys=keys[1:4])
        torch.testing.assert_close(part, full[1:4], rtol=0, atol=1e-6)
        torch.testing.assert_close(part_noise, full_noise[1:4], rtol=0, atol=1e-5)


def test_keyed_draws_differ_between_keys_and_from_stream_zero():
    """Negative control: another key, or the closed form's stream, gives other noise."""
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000), noise="pink")
    x0 = torch.zeros(2, 3, 8, 8)
    t = torch.randint(0, 1000, (2, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    a, _ = process.q_sample(x0, t, seed=7, keys=torch.tensor([1, 2]))
    b, _ = process.q_sample(x0, t, seed=7, keys=torch.tensor([1, 3]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
