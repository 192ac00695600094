"""Keep probabilities: what a categorical process reads from a schedule.

Notation (Austin et al. 2021, D3PM, arXiv 2107.03006; Sahoo et al. 2024, MDLM, arXiv
2406.07524):

    keep_t        abar_t, the probability that a token is untouched after step (time) t:
                  D3PM's prod_k (1 - beta_k), MDLM's alpha_t
    keep_{t|s}    keep_t / keep_s, untouched between s and t (s = -1: the data, keep 1)
    flip_{t|s}    1 - keep_{t|s}, computed directly (-expm1 of the log ratio): accurate
                  where keep_{t|s} is close to 1
    keep_rate(t)  -keep'(t) / (1 - keep_t), MDLM's continuous-time ELBO weight (eq. 10)

Three kinds of schedule give them:

    Schedule      the Gaussian discrete tables: keep_t = alphas_cumprod[t], one step keeps
                  alpha_k = 1 - beta_k (D3PM's uniform Q_k = (1 - beta_k) I + beta_k/K 11^T
                  gives exactly abar_t = prod (1 - beta_k))
    VP continuous a variance-preserving ContinuousSchedule (signal^2 + sigma^2 = 1: VPSDE,
                  LogSNR, LogLinear): keep_t = signal_t^2, flip_{t|s} = sigma^2_{t|s}
    LogLinear     MDLM's keep_t = 1 - (1 - eps) t on [t_min, 1], eps = t_min = 1e-3

Both read through the schedules' ``transition(s, t)``: (alpha_{t|s}, sigma^2_{t|s}) with
keep_{t|s} = alpha_{t|s}^2 and flip_{t|s} = sigma^2_{t|s} for a variance-preserving
schedule (1 - keep_t / keep_s = sigma^2_{t|s} exactly when signal^2 + sigma^2 = 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._numpy import from_numpy
from ..checks import check_device
from ..schedules.continuous.base import ContinuousSchedule
from ..schedules.discrete import Schedule

__all__ = ["KeepSchedule", "LogLinear"]

F64 = torch.float64
#: Times at which a continuous schedule is checked to be variance preserving, and the
#: largest |signal^2 + sigma^2 - 1| allowed there.
VP_CHECK_POINTS = 257
VP_TOLERANCE = 1e-9
#: MDLM's eps (the keep probability left at t = 1) and its smallest training time.
MDLM_EPS = 1e-3
MDLM_T_MIN = 1e-3


class LogLinear(ContinuousSchedule):
    """MDLM's log-linear keep probability keep(t) = 1 - (1 - eps) t, t in [t_min, 1]
    (Sahoo et al. 2024, arXiv 2406.07524, section 3.5 and its reference code's
    ``LogLinearNoise``: total noise -log(1 - (1 - eps) t); eps = t_min = 1e-3).

    As a Gaussian schedule it is variance preserving: signal^2 = keep(t),
    sigma^2 = (1 - eps) t. Its ELBO weight -keep'(t) / (1 - keep(t)) is 1 / t.
    """

    name = "log-linear"

    def __init__(self, eps: float = MDLM_EPS, t_min: float = MDLM_T_MIN) -> None:
        eps, t_min = from_numpy(eps), from_numpy(t_min)
        for label, value in (("eps", eps), ("t_min", t_min)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"LogLinear: {label} must be a float in (0, 1), got {value!r}")
            if not 0 < value < 1:
                raise ValueError(f"LogLinear: {label} must be in (0, 1), got {value!r}")
        self.eps, self.t_min = float(eps), float(t_min)

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rate = 1.0 - self.eps
        # log keep = log1p(-(1 - eps) t): accurate for small t.
        return 0.5 * torch.log1p(-rate * t), 0.5 * torch.log(rate * t)

    def __repr__(self) -> str:
        return f"LogLinear(eps={self.eps:g}, t_min={self.t_min:g})"


class KeepSchedule:
    """The keep probabilities of a discrete ``Schedule`` or a variance-preserving
    continuous schedule (module docstring); ValueError for any other schedule."""

    def __init__(self, schedule: Any) -> None:
        if isinstance(schedule, Schedule):
            self.is_continuous = False
        elif isinstance(schedule, ContinuousSchedule):
            _check_variance_preserving(schedule)
            self.is_continuous = True
        else:
            raise TypeError(
                "schedule must be a noisejump Schedule (discrete tables) or a variance-"
                "preserving continuous schedule (VPSDE, LogSNR, LogLinear), got "
                f"{type(schedule).__name__}"
            )
        self.schedule = schedule

    @property
    def num_steps(self) -> int:
        if self.is_continuous:
            raise TypeError(f"{self.schedule!r} is continuous-time: it has no number of steps")
        return self.schedule.num_steps

    def steps(self, t: Any, like: torch.Tensor, *, name: str, lowest: int, validate: bool) -> Any:
        """Validated steps (times) placed for broadcasting against the tokens ``like``: 0-d,
        one per sequence (B, 1, ..., 1) or one per token (as many dimensions as ``like``).
        ``lowest`` = -1 admits the data (-1) too."""
        if not self.is_continuous:
            return self.schedule.steps(t, like, name=name, lowest=lowest, validate=validate)
        t = from_numpy(t)
        if not (isinstance(t, torch.Tensor) and t.dim() > 1):
            return self.schedule.steps(t, like, name=name, lowest=lowest, validate=validate)
        # One time per token: the schedule checks a flat copy (its own messages), then the
        # times take the tokens' layout.
        sizes = zip(t.shape, like.shape, strict=False)
        if t.dim() != like.dim() or any(a not in (1, b) for a, b in sizes):
            raise ValueError(
                f"{name} must be 0-d, 1-D (one time per sequence) or have as many dimensions "
                f"as the tokens and broadcast to their shape {tuple(like.shape)} (one time per "
                f"token), got shape {tuple(t.shape)}"
            )
        check_device(t, like.device, name, "the tokens")
        flat = t.reshape(-1)
        flat = self.schedule.steps(flat, flat, name=name, lowest=lowest, validate=validate)
        return flat.reshape(t.shape).to(like.device)

    def keep(self, s: Any, t: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep_{t|s}, flip_{t|s}) in float64 for validated s <= t (s = -1: the data)."""
        alpha, sigma2 = self.schedule.transition(s, t, device, F64)
        return alpha * alpha, sigma2

    def step_keeps(self) -> list[float]:
        """alpha_k = 1 - beta_k of each chain step, as Python floats (no device reads)."""
        if self.is_continuous:
            raise TypeError(f"the chain walks discrete steps; {self.schedule!r} is continuous-time")
        return self.schedule.alphas.tolist()

    def keep_rate(self, t: torch.Tensor) -> torch.Tensor:
        """-keep'(t) / (1 - keep_t), float64 of t's shape (MDLM eq. 10's weight), by
        autograd of keep_t = exp(2 log signal_t) in float64; 1 - keep_t = sigma_t^2."""
        if not self.is_continuous:
            raise TypeError(
                f"MDLM's continuous-time weight needs a continuous schedule; {self.schedule!r} "
                "is discrete (use d3pm_loss, the discrete-time bound)"
            )
        with torch.enable_grad():
            time = t.detach().to(F64).requires_grad_(True)
            log_signal, log_sigma = self.schedule.log_signal_sigma(time)
            keep = torch.exp(2.0 * log_signal)
            (slope,) = torch.autograd.grad(keep.sum(), time)
        return (-slope / torch.exp(2.0 * log_sigma)).detach()

    def __repr__(self) -> str:
        return repr(self.schedule)


def _check_variance_preserving(schedule: ContinuousSchedule) -> None:
    """signal^2 + sigma^2 = 1 within VP_TOLERANCE on a grid of [t_min, t_max]."""
    if math.isinf(schedule.t_max):
        raise ValueError(
            f"{schedule!r} has unbounded time (a noise level): a categorical process reads the "
            "keep probability signal_t^2 of a variance-preserving schedule on a bounded time"
        )
    grid = torch.linspace(schedule.t_min, schedule.t_max, VP_CHECK_POINTS, dtype=F64)
    grid[0] = max(schedule.t_min, 1e-6)  # time 0 is the data, where sigma = 0
    signal, sigma = schedule.signal_sigma(grid)
    excess = (signal * signal + sigma * sigma - 1.0).abs()
    if not bool((excess <= VP_TOLERANCE).all()):
        k = int(excess.argmax())
        raise ValueError(
            f"a categorical process reads the keep probability signal_t^2 from a variance-"
            f"preserving schedule (signal^2 + sigma^2 = 1: VPSDE, LogSNR, LogLinear); "
            f"{schedule!r} has signal^2 + sigma^2 = {float(excess[k] + 1.0):.6g} at "
            f"t = {float(grid[k]):.3g}"
        )
