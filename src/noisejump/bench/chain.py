"""The closed form against the chain, the benchmark behind ``noisejump bench``.

Times are medians of repeated runs (machines are noisy); ratios come from one run.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from functools import partial

import torch

from ..processes import ForwardProcess
from ..schedules import get_schedule
from .timing import interleaved_median_times, median_time

DEFAULT_STEPS = (1, 10, 100, 500, 999)


@dataclass
class ChainRow:
    t: int
    closed_ms: float
    chain_ms: float

    @property
    def speedup(self) -> float:
        return self.chain_ms / self.closed_ms


@dataclass
class ChainReport:
    shape: tuple[int, ...]
    dtype: str
    device: str
    randn_ms: float
    closed_ms: float
    rows: list[ChainRow]

    def table(self) -> str:
        lines = [
            f"noisejump bench: closed form vs chain, shape {self.shape} {self.dtype} "
            f"on {self.device} (median times)",
            f"  torch.randn alone      {self.randn_ms:9.3f} ms",
            f"  closed form (q_sample) {self.closed_ms:9.3f} ms   "
            f"= {self.closed_ms / self.randn_ms:.2f} x randn",
            "",
            f"  {'t':>5}  {'closed form ms':>14}  {'chain ms':>12}  {'speed-up':>9}",
        ]
        for row in self.rows:
            lines.append(
                f"  {row.t:>5}  {row.closed_ms:>14.3f}  {row.chain_ms:>12.2f}  {row.speedup:>8.0f}x"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        data = asdict(self)
        for row, obj in zip(data["rows"], self.rows, strict=True):
            row["speedup"] = obj.speedup
        return data


def chain_vs_closed(
    shape=(64, 3, 64, 64),
    steps=DEFAULT_STEPS,
    *,
    device="cpu",
    dtype=torch.float32,
    schedule: str = "linear",
    noise=None,
    repeats: int = 7,
    chain_repeats: int = 1,
    seed: int = 0,
) -> ChainReport:
    """Time ``q_sample`` (the O(1) jump) against ``q_sample_loop`` (the O(t) chain).

    The chain is the efficient one: one in-place multiply-add per step on a reused noise
    buffer, with the step's coefficients as host floats.
    """
    device = torch.device(device)
    process = ForwardProcess(get_schedule(schedule), noise=noise)
    generator = torch.Generator(device).manual_seed(seed)
    x0 = torch.randn(shape, generator=generator, device=device).to(dtype)
    # randn and the closed form at every t, interleaved: their ratio is what matters.
    draw = partial(torch.randn, shape, generator=generator, device=device, dtype=dtype)
    closed_forms = [partial(process.q_sample, x0, t, generator=generator) for t in steps]
    randn_s, *closed_s = interleaved_median_times([draw, *closed_forms], device, repeats)
    rows = []
    for t, closed_t in zip(steps, closed_s, strict=True):
        closed = 1e3 * closed_t
        chain = 1e3 * median_time(
            partial(process.q_sample_loop, x0, t, generator=generator),
            device,
            chain_repeats,
            warmup=0,
        )
        rows.append(ChainRow(t, closed, chain))
    return ChainReport(
        tuple(shape),
        str(dtype).removeprefix("torch."),
        str(device),
        1e3 * randn_s,
        statistics.median(r.closed_ms for r in rows),
        rows,
    )
