"""The noising benchmark behind ``noisejump bench --suite noising`` (and benchmarks/noising.py).

For each shape and dtype, on one device, in one run: a device copy of the batch (the
bandwidth limit: a fused pass that reads x0 and writes x_t and e moves 3 tensors, 1.5 times
a copy's 2), torch.randn alone, diffusers' add_noise plus randn (if diffusers is installed),
an eager torch closed form, torch.compile of it (optional), noisejump's keyed noise alone,
noisejump's keyed q_sample (fused on CUDA) with and without storing e (and the fast
transcendentals on CUDA), the training path (noise plus loss, forward and backward)
regenerating e against fused noise plus F.mse_loss, and the chain to t = 500.
Times are medians (``bench.timing.median_time``) per call; on CUDA each timed run makes 10
calls before synchronising. Ratios come from the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..kernels import q_sample_keyed
from ..objective.loss import keyed_mse, keyed_x_t
from ..processes import ForwardProcess
from ..rng import keyed_normal
from ..schedules import get_schedule
from .timing import median_time, synchronize

CHAIN_STEP = 500
CALLS_PER_RUN = 10  # CUDA only (see noising)
SEED = 1234


@dataclass
class NoisingRow:
    name: str
    ms: float
    tensors: int | None = None  # tensors a perfect pass moves (the limit), when it applies
    note: str = ""


@dataclass
class NoisingReport:
    shape: tuple[int, ...]
    dtype: str
    device: str
    copy_ms: float
    rows: list[NoisingRow] = field(default_factory=list)

    @property
    def limit_ms(self) -> float:
        """The 3-tensor limit: 1.5 times a copy (read x0, write x_t and e)."""
        return 1.5 * self.copy_ms

    def _baseline(self) -> float | None:
        for row in self.rows:
            if row.name.startswith("diffusers"):
                return row.ms
        return None

    def table(self) -> str:
        baseline = self._baseline()
        lines = [
            f"noisejump bench --suite noising: shape {self.shape} {self.dtype} on "
            f"{self.device} (median times; limit = 1.5 x copy = {self.limit_ms:.3f} ms)",
            f"  {'':44} {'ms':>10} {'x limit':>8} {'x diffusers':>12}",
        ]
        for row in self.rows:
            versus = f"{row.ms / baseline:12.2f}" if baseline else f"{'-':>12}"
            note = f"  {row.note}" if row.note else ""
            lines.append(
                f"  {row.name:44} {row.ms:10.3f} {row.ms / self.limit_ms:8.2f} {versus}{note}"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        baseline = self._baseline()
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "device": self.device,
            "copy_ms": self.copy_ms,
            "limit_ms": self.limit_ms,
            "rows": [
                {
                    "name": row.name,
                    "ms": row.ms,
                    "ratio_to_limit": row.ms / self.limit_ms,
                    "ratio_to_diffusers": row.ms / baseline if baseline else None,
                    "note": row.note,
                }
                for row in self.rows
            ],
        }


def _diffusers_add_noise():
    """diffusers' DDPMScheduler.add_noise (linear schedule), or None if not installed."""
    try:
        from diffusers import DDPMScheduler
    except ImportError:
        return None
    return DDPMScheduler(num_train_timesteps=1000).add_noise


def _compile_time(fn) -> tuple[object, float]:
    """torch.compile ``fn`` and time its first call (the compile time), in seconds."""
    compiled = torch.compile(fn)
    start = time.perf_counter()
    compiled()
    return compiled, time.perf_counter() - start


