"""Sharded keyed noise (issue 12, item 5): a rank holding elements [start, stop) of every
sample along an axis draws exactly that slice of the unsharded call, bitwise; correlated
axes are refused; two gloo processes reproduce one."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import noisejump as nj
from noisejump.loss import keyed_mse, keyed_x_t
from noisejump.noise import get_noise
from noisejump.rng import keyed_normal

SCHEDULE = nj.get_schedule("linear", 1000)
KEYS = torch.tensor([[7, 1], [8, 1], [9, 2]])
SHAPE = (3, 5, 3, 6, 7)  # (B, F, C, H, W)


def cuts(size):
    """Uneven shards of an axis, some not on a Philox group boundary."""
    return [(0, 1), (1, size - 2), (size - 2, size)] if size > 3 else [(0, 1), (1, size)]


def sharded(call, x, axis, size):
    """``call(slice, shard)`` on each shard of event axis ``axis``, concatenated."""
    parts = []
    for start, stop in cuts(size):
        piece = x.narrow(axis + 1, start, stop - start)
        parts.append(call(piece, (axis, start, stop, size), start, stop))
    return [torch.cat(p, dim=axis + 1) for p in zip(*parts, strict=True)]


def test_keyed_normal_shards_are_slices_of_the_full_draw():
    full = keyed_normal(SHAPE, seed=3, keys=KEYS)
    for axis in range(4):
        size = SHAPE[axis + 1]
        (joined,) = sharded(
            lambda piece, shard, a, b: (keyed_normal(piece.shape, seed=3, keys=KEYS, shard=shard),),
            full,
            axis,
            size,
        )
        assert torch.equal(joined, full), axis


FAMILIES = {
    # family, the event axes it keeps independent (the others are refused)
    "isotropic": (lambda: get_noise("isotropic"), [0, 1, 2, 3]),
    "diagonal": (lambda: get_noise("diagonal", variance=torch.rand(5, 3, 1, 7) + 0.5), [0, 1, 3]),
    "frames-progressive": (lambda: get_noise("frames-progressive", rho=0.8), [1, 2, 3]),
    "frames-mixed": (lambda: get_noise("frames-mixed", rho=0.5), [1, 2, 3]),
    "pink": (lambda: get_noise("pink"), [0, 1]),  # per-frame steps: increments, axis 1
}


def local_steps(t, axis, start, stop):
    """The steps of a shard: per-sample steps as they are, per-element ones sliced."""
    if t.dim() == 1 or t.shape[axis + 1] == 1:
        return t
    return t.narrow(axis + 1, start, stop - start)


@pytest.mark.parametrize("name", FAMILIES)
def test_q_sample_shards_are_slices_of_the_unsharded_call(name):
    build, axes = FAMILIES[name]
    process = nj.ForwardProcess(SCHEDULE, build())
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(SHAPE, generator=generator)
    per_frame = torch.randint(-1, 1000, (3, 5, 1, 1, 1), generator=generator)
    per_sample = torch.tensor([3, 500, 999])
    for t in (per_sample, per_frame):
        full = process.q_sample(x0, t, seed=5, keys=KEYS)
        for axis in axes:
            if name == "pink" and t.dim() > 1 and axis == 0:
                continue  # the steps vary along frames: refused (test_bad_shards_are_refused)

            def call(piece, shard, start, stop, t=t, axis=axis):
                local = local_steps(t, axis, start, stop)
                x_t, noise = process.q_sample(piece, local, seed=5, keys=KEYS, shard=shard)
                return x_t, noise, keyed_x_t(process, piece, local, seed=5, keys=KEYS, shard=shard)

            x_t, noise, fused = sharded(call, x0, axis, SHAPE[axis + 1])
            assert torch.equal(x_t, full[0]) and torch.equal(noise, full[1]), axis
            assert torch.equal(fused, full[0]), axis
    # negative control: a shard that claims another place in the sample gets other noise
    x_t, noise = process.q_sample(x0[:, :, 1:2], per_sample, seed=5, keys=KEYS, shard=(1, 2, 3, 3))
    assert not torch.equal(noise, full[1][:, :, 1:2])


@pytest.mark.parametrize("name", ["isotropic", "diagonal", "frames-progressive"])
def test_keyed_mse_shards_sum_to_the_unsharded_loss(name):
    build, axes = FAMILIES[name]
    process = nj.ForwardProcess(SCHEDULE, build())
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(SHAPE, generator=generator)
    output = torch.randn(SHAPE, generator=generator)
    t = torch.randint(-1, 1000, (3, 5, 1, 1, 1), generator=generator)
    weights = torch.rand(3, 5, 1, 1, 1, generator=generator)
    kwargs = dict(seed=2, keys=KEYS, prediction="v", min_snr_gamma=5.0, weights=weights)
    full = output.clone().requires_grad_()
    loss = keyed_mse(process, full, t, x0=x0, **kwargs)
    loss.backward()
    axis = axes[-1]  # W, or H: t and the weights hold every frame on every rank
    total, grads = 0.0, []
    for start, stop in cuts(SHAPE[axis + 1]):
        piece = output.narrow(axis + 1, start, stop - start).clone().requires_grad_()
        shard = (axis, start, stop, SHAPE[axis + 1])
        local = keyed_mse(process, piece, t, x0=x0.narrow(axis + 1, start, stop - start),
                          shard=shard, **kwargs)  # fmt: skip
        local.backward()
        total, grads = total + local, grads + [piece.grad]
    assert torch.equal(torch.cat(grads, dim=axis + 1), full.grad)
    torch.testing.assert_close(total, loss.detach(), rtol=1e-6, atol=0)


def test_bad_shards_are_refused():
    x0 = torch.zeros(2, 4, 3, 8, 8)
    keys = torch.arange(2)
    pink = nj.ForwardProcess(SCHEDULE, "pink")
    cases = [
        (pink, (2, 0, 4, 8), x0[..., :4, :], r"correlates elements along that axis .* \[0, 1\]"),
        (pink, (1, 0, 3, 2), x0, r"need 0 <= start < stop <= size"),
        (pink, (1, -1, 2, 4), x0, r"need 0 <= start < stop <= size"),
        (pink, (1, 1, 5, 4), x0, r"need 0 <= start < stop <= size"),
        (pink, (1, 0, 2, 4), x0, r"holds 2 elements along axis 1 but the local sample has 3"),
        (pink, (5, 0, 1, 1), x0, r"axis 5 does not exist"),
        (pink, (1, 0, 3), x0, r"shard must be \(axis, start, stop, size\)"),
        (pink, "W", x0, None),
    ]
    for process, shard, x, match in cases:
        error = TypeError if match is None else ValueError
        with pytest.raises(error, match=match):
            process.q_sample(x, 5, seed=1, keys=keys, shard=shard)
    with pytest.raises(ValueError, match="shard= needs keyed noise"):
        pink.q_sample(x0, 5, shard=(0, 0, 4, 8))
    # per-element steps with correlated noise on the increments path: not along an axis
    # the steps vary along (a shard would not see the sample's distinct steps)
    t = torch.randint(0, 1000, (2, 4, 3, 1, 1))
    with pytest.raises(ValueError, match="cannot be used on the 'increments' path"):
        pink.q_sample(x0[:, :2], t[:, :2], seed=1, keys=keys, shard=(0, 0, 2, 4))


WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    import noisejump as nj
    from noisejump.loss import keyed_mse
    from noisejump.noise import get_noise

    rank, store = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000),
                                get_noise("frames-progressive", rho=0.9))
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 6, 3, 8, 10, generator=generator)  # every rank builds the batch
    output = torch.randn(4, 6, 3, 8, 10, generator=generator)
    t = torch.randint(-1, 1000, (4, 6, 1, 1, 1), generator=generator)
    keys = torch.arange(4) + 100
    start, stop = (0, 3) if rank == 0 else (3, 8)  # uneven shards of H
    shard = (2, start, stop, 8)
    x_t, noise = process.q_sample(x0[:, :, :, start:stop], t, seed=9, keys=keys, shard=shard)
    piece = output[:, :, :, start:stop].clone().requires_grad_()
    loss = keyed_mse(process, piece, t, seed=9, keys=keys, shard=shard)
    loss.backward()
    gathered = {}
    for name, value in (("x_t", x_t), ("noise", noise), ("grad", piece.grad)):
        parts = [None, None]
        dist.all_gather_object(parts, value)  # uneven shards: gathered as objects
        gathered[name] = torch.cat(parts, dim=3)
    total = loss.detach().clone()
    dist.all_reduce(total)  # the ranks' shares of the loss add up to the loss
    if rank == 0:
        full_x_t, full_noise = process.q_sample(x0, t, seed=9, keys=keys)
        full_output = output.clone().requires_grad_()
        full_loss = keyed_mse(process, full_output, t, seed=9, keys=keys)
        full_loss.backward()
        assert torch.equal(gathered["x_t"], full_x_t), "x_t"
        assert torch.equal(gathered["noise"], full_noise), "noise"
        assert torch.equal(gathered["grad"], full_output.grad), "grad"
        torch.testing.assert_close(total, full_loss.detach(), rtol=1e-6, atol=0)
        print("ranks agree")
    dist.destroy_process_group()
    """
)


def test_two_gloo_processes_reproduce_the_unsharded_call(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), str(store)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    assert "ranks agree" in outputs[0][0]
