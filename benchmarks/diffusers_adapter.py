"""noisejump's diffusers adapter against diffusers itself: bfloat16 error and CPU time.

    python benchmarks/diffusers_adapter.py            # both tables
    python benchmarks/diffusers_adapter.py --error    # only the bfloat16 errors
    python benchmarks/diffusers_adapter.py --float32  # only the float32 differences

Error: for each scheduler configuration, x0 and e are drawn in float32 and rounded to
bfloat16; both libraries compute add_noise at every step 0..999 in bfloat16, and each
result is compared with the float64 formula of the *same* bf16 inputs (float64 tables).
Reported: mean and max |error| over all elements, and the max at the 10 least noisy steps
(FlowMatch: its 1000 training timesteps, scale_noise).

Time: medians of 15 runs of add_noise on one batch (64 x 4 x 64 x 64 float32, a SD-latent
sized batch) against a plain copy of the same tensor (x0.clone()), side by side in one run.
CPU only here; no GPU number is claimed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from noisejump.integrations.diffusers import DiffusersAdapter

F64 = torch.float64
CONFIGS = [
    ("DDPMScheduler", {}),
    ("DDPMScheduler", {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}),
    ("DDPMScheduler", {"beta_schedule": "squaredcos_cap_v2"}),
    ("DDPMScheduler", {"rescale_betas_zero_snr": True}),
    ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}),
    ("EulerDiscreteScheduler", {}),
    (
        "EulerDiscreteScheduler",
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    ),
]


def bf16_errors():
    import diffusers

    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(1000, 4, 8, 8, generator=generator).bfloat16()
    noise = torch.randn(1000, 4, 8, 8, generator=generator).bfloat16()
    t = torch.arange(1000)
    print(
        f"{'scheduler':31s} {'config':28s} {'library':10s} {'mean|err|':>10s} "
        f"{'max|err|':>10s} {'max t<10':>10s}"
    )
    for name, config in CONFIGS:
        scheduler = getattr(diffusers, name)(**config)
        adapter = DiffusersAdapter(scheduler)
        # flow matching: sigma = timestep / T at diffusers' own 1000 timesteps
        times = scheduler.timesteps.to(F64) / 1000 if adapter.kind == "flow" else t
        signal, sigma = adapter.process.schedule.marginal(times, "cpu", F64)
        exact = signal.reshape(-1, 1, 1, 1) * x0.to(F64) + sigma.reshape(-1, 1, 1, 1) * noise.to(
            F64
        )
        timesteps = t.float() if adapter.kind == "sigma" else t
        if adapter.kind == "flow":
            results = {
                "noisejump": adapter.scale_noise(x0, scheduler.timesteps, noise),
                "diffusers": scheduler.scale_noise(x0, scheduler.timesteps, noise),
            }
        else:
            results = {
                "noisejump": adapter.add_noise(x0, noise, t),
                "diffusers": scheduler.add_noise(x0, noise, timesteps),
            }
        label = ",".join(f"{k}={v}" for k, v in config.items()) or "default (linear)"
        for library, out in results.items():
            error = (out.to(F64) - exact).abs()
            print(
                f"{name:31s} {label[:28]:28s} {library:10s} {error.mean():10.3e} "
                f"{error.max():10.3e} {_least_noisy(error, adapter.kind):10.3e}"
            )


def float32_differences():
    """max |ours - diffusers| and max |ours - diffusers| / (1 + |diffusers|) in float32, per
    scheduler class and beta configuration, at all 1000 steps (the tests' comparisons)."""
    import diffusers

    from noisejump.integrations.diffusers import SUPPORTED

    betas = {
        "linear": {},
        "scaled_linear": {
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "beta_end": 0.012,
        },
        "cosine": {"beta_schedule": "squaredcos_cap_v2"},
        "zero_snr": {"rescale_betas_zero_snr": True},
    }
    reversed_in_training = ("DPMSolver", "DEIS", "UniPC")  # compared with DDPM (see docs)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(1000, 2, 4, 4, generator=generator)
    noise = torch.randn(1000, 2, 4, 4, generator=generator)
    t = torch.arange(1000)
    print(f"{'scheduler':33s} {'betas':14s} {'max|diff|':>10s} {'max rel':>10s}")
    for kind in ("vp", "sigma"):
        for name in SUPPORTED[kind]:
            for label, config in betas.items():
                try:
                    scheduler = getattr(diffusers, name)(**config)
                    adapter = DiffusersAdapter(scheduler)
                except (TypeError, ValueError):
                    continue  # a configuration that diffusers or noisejump does not take
                if name.startswith(reversed_in_training):
                    scheduler = diffusers.DDPMScheduler(**config)
                timesteps = t.float() if kind == "sigma" else t
                expected = scheduler.add_noise(x0, noise, timesteps)
                diff = (adapter.add_noise(x0, noise, t) - expected).abs()
                relative = (diff / (1 + expected.abs())).max()
                print(f"{name:33s} {label:14s} {diff.max():10.2e} {relative:10.2e}")
    for shift in (1.0, 3.0):
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
        timesteps = scheduler.timesteps
        expected = scheduler.scale_noise(x0, timesteps, noise)
        diff = (DiffusersAdapter(scheduler).scale_noise(x0, timesteps, noise) - expected).abs()
        relative = (diff / (1 + expected.abs())).max()
        name, label = "FlowMatchEulerDiscreteScheduler", f"shift={shift:g}"
        print(f"{name:33s} {label:14s} {diff.max():10.2e} {relative:10.2e}")


def _least_noisy(error: torch.Tensor, kind: str) -> torch.Tensor:
    """max |error| at the 10 smallest noise levels (flow timesteps run from noisy to clean)."""
    return (error[-10:] if kind == "flow" else error[:10]).max()


def median_ms(fn, repeats=15):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def timings():
    import diffusers

    scheduler = diffusers.DDPMScheduler()
    adapter = DiffusersAdapter(scheduler)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 4, 64, 64, generator=generator)
    noise = torch.randn(64, 4, 64, 64, generator=generator)
    t = torch.randint(0, 1000, (64,), generator=generator)
    keys = torch.arange(64)
    rows = {
        "x0.clone() (reference)": lambda: x0.clone(),
        "torch.randn_like(x0)": lambda: torch.randn_like(x0),
        "diffusers add_noise": lambda: scheduler.add_noise(x0, noise, t),
        "noisejump add_noise": lambda: adapter.add_noise(x0, noise, t),
        "randn + diffusers add_noise": lambda: scheduler.add_noise(x0, torch.randn_like(x0), t),
        "noisejump add_fresh_noise": lambda: adapter.add_fresh_noise(x0, t, seed=0, keys=keys),
    }
    results = {label: median_ms(fn) for label, fn in rows.items()}
    copy = results["x0.clone() (reference)"]
    print(
        f"\nCPU, batch {tuple(x0.shape)} float32, median of 15 runs, "
        f"{torch.get_num_threads()} threads"
    )
    for label, ms in results.items():
        print(f"{label:30s} {ms:8.3f} ms   {ms / copy:6.2f} x copy")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--error", action="store_true", help="only the bfloat16 error table")
    parser.add_argument(
        "--float32", action="store_true", help="only the float32 differences to diffusers"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.float32:
        float32_differences()
        return
    bf16_errors()
    if not args.error:
        timings()


if __name__ == "__main__":
    main()
