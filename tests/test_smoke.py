import torch

import noisejump as nj


def test_q_sample_is_the_closed_form_of_its_noise():
    schedule = nj.get_schedule("linear", 1000)
    process = nj.ForwardProcess(schedule)
    x0 = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    x_t, noise = process.q_sample(x0, t)
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