def noising(
    shape=(64, 3, 64, 64),
    dtype=torch.float32,
    *,
    device="cpu",
    repeats: int = 7,
    compile: bool | None = None,
    chain: bool = True,
    schedule: str = "linear",
) -> NoisingReport:
    """Time the noising step's variants for one batch ``shape`` and ``dtype`` (module doc).

    ``compile``: include torch.compile variants (default: on CUDA only; a CPU compile takes
    tens of seconds, reported as the first call's time).
    """
    device = torch.device(device)
    compile = device.type == "cuda" if compile is None else compile
    process = ForwardProcess(get_schedule(schedule, 1000))
    batch = shape[0]
    generator = torch.Generator(device).manual_seed(SEED)
    x0 = torch.randn(shape, generator=generator, device=device).to(dtype)
    t = torch.randint(0, 1000, (batch,), generator=generator, device=device)
    keys = torch.stack([torch.arange(batch, device=device), torch.full_like(t, 7)], dim=1)
    signal, sigma = process.schedule.marginal(t, device, torch.float32)
    coefficient_shape = (-1,) + (1,) * (len(shape) - 1)

    # On CUDA, each timed run makes CALLS_PER_RUN calls before it synchronises: a median
    # per call that amortises the synchronisation but keeps the host-side launch cost.
    calls = CALLS_PER_RUN if device.type == "cuda" else 1

    def time_ms(fn, runs=repeats, calls=calls):
        return 1e3 * median_time(lambda: [fn() for _ in range(calls)], device, runs) / calls

    out = torch.empty_like(x0)
    report = NoisingReport(tuple(shape), str(dtype).removeprefix("torch."), str(device), 0.0)
    report.copy_ms = time_ms(lambda: out.copy_(x0))
    rows = report.rows
    rows.append(NoisingRow("device copy (2 tensors)", report.copy_ms, 2))
    rows.append(NoisingRow("torch.randn alone", time_ms(lambda: torch.randn_like(x0))))
    add_noise = _diffusers_add_noise()
    if add_noise is not None:

        def diffusers_step():
            return add_noise(x0, torch.randn_like(x0), t)

        rows.append(NoisingRow("diffusers add_noise + randn", time_ms(diffusers_step)))

    def eager_closed_form():
        noise = torch.randn_like(x0)
        x_t = signal.reshape(coefficient_shape) * x0 + sigma.reshape(coefficient_shape) * noise
        return x_t.to(dtype), noise

    rows.append(NoisingRow("eager torch closed form + randn", time_ms(eager_closed_form)))
    if compile:
        compiled, seconds = _compile_time(eager_closed_form)
        rows.append(
            NoisingRow(
                "torch.compile closed form", time_ms(compiled), note=f"compile {seconds:.1f} s"
            )
        )

    def keyed_alone():
        return keyed_normal(shape, seed=SEED, keys=keys, device=device)

    rows.append(NoisingRow("noisejump keyed noise alone (rng)", time_ms(keyed_alone)))
    if compile and device.type == "cpu":
        compiled, seconds = _compile_time(keyed_alone)
        rows.append(
            NoisingRow(
                "torch.compile keyed noise", time_ms(compiled), note=f"compile {seconds:.1f} s"
            )
        )
    path = "fused kernel" if device.type == "cuda" else "torch path"
    for fast in (False, True) if device.type == "cuda" else (False,):
        mode = ", fast" if fast else ""
        for store_noise, tensors in ((True, 3), (False, 2)):
            stored = "x_t and e" if store_noise else "x_t only"

            def keyed_pass(store_noise=store_noise, fast=fast):
                return q_sample_keyed(
                    x0, signal, sigma, seed=SEED, keys=keys, store_noise=store_noise, fast=fast
                )

            name = f"noisejump keyed q_sample, {stored}{mode}"
            rows.append(NoisingRow(name, time_ms(keyed_pass), tensors, note=path))
    rows.extend(_training_rows(process, x0, t, keys, signal, sigma, time_ms))
    if chain:
        rows.append(
            NoisingRow(
                f"chain to t = {CHAIN_STEP} (q_sample_loop)",
                time_ms(lambda: process.q_sample_loop(x0, CHAIN_STEP), runs=1, calls=1),
            )
        )
    synchronize(device)
    return report


def _training_rows(process, x0, t, keys, signal, sigma, time_ms):
    """Noise plus loss, forward and backward, for a stand-in prediction ``pred`` (a leaf):
    stored e and F.mse_loss, against x_t only and the loss regenerating e from its keys."""
    pred = torch.zeros_like(x0, requires_grad=True)

    def stored_noise_and_mse():
        _, noise = q_sample_keyed(x0, signal, sigma, seed=SEED, keys=keys)
        F.mse_loss(pred, noise).backward()

    def regenerated_noise_loss():
        keyed_x_t(process, x0, t, seed=SEED, keys=keys)
        keyed_mse(process, pred, t, seed=SEED, keys=keys, x0=x0).backward()

    return [
        NoisingRow("train: keyed q_sample + F.mse_loss fwd+bwd", time_ms(stored_noise_and_mse)),
        NoisingRow("train: keyed_x_t + keyed_mse fwd+bwd", time_ms(regenerated_noise_loss)),
    ]
