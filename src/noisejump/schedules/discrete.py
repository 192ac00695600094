"""Discrete noise schedules, built and kept in float64.

Notation (Ho et al. 2020, arXiv 2006.11239, eq. 4; Kingma et al. 2021, VDM, arXiv 2107.00630):

    betas            beta_t       variance the step adds, in (0, 1]
    alphas           alpha_t      1 - beta_t
    alphas_cumprod   abar_t       prod_{k <= t} alpha_k: signal power of x_t given x0
    signal           sqrt(abar_t) the coefficient of x0 in x_t (VDM's alpha_t)
    sigma            sqrt(1 - abar_t), the noise scale of x_t (VDM's sigma_t)
    snr              abar_t / (1 - abar_t);   log_snr = log(snr)

Code step k is mathematical step k + 1: ``alphas_cumprod[0]`` already includes one step.
Step ``-1`` stands for the clean data x0 (signal 1, sigma 0): the *start* of a jump
(``q_sample_from``), the target of the posterior at step 0, and a clean element of
``q_sample`` (a context frame kept clean: no transition, x_t = x0 and noise 0 there).

What ``ForwardProcess`` needs from a schedule is small: ``steps`` (validate and place t),
``marginal`` (signal and sigma of q(x_t | x0)) and ``transition`` (alpha_{t|s} and
sigma^2_{t|s} of q(x_t | x_s)). A continuous-time schedule provides the same three with a
float t, and the process works unchanged; the table here is one way to provide them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from .._numpy import from_numpy as _from_numpy
from ..checks import as_int64, broadcasts_per_element, check_device, check_range, host_readable
from .shift import check_shift, softplus
from .spacing import spaced_steps

__all__ = ["Schedule", "get_schedule", "schedule_names"]

F64 = torch.float64


class Schedule:
    """An immutable discrete schedule of ``num_steps`` steps.

    Build one with [`get_schedule`][noisejump.get_schedule],
    [`from_betas`][noisejump.Schedule.from_betas] or
    [`from_alphas_cumprod`][noisejump.Schedule.from_alphas_cumprod].
    Public tables are fresh float64 copies; the process reads cached per-device copies.

    Internally every quantity derives from ``log abar`` (``cumsum(log1p(-beta))``): then
    1 - abar = -expm1(log abar) and 1 - abar_t / abar_s = -expm1(log abar_t - log abar_s)
    stay accurate at the smallest steps, where 1 - abar ~ beta ~ 1e-4.
    """

    def __init__(
        self,
        betas: torch.Tensor,
        alphas: torch.Tensor,
        log_alphas_cumprod: torch.Tensor,
        timesteps: torch.Tensor | None = None,
        name: str = "custom",
    ) -> None:
        # Private: validated inputs come from the classmethods.
        self._betas = betas
        self._alphas = alphas  # kept apart from 1 - beta: accurate when alpha is tiny
        self._log_alphas_cumprod = log_alphas_cumprod
        self._timesteps = (
            torch.arange(len(betas), dtype=torch.int64) if timesteps is None else timesteps
        )
        self.name = name
        self._cache: dict[tuple[str, torch.device | str, torch.dtype], torch.Tensor] = {}
        # The log-SNRs whose sigma_k bin sampler draws of sigma (``time_of``): the unshifted
        # table's after ``shifted``, so a shift moves every sampler's law; None: this one's.
        self._draw_log_snr: torch.Tensor | None = None

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_betas(
        cls, betas: Sequence[float] | torch.Tensor, *, name: str = "custom", timesteps: Any = None
    ) -> Schedule:
        """Schedule from the per-step variances beta_t in (0, 1] (Ho et al. 2020, eq. 2)."""
        betas = _as_table(betas, "betas")
        bad = ~((betas > 0) & (betas <= 1))
        if bad.any():
            k = int(bad.nonzero()[0])
            raise ValueError(
                f"betas must lie in (0, 1]; betas[{k}] = {betas[k].item()!r}. "
                "A beta of 0 adds no noise and 1 erases the signal (allowed at the last step)."
            )
        if (betas[:-1] == 1).any():
            raise ValueError("betas may equal 1 only at the last step (zero terminal SNR)")
        # log abar_t = sum_{k<=t} log(1 - beta_k), accurate for small beta (log1p).
        log_abar = torch.cumsum(torch.log1p(-betas), 0)
        return cls(betas, 1.0 - betas, log_abar, _as_timesteps(timesteps, len(betas)), name)

    @classmethod
    def from_alphas_cumprod(
        cls,
        alphas_cumprod: Sequence[float] | torch.Tensor,
        *,
        name: str = "custom",
        timesteps: Any = None,
    ) -> Schedule:
        """Schedule from abar_t, strictly decreasing in [0, 1) (only the last may be 0).

        beta_t = 1 - abar_t / abar_{t-1} with abar_{-1} = 1.
        """
        abar = _as_table(alphas_cumprod, "alphas_cumprod")
        if (abar < 0).any() or (abar >= 1).any():
            raise ValueError(
                f"alphas_cumprod must lie in [0, 1); got min {abar.min().item():.6g}, "
                f"max {abar.max().item():.6g}"
            )
        previous = torch.cat([abar.new_ones(1), abar[:-1]])
        if not (abar < previous).all():
            k = int((abar >= previous).nonzero()[0])
            raise ValueError(
                f"alphas_cumprod must strictly decrease (every step adds noise); "
                f"alphas_cumprod[{k}] = {abar[k].item():.6g} >= the value before it "
                f"({previous[k].item():.6g})"
            )
        if (abar[:-1] == 0).any():
            raise ValueError("alphas_cumprod may be 0 only at the last step")
        return cls._from_log_alphas_cumprod(
            torch.log(abar), name, _as_timesteps(timesteps, len(abar))
        )

    @classmethod
    def _from_log_alphas_cumprod(
        cls, log_abar: torch.Tensor, name: str, timesteps: torch.Tensor | None
    ) -> Schedule:
        """From a strictly decreasing log abar <= 0 (float64): beta_t = -expm1(delta_t),
        alpha_t = exp(delta_t), delta_t = log abar_t - log abar_{t-1}, log abar_{-1} = 0."""
        log_prev = torch.cat([log_abar.new_zeros(1), log_abar[:-1]])
        delta = log_abar - log_prev
        betas, alphas = -torch.expm1(delta), torch.exp(delta)
        return cls(betas, alphas, log_abar, timesteps, name)

    # ---- public tables (float64 copies) --------------------------------------------------

    @property
    def num_steps(self) -> int:
        return len(self._betas)

    @property
    def betas(self) -> torch.Tensor:
        return self._betas.clone()

    @property
    def alphas(self) -> torch.Tensor:
        return self._alphas.clone()

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.exp(self._log_alphas_cumprod)

    @property
    def sqrt_alphas_cumprod(self) -> torch.Tensor:
        return torch.exp(0.5 * self._log_alphas_cumprod)

    @property
    def sqrt_one_minus_alphas_cumprod(self) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(self._log_alphas_cumprod))

    @property
    def snr(self) -> torch.Tensor:
        """abar / (1 - abar); 0 at a zero-terminal-SNR last step."""
        return torch.exp(self.log_snr)

    @property
    def log_snr(self) -> torch.Tensor:
        """log abar - log(1 - abar); -inf at a zero-terminal-SNR last step."""
        log_abar = self._log_alphas_cumprod
        return log_abar - torch.log(-torch.expm1(log_abar))

    @property
    def timesteps(self) -> torch.Tensor:
        """The original step index of each step (``arange`` unless respaced)."""
        return self._timesteps.clone()

    @property
    def has_zero_terminal_snr(self) -> bool:
        return bool(self._log_alphas_cumprod[-1] == -math.inf)

    # ---- derived schedules -----------------------------------------------------------------

    def rescale_zero_terminal_snr(self) -> Schedule:
        """A new schedule whose last step has SNR 0 (Lin et al. 2023, arXiv 2305.08891, Alg. 1).

        sqrt(abar) is shifted so its last value is 0 and scaled so its first is unchanged:
        sqrt(abar)' = (sqrt(abar) - sqrt(abar_T)) * sqrt(abar_0) / (sqrt(abar_0) - sqrt(abar_T)).
        """
        root = self.sqrt_alphas_cumprod
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * (first / (first - last))
        root[-1] = 0.0  # exactly zero, not a rounding residue
        return Schedule.from_alphas_cumprod(
            root**2, name=f"{self.name}+zero_snr", timesteps=self._timesteps
        )

    def shifted(self, s: float) -> Schedule:
        """This schedule shifted by s > 0 in log-SNR: lambda'_t = lambda_t - 2 log s, i.e.

            abar'_t = abar_t / (abar_t + s^2 (1 - abar_t))

        (``noisejump.schedules.shift``; Hoogeboom et al. 2023, arXiv 2301.11093, section
        3.1, shift the cosine schedule so, with s = d / 64). Still variance preserving, the
        same steps and ``timesteps``; a zero terminal SNR stays zero. Computed in float64 as
        log abar' = log sigmoid(lambda') = -softplus(-lambda'), accurate at the smallest
        steps where 1 - abar ~ 1e-4.
        """
        s = check_shift(s)
        if s == 1.0:
            return self
        lam = self.log_snr - 2.0 * math.log(s)
        log_abar = -softplus(-lam)
        if not bool((log_abar[1:] < log_abar[:-1]).all()):
            raise ValueError(
                f"shift {s:g}: two steps of the shifted schedule coincide in float64 "
                "(its SNRs are too far from 1 to tell them apart); use a smaller shift"
            )
        shifted = Schedule._from_log_alphas_cumprod(log_abar, f"{self.name}*{s:g}", self._timesteps)
        shifted._draw_log_snr = self._reference_log_snr()
        return shifted

    def time_of(self, x: Any, space: str = "u") -> torch.Tensor:
        """The steps (int64) of timestep-sampler draws ``x`` (float64, ``noisejump.objective``):

        "u"      u in [0, 1] -> floor(u T), clamped to [0, T - 1]
        "sigma"  a noise level -> the step whose sigma_k = exp(-lambda_k / 2) is the
                 nearest in log sigma (the bins of ``step_edges("sigma")``); levels
                 beyond the table land on its first or last step. After ``shifted``
                 the sigma_k are the unshifted table's: a shift keeps the time axis
                 (the steps), so it moves every sampler's law of log-SNRs
        """
        x = torch.as_tensor(x, dtype=F64)
        if space == "u":
            return (x * self.num_steps).to(torch.int64).clamp(0, self.num_steps - 1)
        if space == "sigma":
            inner = self._sigma_edges().to(x.device)[1:-1]
            return torch.searchsorted(inner, x.contiguous(), right=True)
        raise ValueError(f"space must be 'u' or 'sigma', got {space!r}")

    def step_edges(self, space: str = "u") -> torch.Tensor:
        """The T + 1 edges (float64) in a sampler's space of the draws that ``time_of``
        maps to each step: step k takes [e_k, e_{k+1}). "u": k / T; "sigma": 0, the
        geometric means sqrt(sigma_{k-1} sigma_k) of neighbouring steps, inf. A sampler's
        mass on step k is cdf(e_{k+1}) - cdf(e_k)."""
        if space == "u":
            return torch.arange(self.num_steps + 1, dtype=F64) / self.num_steps
        if space == "sigma":
            return self._sigma_edges()
        raise ValueError(f"space must be 'u' or 'sigma', got {space!r}")

    def _reference_log_snr(self) -> torch.Tensor:
        return self.log_snr if self._draw_log_snr is None else self._draw_log_snr.clone()

    def _sigma_edges(self) -> torch.Tensor:
        log_sigma = -0.5 * self._reference_log_snr()  # +inf at a zero terminal SNR
        middle = torch.exp(0.5 * (log_sigma[1:] + log_sigma[:-1]))
        return torch.cat([middle.new_zeros(1), middle, middle.new_full((1,), math.inf)])

    def respace(
        self,
        steps: int | Sequence[int] | torch.Tensor,
        *,
        spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> Schedule:
        """A schedule on a subset of steps that keeps abar at every kept step.

        ``steps`` is a count n, spread over the T steps by ``spacing``, or the increasing
        step indices to keep. The spacings are the peers' (``noisejump.schedules.spacing``):

            "linspace"  round(linspace(0, T - 1, n)): 0, 20, 41, ..., 999 for n = 50 of
                        1000 (the default; diffusers' timestep_spacing="linspace")
            "leading"   k floor(T / n) + steps_offset: 0, 20, ..., 980 (+ offset)
                        (diffusers' "leading"; Stable Diffusion uses steps_offset=1)
            "trailing"  round(T - k T / n) - 1: 19, 39, ..., 999 (diffusers' "trailing")
            "ddim"      guided-diffusion's space_timesteps(T, "ddimN"): stride s with
                        exactly n steps 0, s, 2s, ... (0, 20, ..., 980); refused where
                        no integer stride gives n, as there
            "sections"  guided-diffusion's space_timesteps(T, "c1,c2,..."): ``steps`` a
                        count or a sequence of per-section counts

        ``steps_offset`` is diffusers' config value: "leading" adds it, "linspace" and
        "trailing" ignore it, as diffusers does. The new betas are 1 - abar_k / abar_prev
        (Nichol & Dhariwal 2021, arXiv 2102.09672, section 4); ``timesteps`` keeps the
        original indices, which is what a model trained on the full schedule is fed.
        """
        steps = _from_numpy(steps)
        if spacing == "sections" or isinstance(steps, int):  # a count
            keep = spaced_steps(self.num_steps, steps, spacing, steps_offset=steps_offset)
        else:
            if spacing != "linspace" or steps_offset:
                raise TypeError(
                    f"respace: spacing={spacing!r} and steps_offset={steps_offset!r} apply "
                    "to a count of steps; explicit step indices are kept as given"
                )
            keep = torch.as_tensor(steps)
            if keep.dtype.is_floating_point or keep.dtype == torch.bool or keep.dim() != 1:
                raise TypeError("respace: steps must be an int or a 1-D sequence of integers")
            keep = keep.long().cpu()
            if len(keep) == 0 or (keep[1:] <= keep[:-1]).any():
                raise ValueError("respace: steps must be non-empty and strictly increasing")
            if keep[0] < 0 or keep[-1] >= self.num_steps:
                raise ValueError(f"respace: steps must lie in [0, {self.num_steps - 1}]")
        respaced = Schedule.from_alphas_cumprod(
            self.alphas_cumprod[keep],
            name=f"{self.name}[{len(keep)}]",
            timesteps=self._timesteps[keep],
        )
        if self._draw_log_snr is not None:
            respaced._draw_log_snr = self._draw_log_snr[keep]
        return respaced

    # ---- the interface ForwardProcess uses ---------------------------------------------------

    def _table(
        self, name: str, device: torch.device | str, dtype: torch.dtype = F64
    ) -> torch.Tensor:
        """A cached copy of an internal table on ``device`` in ``dtype`` (built in float64).

        Names: ``signal``/``sigma`` (length T), ``signal_sigma`` (both, 2 x (T + 1): the
        last column is step -1, the data (1, 0), so that index -1 reads it),
        ``log_alphas_cumprod_x0`` (length T + 1, entry 0 is step -1, the data),
        ``sqrt_alphas``/``sqrt_betas`` (one chain step). Private: the process and its
        helpers read it; the public tables (``alphas_cumprod``, ...) are fresh copies.
        """
        key = (name, device, dtype)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._float64_table(name).to(device=device, dtype=dtype)
            self._cache[key] = cached
        return cached

    def _float64_table(self, name: str) -> torch.Tensor:
        log_abar = self._log_alphas_cumprod
        if name == "signal":
            return torch.exp(0.5 * log_abar)
        if name == "sigma":
            return torch.sqrt(-torch.expm1(log_abar))
        if name == "signal_sigma":
            pair = torch.stack([self._float64_table("signal"), self._float64_table("sigma")])
            data = torch.tensor([[1.0], [0.0]], dtype=F64)  # step -1, read at index -1
            return torch.cat([pair, data], dim=1)
        if name == "log_alphas_cumprod_x0":
            return torch.cat([log_abar.new_zeros(1), log_abar])
        if name == "sqrt_alphas":
            return torch.sqrt(self._alphas)
        if name == "sqrt_betas":
            return torch.sqrt(self._betas)
        raise KeyError(name)

    def steps(
        self, t: Any, like: torch.Tensor, *, name: str = "t", lowest: int = 0, validate: bool = True
    ) -> Any:
        """Validate step(s) ``t`` for a sample ``like`` and place them for broadcasting.

        Returns a Python int, or an int64 tensor on ``like.device``: 0-d for one step,
        shaped (B, 1, ..., 1) for one step per sample, or, for a ``t`` with as many
        dimensions as ``like`` that broadcasts to its shape, that shape (one step per
        element: element i stops after its own t_i steps). ``lowest`` is -1 where the data
        itself (step -1) is allowed. Any integer dtype (unsigned included) and NumPy
        integers are accepted; a tensor of steps lives on ``like``'s device or on the CPU.
        The range is checked where that costs no device sync and no graph break
        (``noisejump.checks``): eagerly for ints and CPU tensors, else by an asynchronous
        assert inside the graph (CUDA tensors, torch.compile), or not at all when
        ``validate`` is False.
        """
        highest = self.num_steps - 1
        if type(t) is int:  # the common case first: no tensor work at all
            if not lowest <= t <= highest:
                raise ValueError(f"{name} must be integers in [{lowest}, {highest}], got {t}")
            return t
        allowed = f"integers in [{lowest}, {highest}]"
        t = _from_numpy(t)
        if isinstance(t, bool) or (isinstance(t, torch.Tensor) and t.dtype == torch.bool):
            raise TypeError(f"{name} must be {allowed}, got a boolean")
        if isinstance(t, float) or (isinstance(t, torch.Tensor) and not _is_integer(t)):
            kind = t.dtype if isinstance(t, torch.Tensor) else "float"
            raise TypeError(
                f"{name} must be {allowed} for a discrete schedule, got {kind}; "
                "floating t belongs to a continuous-time process"
            )
        if isinstance(t, int):
            return self.steps(t, like, name=name, lowest=lowest)
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be an int or an integer tensor, got {type(t).__name__}")
        if t.dim() > 1 and not broadcasts_per_element(t.shape, like.shape):
            raise ValueError(
                f"{name} must be 0-d, 1-D (one step per sample) or have as many dimensions as "
                f"the sample and broadcast to its shape {tuple(like.shape)} (one step per "
                f"element), got shape {tuple(t.shape)}"
            )
        if t.dim() == 1:
            batch = like.shape[0] if like.dim() > 0 else None
            if batch != len(t):
                raise ValueError(
                    f"{name} has {len(t)} steps but the sample's batch (first dimension) is "
                    f"{batch}; give one step per sample or a single step"
                )
        check_device(t, like.device, name)
        t = as_int64(t, name, allowed)
        check_range(t, lowest, highest, name=name, allowed=allowed, validate=validate)
        if validate and not host_readable(t):
            # The assert is asynchronous: keep every gather in bounds so that it is the
            # assert, naming the argument, that reports a bad step.
            t = t.clamp(lowest, highest)
        if t.device != like.device:
            # non_blocking only towards a device: a device-to-host copy must finish first.
            t = t.to(like.device, non_blocking=like.device.type != "cpu")
        if t.dim() == 1 and like.dim() > 1:
            t = t.reshape((-1,) + (1,) * (like.dim() - 1))
        return t

    def marginal(
        self, t: Any, device: torch.device | str, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(signal_t, sigma_t) of q(x_t | x0) = N(signal_t x0, sigma_t^2 I), gathered at t;
        step -1 (the data) gives (1, 0).

        Fresh tensors of t's shape (one gather from a cached two-row table whose last column
        is the data, so that index -1 reads it at no cost): changing them changes nothing
        else."""
        pair = gather(self._table("signal_sigma", device, dtype), t)
        if isinstance(t, int):
            pair = pair.clone()  # an int index gives a view of the table
        return pair[0], pair[1]

    def transition(
        self, s: Any, t: Any, device: torch.device | str, dtype: torch.dtype = F64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_{t|s}, sigma^2_{t|s}) of q(x_t | x_s) = N(alpha_{t|s} x_s, sigma^2_{t|s} I).

        alpha_{t|s} = sqrt(abar_t / abar_s), sigma^2_{t|s} = 1 - abar_t / abar_s
        (Kingma et al. 2021, eq. 19), with abar_{-1} = 1; computed in float64 as
        exp(delta / 2) and -expm1(delta), delta = log abar_t - log abar_s.
        """
        log_abar = self._table("log_alphas_cumprod_x0", device)
        delta = gather(log_abar, t + 1) - gather(log_abar, s + 1)  # entry 0 is step -1
        return torch.exp(0.5 * delta).to(dtype), (-torch.expm1(delta)).to(dtype)

    def __repr__(self) -> str:
        abar = self.alphas_cumprod
        return (
            f"Schedule({self.name!r}, num_steps={self.num_steps}, "
            f"alphas_cumprod=[{abar[0].item():.6g} .. {abar[-1].item():.6g}])"
        )


def gather(table: torch.Tensor, t: Any) -> torch.Tensor:
    """table[..., t] for an int or an integer tensor t of any shape (the result has
    table.shape[:-1] + t.shape). A tensor indexes by its flattened values: a 0-d tensor
    index would be read on the host (a device sync, a break in a compiled graph)."""
    if isinstance(t, torch.Tensor):
        return table[..., t.reshape(-1)].reshape(table.shape[:-1] + t.shape)
    return table[..., t]


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.dtype.is_floating_point or t.dtype.is_complex)


def _as_table(values: Any, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        table = values.detach().to(device="cpu", dtype=F64).clone()
    else:
        try:
            table = torch.as_tensor(values, dtype=F64).clone()
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(
                f"{name} must be a 1-D sequence or tensor of numbers, got {values!r:.60}"
            ) from error
    if table.dim() != 1 or len(table) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(table.shape)}")
    if not torch.isfinite(table).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return table


def _as_timesteps(timesteps: Any, n: int) -> torch.Tensor | None:
    """The original step index of each of the n steps: n integers >= 0, increasing.

    Refused, never rounded: a float index (0.5, 1.7) names no step of the original table.
    """
    if timesteps is None:
        return None
    values = _from_numpy(timesteps)
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    else:
        values = [_from_numpy(k) for k in values] if isinstance(values, Sequence) else values
        if not isinstance(values, list) or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in values
        ):
            raise TypeError(f"timesteps must be a sequence of ints, got {timesteps!r}")
        values = torch.tensor(values, dtype=torch.int64)
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(f"timesteps must be integers (step indices), got {values.dtype}")
    values = values.to(torch.int64).clone()
    if values.shape != (n,):
        raise ValueError(f"timesteps must have shape ({n},), got {tuple(values.shape)}")
    if (values < 0).any() or (values[1:] <= values[:-1]).any():
        raise ValueError(
            f"timesteps must be step indices >= 0 in increasing order, got {values.tolist()}"
        )
    return values


# ---- named schedules ----------------------------------------------------------------------


def _linear(n: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Ho et al. 2020, section 4: beta linear from beta_start to beta_end."""
    return torch.linspace(beta_start, beta_end, n, dtype=F64)


def _scaled_linear(n: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Latent diffusion (Rombach et al. 2022): sqrt(beta) linear, then squared."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=F64) ** 2


def _cosine(
    n: int, beta_start: float, beta_end: float, s: float = 0.008, max_beta: float = 0.999
) -> torch.Tensor:
    """Nichol & Dhariwal 2021 (arXiv 2102.09672, eq. 17): abar(u) = cos^2(pi/2 (u+s)/(1+s)),
    beta_i = min(1 - abar((i+1)/n) / abar(i/n), max_beta). beta_start/beta_end are unused."""
    u = torch.arange(n + 1, dtype=F64) / n
    abar = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - abar[1:] / abar[:-1], max=max_beta)


def _sigmoid(n: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """GeoDiff (Xu et al. 2022), as diffusers: sigmoid(linspace(-6, 6)) scaled to the range."""
    return torch.sigmoid(torch.linspace(-6, 6, n, dtype=F64)) * (beta_end - beta_start) + beta_start


_NAMED = {
    "linear": _linear,
    "scaled_linear": _scaled_linear,
    "squaredcos_cap_v2": _cosine,
    "cosine": _cosine,
    "sigmoid": _sigmoid,
}


def schedule_names() -> list[str]:
    """Names accepted by [`get_schedule`][noisejump.get_schedule] (``cosine`` is
    ``squaredcos_cap_v2``)."""
    return list(_NAMED)


def get_schedule(
    name: str,
    num_steps: int = 1000,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    rescale_zero_terminal_snr: bool = False,
    **kwargs: Any,
) -> Schedule:
    """A named schedule, equal to diffusers' DDPMScheduler for the same configuration.

    Names: ``linear``, ``scaled_linear`` (Stable Diffusion uses beta_start=0.00085,
    beta_end=0.012), ``squaredcos_cap_v2``/``cosine`` (kwargs ``s=0.008``,
    ``max_beta=0.999``) and ``sigmoid``. ``rescale_zero_terminal_snr`` applies Lin et al.
    2023 as diffusers' ``rescale_betas_zero_snr`` does.
    """
    if name not in _NAMED:
        raise ValueError(f"unknown schedule {name!r}; choose one of {schedule_names()}")
    num_steps = _from_numpy(num_steps)
    beta_start, beta_end = _from_numpy(beta_start), _from_numpy(beta_end)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not 0 < beta_start <= beta_end <= 1:
        raise ValueError(
            f"need 0 < beta_start <= beta_end <= 1, got beta_start={beta_start}, "
            f"beta_end={beta_end}"
        )
    extra = set(kwargs) - ({"s", "max_beta"} if _NAMED[name] is _cosine else set())
    if extra:
        raise TypeError(f"schedule {name!r} takes no argument(s) {sorted(extra)}")
    betas = _NAMED[name](num_steps, beta_start, beta_end, **kwargs)
    schedule = Schedule.from_betas(betas, name=name)
    return schedule.rescale_zero_terminal_snr() if rescale_zero_terminal_snr else schedule


class ScheduleLike(Protocol):
    """What ``ForwardProcess`` needs from a schedule (discrete, continuous-time or a view).

    ``steps`` validates and places t; ``marginal`` gives (signal_t, sigma_t) of
    q(x_t | x0); ``transition`` gives (alpha_{t|s}, sigma^2_{t|s}) of q(x_t | x_s).
    """

    def steps(
        self,
        t: Any,
        like: torch.Tensor,
        *,
        name: str = ...,
        lowest: int = ...,
        validate: bool = ...,
    ) -> Any: ...

    def marginal(
        self, t: Any, device: Any, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def transition(
        self, s: Any, t: Any, device: Any, dtype: torch.dtype = ...
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
