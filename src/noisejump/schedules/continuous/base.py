"""The protocol every continuous-time schedule follows, written once.

A continuous-time Gaussian process has q(x_t | x0) = N(signal(t) x0, sigma(t)^2 S) for a
float time t per sample. ``ForwardProcess`` asks a schedule for three things (see
``noisejump.schedules``): ``steps`` (validate and place t), ``marginal`` (signal_t, sigma_t) and
``transition`` (alpha_{t|s}, sigma^2_{t|s}). Here they derive from one function per
schedule, ``log_signal_sigma(t)`` in float64, so each schedule is a few lines of formula.

Notation (Kingma et al. 2021, VDM, arXiv 2107.00630; Song et al. 2021, arXiv 2011.13456):

    signal, sigma    coefficients of x0 and e in x_t            (VDM's alpha_t, sigma_t)
    log_snr          lambda_t = 2 (log signal_t - log sigma_t)   (VDM's -gamma(t))
    alpha_{t|s}      signal_t / signal_s                         (VDM eq. 19)
    sigma^2_{t|s}    sigma_t^2 - alpha_{t|s}^2 sigma_s^2 = sigma_t^2 (1 - exp(lambda_t - lambda_s))

The last form, -expm1(lambda_t - lambda_s) sigma_t^2, is accurate when s is close to t
(no cancellation). As for discrete schedules, s = -1 names the clean data itself (signal 1,
sigma 0, lambda = +inf), the start of a jump from x0 and the posterior's target; for most
schedules time 0 is the data too, but a user's log-SNR function may stop short of +inf.

Each family also states its relation between signal and sigma as a function of lambda
(``log_signal_sigma_from_log_snr``): that is what ``shifted(s)`` keeps while it moves
lambda to lambda - 2 log s (``noisejump.schedules.shift``). Training times: a timestep
sampler (``noisejump.objective``) draws u in [0, 1] or a noise level sigma; ``time_of``
maps a draw to this schedule's time (u -> t = u, sigma -> the t with
lambda_t = -2 log sigma) and ``sample_t`` draws keyed, float32 times through it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..._numpy import from_numpy
from ...checks import broadcasts_per_element, check_device, check_values
from ..shift import softplus

F64 = torch.float64
BISECTION_STEPS = 64
DATA = -1.0  # the time that names x0 itself
TimeLike = float | int | torch.Tensor
DeviceLike = torch.device | str | None


class ContinuousSchedule:
    """Base class: a Gaussian forward process with float time t per sample.

    Subclasses set ``t_max`` (``math.inf`` for an unbounded time such as EDM's sigma) and
    ``time_name``, and implement
    [`log_signal_sigma`][noisejump.continuous.ContinuousSchedule.log_signal_sigma].
    """

    is_continuous = True
    #: The smallest valid time (for EDM a sigma, valid only as the data, -1 aside).
    t_min = 0.0
    #: The largest valid time.
    t_max = 1.0
    #: True where the time is the noise level sigma itself (EDM): sigma 0 is the data, valid
    #: only as a jump's start or the posterior's target.
    t_is_sigma = False
    #: What the time variable is called in error messages.
    time_name = "t"
    name = "continuous"

    # ---- the formulas a subclass provides ---------------------------------------------------

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log signal_t, log sigma_t) for a float64 tensor t inside the valid range."""
        raise NotImplementedError

    def log_signal_sigma_from_log_snr(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The family's relation: (log signal, log sigma) of the member with log-SNR ``lam``
        (float64; +inf the data, -inf pure noise). Variance preserving by default:
        signal^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda), as -softplus(-/+lambda) / 2.
        """
        return -0.5 * softplus(-lam), -0.5 * softplus(lam)

    def time_at_log_snr(self, lam: Any) -> torch.Tensor:
        """The time t with lambda_t = ``lam`` (float64), clamped to [t_min, t_max] where
        ``lam`` lies beyond the schedule's range. By bisection here (lambda decreases);
        the families with a closed form override it."""
        lam = torch.as_tensor(lam, dtype=F64)
        lo = torch.full_like(lam, self.t_min)
        hi = torch.full_like(lam, self.t_max)
        for _ in range(BISECTION_STEPS):  # halves [t_min, t_max] down to its last bit
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # lambda_mid > lam: the time is later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    # ---- shifts and training times -------------------------------------------------------------

    def shifted(self, s: float) -> ContinuousSchedule:
        """This schedule shifted by s > 0 in log-SNR: lambda_s(t) = lambda(t) - 2 log s at the
        same time t, with the family's relation between signal and sigma kept
        (``log_signal_sigma_from_log_snr``; ``noisejump.schedules.shift``). The time the
        model sees is unchanged: t, not a shifted t.
        """
        from .shifted import Shifted  # the subclass lives in its own module

        return Shifted(self, s)

    def time_of(self, x: Any, space: str = "u") -> torch.Tensor:
        """The schedule's time (float64) of sampler draws ``x`` in ``space``.

        ``"u"`` (u in [0, 1]): t = u, for schedules whose time is [0, 1] (EDM refuses it:
        its time is a noise level). ``"sigma"`` (a noise level in (0, inf), as EDM's
        log-normal draws): the t with lambda_t = -2 log sigma, clamped to [t_min, t_max]
        where the schedule does not reach that log-SNR.
        """
        x = torch.as_tensor(x, dtype=F64)
        if space == "u":
            if self.t_is_sigma:
                raise ValueError(
                    f"{self!r} takes a noise level sigma as its time, not u in [0, 1]; draw "
                    "sigma (get_sampler('log_normal'), or any sampler on sigma)"
                )
            return self.t_min + x * (self.t_max - self.t_min)
        if space == "sigma":
            return self.time_at_log_snr(-2.0 * torch.log(x))
        raise ValueError(f"space must be 'u' or 'sigma', got {space!r}")

    def default_sampler(self) -> Any:
        """The timestep sampler ``sample_t`` uses by default: uniform t."""
        from ...objective.samplers import get_sampler  # objective sits above schedules

        return get_sampler("uniform")

    def sample_t(
        self,
        batch: int,
        *,
        sampler: Any = None,
        seed: int | None = None,
        keys: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``batch`` training times, float32 by default: ``sampler``'s draws (this schedule's
        ``default_sampler`` when None) mapped by ``time_of``.

        Keyed with ``seed`` and ``keys`` (one key per sample: time b depends only on
        (seed, keys[b]), ``noisejump.objective``), else from ``generator``. A sampler that
        reweights its draws (importance) is refused here: use
        ``noisejump.objective.sample_time``, which returns the weights too.
        """
        from ...objective.samplers import sample_time  # objective sits above schedules

        chosen = self.default_sampler() if sampler is None else sampler
        if getattr(chosen, "stateful", False):
            raise ValueError(
                f"sample_t returns times only, but {chosen!r} weights its draws; use "
                "noisejump.objective.sample_time(schedule, sampler, n) for (t, weight)"
            )
        t, _ = sample_time(
            self,
            chosen,
            batch,
            seed=seed,
            keys=keys,
            generator=generator,
            device=device,
            dtype=dtype,
        )
        return t

    # ---- derived quantities (float64) ---------------------------------------------------------

    def log_snr(self, t: TimeLike) -> torch.Tensor:
        """lambda_t = log(signal_t^2 / sigma_t^2), float64; +inf for the data (t = -1)."""
        log_signal, log_sigma = self._logs(torch.as_tensor(t, dtype=F64))
        return 2.0 * (log_signal - log_sigma)

    def signal_sigma(self, t: TimeLike) -> tuple[torch.Tensor, torch.Tensor]:
        """(signal_t, sigma_t) in float64 for a time or tensor of times (not range-checked)."""
        log_signal, log_sigma = self._logs(torch.as_tensor(t, dtype=F64))
        return torch.exp(log_signal), torch.exp(log_sigma)

    def _logs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log_signal_sigma with t = -1 read as the data: (0, -inf)."""
        data = t == DATA
        log_signal, log_sigma = self.log_signal_sigma(torch.where(data, self.t_min, t))
        zero = torch.zeros_like(log_signal)
        return torch.where(data, zero, log_signal), torch.where(data, zero - math.inf, log_sigma)

    # ---- the interface ForwardProcess uses ------------------------------------------------------

    def steps(
        self,
        t: TimeLike,
        like: torch.Tensor,
        *,
        name: str = "t",
        lowest: int = 0,
        validate: bool = True,
    ) -> torch.Tensor:
        """Validate float time(s) ``t`` for a sample ``like`` and place them for broadcasting.

        Returns a float64 tensor on ``like.device``: 0-d for one time, shaped (B, 1, ..., 1)
        for one time per sample, or, for a ``t`` with as many dimensions as ``like`` that
        broadcasts to its shape, that shape (one time per element, as discrete steps).
        ``lowest`` = -1 (a jump's start, the posterior's target, a clean element) also
        admits the clean data, -1; for schedules whose time is a sigma (EDM), sigma 0 is
        admitted only then. CPU values are range-checked eagerly; CUDA tensors with an
        asynchronous assert inside the graph (no host sync, no graph break; also while
        torch.compile traces), or not at all when ``validate`` is False
        (``noisejump.checks``).
        """
        t = from_numpy(t)
        if isinstance(t, bool) or (isinstance(t, torch.Tensor) and t.dtype == torch.bool):
            raise TypeError(f"{name} must be {self._allowed(lowest)}, got a boolean")
        if isinstance(t, (int, float)):
            t = torch.tensor(float(t), dtype=F64)
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a float or a tensor of times, got {type(t).__name__}")
        if t.dim() > 1 and not broadcasts_per_element(tuple(t.shape), tuple(like.shape)):
            raise ValueError(
                f"{name} must be 0-d, 1-D (one time per sample) or have as many dimensions as "
                f"the sample and broadcast to its shape {tuple(like.shape)} (one time per "
                f"element), got shape {tuple(t.shape)}"
            )
        if t.dim() == 1 and (like.dim() == 0 or like.shape[0] != len(t)):
            batch = like.shape[0] if like.dim() > 0 else None
            raise ValueError(
                f"{name} has {len(t)} times but the sample's batch (first dimension) is "
                f"{batch}; give one time per sample or a single time"
            )
        check_device(t, like.device, name)
        t = t.to(F64)
        check_values(
            t,
            lambda v: self._in_range(v, lowest),
            name=name,
            allowed=self._allowed(lowest),
            validate=validate,
        )
        t = t.to(device=like.device, dtype=F64, non_blocking=like.device.type != "cpu")
        if t.dim() == 1:
            t = t.reshape((-1,) + (1,) * (like.dim() - 1))
        return t

    def marginal(
        self, t: TimeLike, device: DeviceLike, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(signal_t, sigma_t) of q(x_t | x0) = N(signal_t x0, sigma_t^2 S), in ``dtype``."""
        signal, sigma = self.signal_sigma(torch.as_tensor(t, dtype=F64, device=device))
        return signal.to(dtype), sigma.to(dtype)

    def transition(
        self, s: TimeLike, t: TimeLike, device: DeviceLike, dtype: torch.dtype = F64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_{t|s}, sigma^2_{t|s}) of q(x_t | x_s) for s <= t (s = -1: the data).

        alpha_{t|s} = signal_t / signal_s and sigma^2_{t|s} = -expm1(lambda_t - lambda_s)
        sigma_t^2 (Kingma et al. 2021, eq. 19 and 33), from logs in float64; s = t gives
        (1, 0) exactly.
        """
        s = torch.as_tensor(s, dtype=F64, device=device)
        t = torch.as_tensor(t, dtype=F64, device=device)
        log_signal_s, log_sigma_s = self._logs(s)
        log_signal_t, log_sigma_t = self._logs(t)
        alpha = torch.exp(log_signal_t - log_signal_s)
        # lambda_t - lambda_s, written so that s = data (lambda_s = +inf) gives -inf.
        delta = 2.0 * ((log_signal_t - log_sigma_t) - (log_signal_s - log_sigma_s))
        sigma2 = -torch.expm1(delta) * torch.exp(2.0 * log_sigma_t)
        same = s == t
        alpha = torch.where(same, torch.ones_like(alpha), alpha)
        # sigma_t = 0 (t is the data: -1, or time 0 of VP, sub-VP and flow matching, sigma 0
        # of EDM): then sigma_s = 0 too and nothing is added, where delta reads inf - inf.
        sigma2 = torch.where(same | (log_sigma_t == -math.inf), torch.zeros_like(sigma2), sigma2)
        return alpha.to(dtype), sigma2.to(dtype)

    # ---- helpers ---------------------------------------------------------------------------

    def _in_range(self, t: torch.Tensor, lowest: int) -> torch.Tensor:
        closed = lowest < 0 or not self.t_is_sigma  # EDM: sigma 0 only as the data
        above = t >= self.t_min if closed else t > self.t_min
        ok = above & (t <= self.t_max) & torch.isfinite(t)
        return ok | (t == DATA) if lowest < 0 else ok

    def _allowed(self, lowest: int) -> str:
        closed = lowest < 0 or not self.t_is_sigma
        low = "[" if closed else "("
        high = "inf)" if math.isinf(self.t_max) else f"{self.t_max:g}]"
        data = " (or -1 for the data)" if lowest < 0 else ""
        what = "a float" if self.time_name == "t" else f"a noise level {self.time_name}"
        return f"{what} in {low}{self.t_min:g}, {high}{data}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
