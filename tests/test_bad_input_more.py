"""Inputs users hit in practice: NumPy steps, non-finite parameters, wrong devices."""

import numpy as np
import pytest
import torch

import noisejump as nj
from noisejump.cli import main
from noisejump.noise import get_noise
from noisejump.processes import BlurringProcess, MixtureProcess

SCHEDULE = nj.get_schedule("linear", 1000)


def test_numpy_steps_are_accepted_as_integers():
    process = nj.ForwardProcess(SCHEDULE)
    x0, noise = torch.randn(4, 3), torch.randn(4, 3)
    expected, _ = process.q_sample(x0, torch.tensor([1, 2, 3, 4]), noise=noise)
    got, _ = process.q_sample(x0, np.array([1, 2, 3, 4]), noise=noise)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    one, _ = process.q_sample(x0, np.int64(5), noise=noise)
    torch.testing.assert_close(one, process.q_sample(x0, 5, noise=noise)[0], rtol=0, atol=0)
    assert process.trajectory(x0, np.array([1, 10])).shape == (2, 4, 3)
    with pytest.raises(TypeError, match="floating t"):
        process.q_sample(x0, np.float64(5.0))
    with pytest.raises(ValueError, match="got 1000"):
        process.q_sample(x0, np.int32(1000))


def test_non_finite_or_singular_parameters_are_refused():
    with pytest.raises(ValueError, match="finite values >= 0"):
        BlurringProcess(SCHEDULE, blur_sigmas=torch.full((1000,), float("nan")))
    with pytest.raises(ValueError, match="finite values >= 0"):
        BlurringProcess(SCHEDULE, blur_sigmas=torch.full((1000,), float("inf")))
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        get_noise("colored", alpha=float("nan"))
    with pytest.raises(ValueError, match="variances must be > 0"):
        get_noise("diagonal", variance=torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="n must be >= 20"):
        nj.verify(nj.ForwardProcess(SCHEDULE, "pink"), 10, n=1)


def test_time_varying_processes_check_their_inputs():
    mixture = MixtureProcess(
        SCHEDULE, [get_noise("isotropic"), get_noise("pink")], torch.ones(1000, 2)
    )
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(ValueError, match="x_t must have x0's shape"):
        mixture.q_posterior(x, x[:2], 5)
    with pytest.raises(ValueError, match="draws its own noise"):
        mixture.q_sample(x, 5, torch.randn(4, 1, 8, 8))


@pytest.mark.parametrize("device", ["meta", "cuda:7"])
def test_cli_refuses_devices_it_cannot_use(capsys, device):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--device", device])
    assert exit_info.value.code == 2
    assert "device" in capsys.readouterr().err
