"""The CPU's two ways to the same keyed integers: NumPy (small draws) and torch (large).

Both must give bitwise the same noise, so a sample's noise cannot depend on the batch it
is drawn in (a small sub-batch takes NumPy, the full batch torch)."""

import pytest
import torch

from noisejump import rng


@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (3, 5, 7), (2, 1), (5, 3, 33)])
@pytest.mark.parametrize("stream", [0, 3, 2**32 - 1])
def test_numpy_and_torch_paths_agree_bitwise(monkeypatch, shape, stream):
    keys = torch.tensor([[2**32 - 1, 7], [0, 2**31], [5, 5], [1, 0], [9, 9]])[: shape[0]]
    seed = 2**64 - 3
    monkeypatch.setattr(rng, "NUMPY_WORDS", 10**9)
    numpy_noise = rng.keyed_normal(shape, seed=seed, keys=keys, stream=stream)
    monkeypatch.setattr(rng, "NUMPY_WORDS", -1)
    torch_noise = rng.keyed_normal(shape, seed=seed, keys=keys, stream=stream)
    assert torch.equal(numpy_noise, torch_noise)


def test_a_small_sub_batch_equals_its_rows_of_a_large_batch():
    keys = torch.arange(64) * 7919
    shape = (64, 4, 16, 16)
    assert 64 * 4 * 16 * 16 // 4 > rng.NUMPY_WORDS  # the full batch takes torch
    full = rng.keyed_normal(shape, seed=11, keys=keys)
    part = rng.keyed_normal((2, *shape[1:]), seed=11, keys=keys[10:12])  # NumPy
    assert torch.equal(full[10:12], part)
