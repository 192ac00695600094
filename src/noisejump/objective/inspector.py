"""The objective inspector: the weighted epsilon-MSE a training configuration optimises.

Every Gaussian training configuration (process, timestep sampler, prediction target,
per-sample weighting, shift) is a weighted epsilon-MSE over log-SNR (Kingma & Gao 2023,
"Understanding diffusion objectives as the ELBO with simple data augmentation", arXiv
2303.00848, section 2 and appendix D):

    L = integral w(lambda) E ||e - e_hat(x_lambda, lambda)||^2 dlambda,
    w(lambda) = p(lambda) omega(lambda) c(lambda)

with p the law of the training log-SNR (the sampler's density carried to lambda by the
process's time), omega the per-sample weight (``noisejump.objective.weighting``) and c the
target's conversion factor (``noisejump.objective.targets``; v and the flow velocity in
the family's own factors). Nothing is re-derived here: p comes from the sampler's
``pdf``/``cdf``, the map from a draw to lambda from the schedule's ``time_of`` and
``log_snr``, omega from ``Weighting.omega_at`` and c from ``log_conversion_exact``.

    discrete schedule    draw x lands on step k when x is in [e_k, e_{k+1})
                         (``schedule.step_edges``): the step's mass is
                         P_k = cdf(e_{k+1}) - cdf(e_k) and its weight P_k omega(lambda_k)
                         c(lambda_k); shown as a density over a cell around lambda_k
                         (cells end halfway to the neighbouring steps' log-SNRs)
    continuous schedule  x(lambda), the draw whose time has log-SNR lambda (bisection of
                         the monotone lambda(time_of(x))), and p(lambda) = pdf(x) /
                         |d lambda / dx|: by autograd for u draws, 2 / sigma for sigma
                         draws (a sigma draw is a noise level: lambda = -2 log sigma, up to
                         the shift of the schedule)

Normalisation: a discrete schedule's weight is normalised over its steps (the process's
whole log-SNR range). A continuous one's over its range intersected with a window
(default [-20, 20]); the weight outside, integrated out to the range's ends or to
|lambda| = ``TAIL`` (whichever comes first), is reported in units of the weight inside
(``mass_below``, ``mass_above``; inf where it does not die out: at |lambda| = ``TAIL``
the density is still above 1e-9 of its peak and not falling outwards, or a step at
lambda = -inf has an infinite weight). Beyond |lambda| = 50 a draw u of flow matching's
t = sigmoid(-lambda / 2) keeps too few digits in float64 to be followed further.
Integrals are composite Gauss-Legendre (8 nodes per panel of width 0.05 at most inside,
0.25 in the tails).

An importance sampler's draws are reweighted by 1 / (T p_t): its objective is the uniform
sampler's. EDM2's learned weighting is not a function of lambda: it is refused as not
inspectable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..schedules.discrete import Schedule
from .sampler_base import TimestepSampler
from .samplers import get_sampler
from .tables import Importance
from .targets import check_prediction, log_conversion_exact
from .weighting import Weighting, get_weighting

__all__ = ["TAIL", "WINDOW", "ImpliedWeighting", "implied_weighting", "same_objective"]

F64 = torch.float64
#: The default window of log-SNRs a continuous process's weight is normalised over.
WINDOW = (-20.0, 20.0)
#: The tails outside the window are integrated out to |lambda| = TAIL.
TAIL = 50.0
#: Panels of the integration grid are at most this wide (inside the interval, in the
#: tails); Gauss-Legendre nodes per panel.
PANEL = 0.05
TAIL_PANEL = 0.25
NODES = 8
#: A tail still above this fraction of the peak density at |lambda| = TAIL diverges.
DIVERGENT = 1e-9
#: Bisection steps of x(lambda): enough to reach the last bit of u in [0, 1] and of
#: log sigma in [-LOG_SIGMA, LOG_SIGMA].
BISECTION_STEPS = 80
LOG_SIGMA = 400.0
#: Two normalised weights are the same objective when they agree within this relative
#: tolerance at every point of a shared grid where either is above ``FLOOR`` of its peak.
SAME_RTOL = 1e-3
FLOOR = 1e-9


@dataclass(frozen=True)
class ImpliedWeighting:
    """w(lambda) of one configuration (module docstring).

    Attributes:
        lam: the log-SNRs asked for, float64 (N,).
        weight: the normalised w at ``lam``, float64 (N,): its integral over ``interval``
            is 1; 0 outside the process's range.
        interval: (low, high), the log-SNRs the weight is normalised over.
        mass_below, mass_above: the weight below and above ``interval``, in units of the
            weight inside it (0 when the range ends there; inf where it diverges).
        scale: the integral of p omega c over ``interval`` before normalising: the mean
            weighted conversion E[omega c; lambda in interval] of one training draw.
        step_log_snr, step_mass: a discrete process's lambda_k and the normalised weight of
            each step (float64 (T,); a step at lambda = -inf has mass 0 here, its weight
            is in ``mass_below``); None for a continuous process.
    """

    lam: torch.Tensor
    weight: torch.Tensor
    interval: tuple[float, float]
    mass_below: float
    mass_above: float
    scale: float
    step_log_snr: torch.Tensor | None
    step_mass: torch.Tensor | None
    # the normalised CDF inside ``interval``: increasing knots and its values there
    _knots: np.ndarray
    _cdf: np.ndarray

    def cdf(self, lam: Any) -> torch.Tensor:
        """The normalised weight in [interval low, lam], float64 (lam's shape): 0 below
        the interval, 1 above it (piecewise linear between the integration knots)."""
        values = np.interp(np.asarray(lam, dtype=np.float64), self._knots, self._cdf)
        return torch.as_tensor(values, dtype=F64)

    def central_interval(self, fraction: float = 0.9) -> tuple[float, float]:
        """The lambda interval holding ``fraction`` of the weight inside ``interval``,
        with (1 - fraction) / 2 of it on each side."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
        tail = 0.5 * (1.0 - fraction)
        low, high = np.interp([tail, 1.0 - tail], self._cdf, self._knots)
        return float(low), float(high)


def implied_weighting(
    process: Any,
    *,
    sampler: TimestepSampler,
    prediction: str,
    weighting: Weighting | str | None = None,
    lam: Any,
    window: tuple[float, float] = WINDOW,
) -> ImpliedWeighting:
    """w(lambda) = p(lambda) omega(lambda) c(lambda) at float64 log-SNRs ``lam``, normalised
    (module docstring; Kingma & Gao 2023, arXiv 2303.00848).

    Args:
        process: a ``ForwardProcess`` or a schedule (discrete or continuous).
        sampler: the timestep sampler (``get_sampler``), in its own space; the process
            maps its draws to times as in training (``sample_time``).
        prediction: the target (``PREDICTIONS``); refused where training refuses it
            (flow_velocity off flow matching, epsilon at zero terminal SNR).
        weighting: a ``Weighting`` or a name of ``get_weighting`` (default parameters);
            None: no weighting (omega = 1). EDM2's learned weighting is refused.
        lam: log-SNRs where w is returned: finite numbers (any shape; float64).
        window: (low, high) with low < high, finite: the log-SNRs a continuous process's
            weight is normalised over (with its range).
    Returns:
        an [`ImpliedWeighting`][noisejump.objective.inspector.ImpliedWeighting].
    """
    schedule = getattr(process, "schedule", process)
    sampler = _check_sampler(sampler)
    check_prediction(prediction, schedule)
    weighting = _check_weighting(weighting)
    window = _check_window(window)
    lam = _check_lam(lam)

    def weight_of(log_snr: torch.Tensor) -> torch.Tensor:
        return _omega_c(schedule, weighting, prediction, log_snr)

    if isinstance(schedule, Schedule):
        return _discrete(schedule, sampler, weight_of, weighting, prediction, lam)
    if not getattr(schedule, "is_continuous", False):
        raise TypeError(
            f"process must be a ForwardProcess, a Schedule or a continuous schedule, got "
            f"{process!r:.80}"
        )
    return _continuous(schedule, sampler, weight_of, lam, window)


def same_objective(
    first: ImpliedWeighting, second: ImpliedWeighting, rtol: float = SAME_RTOL
) -> bool:
    """Whether two implied weightings, evaluated at the same ``lam`` grid, are the same
    objective: renormalised on that grid (trapezoid), equal within ``rtol`` relative at
    every point where either is above 1e-9 of its peak."""
    if first.lam.shape != second.lam.shape or not torch.equal(first.lam, second.lam):
        raise ValueError("same_objective compares weightings evaluated on the same lam grid")
    grid = first.lam.flatten()
    a, b = _renormalised(grid, first.weight.flatten()), _renormalised(grid, second.weight.flatten())
    larger = torch.maximum(a, b)
    shown = larger > FLOOR * float(larger.max())
    return bool(((a - b).abs() <= rtol * larger)[shown].all())


# ---- the two kinds of process ----------------------------------------------------------------


def _discrete(
    schedule: Schedule,
    sampler: TimestepSampler,
    weight_of: Any,
    weighting: Weighting | None,
    prediction: str,
    lam: torch.Tensor,
) -> ImpliedWeighting:
    """Per-step masses P_k omega(lambda_k) c(lambda_k), normalised over the finite steps."""
    log_snr = schedule.log_snr
    edges = schedule.step_edges(sampler.space)
    probability = (sampler.cdf(edges[1:]) - sampler.cdf(edges[:-1])).clamp(min=0.0)
    finite = torch.isfinite(log_snr)
    raw = torch.zeros_like(log_snr)
    raw[finite] = probability[finite] * weight_of(log_snr[finite])
    scale = float(raw.sum())
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(
            f"the implied weight of {schedule!r} sums to {scale!r} over its steps: nothing "
            "to normalise (the sampler puts no mass on a step of finite log-SNR)"
        )
    mass_below = 0.0
    if not bool(finite.all()):  # the last step of a zero-terminal-SNR schedule
        end = _end_weight(weighting, prediction)
        last = float(probability[~finite].sum())
        mass_below = 0.0 if last == 0 else last * end / scale
    mass = raw / scale
    lam_k = log_snr[finite]
    cells = _cells(lam_k)  # decreasing boundaries, T + 1 of them
    width = cells[:-1] - cells[1:]
    density = mass[finite] / width
    # a point in (cells[k + 1], cells[k]] is step k's: searchsorted on the ascending edges
    ascending = cells.flip(0)
    index = torch.searchsorted(ascending, lam.contiguous(), right=False) - 1
    inside = (lam > ascending[0]) & (lam <= ascending[-1])
    k = (len(lam_k) - 1 - index.clamp(0, len(lam_k) - 1)).clamp(0, len(lam_k) - 1)
    weight = torch.where(inside, density[k], torch.zeros_like(lam))
    cumulative = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(mass[finite].flip(0), 0)])
    return ImpliedWeighting(
        lam=lam,
        weight=weight,
        interval=(float(ascending[0]), float(ascending[-1])),
        mass_below=mass_below,
        mass_above=0.0,
        scale=scale,
        step_log_snr=log_snr.clone(),
        step_mass=mass,
        _knots=ascending.numpy(),
        _cdf=(cumulative / cumulative[-1]).numpy(),
    )


def _continuous(
    schedule: Any,
    sampler: TimestepSampler,
    weight_of: Any,
    lam: torch.Tensor,
    window: tuple[float, float],
) -> ImpliedWeighting:
    """p(lambda) omega c over the range, normalised over range and window."""
    top = float(schedule.log_snr(schedule.t_min))
    bottom = float(schedule.log_snr(schedule.t_max))
    low, high = max(bottom, window[0]), min(top, window[1])
    if not low < high:
        raise ValueError(
            f"the window [{window[0]:g}, {window[1]:g}] misses the log-SNR range "
            f"[{bottom:g}, {top:g}] of {schedule!r}"
        )

    def density(points: torch.Tensor) -> torch.Tensor:
        return _log_snr_density(schedule, sampler, points) * weight_of(points)

    # the integration grid: the tails out to TAIL (or the range's ends) and the interval
    ends = [max(bottom, -TAIL), low, high, min(top, TAIL)]
    widths = (TAIL_PANEL, PANEL, TAIL_PANEL)
    parts = [_panel_integrals(density, ends[i], ends[i + 1], widths[i]) for i in range(3)]
    below, inside, above = (float(part[1].sum()) if len(part[1]) else 0.0 for part in parts)
    if not (math.isfinite(inside) and inside > 0):
        raise ValueError(
            f"the implied weight has integral {inside!r} over [{low:g}, {high:g}]: nothing "
            "to normalise (the sampler puts no mass there)"
        )
    peak = float((parts[1][1] / (parts[1][0][1:] - parts[1][0][:-1])).max())
    mass_below = _tail(below, inside, density, -TAIL, bottom, peak)
    mass_above = _tail(above, inside, density, TAIL, top, peak)
    knots, panels = parts[1]
    cumulative = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(panels, 0)]) / inside
    inside_range = (lam >= bottom) & (lam <= top)
    clipped = lam.clamp(bottom, top)
    weight = torch.where(inside_range, density(clipped) / inside, torch.zeros_like(lam))
    return ImpliedWeighting(
        lam=lam,
        weight=weight,
        interval=(low, high),
        mass_below=mass_below,
        mass_above=mass_above,
        scale=inside,
        step_log_snr=None,
        step_mass=None,
        _knots=knots.numpy(),
        _cdf=cumulative.clamp(max=1.0).numpy(),
    )


# ---- the pieces --------------------------------------------------------------------------------


def _omega_c(
    schedule: Any, weighting: Weighting | None, prediction: str, lam: torch.Tensor
) -> torch.Tensor:
    """omega(lambda) c(lambda) at finite lambda, in the family's own signal and sigma."""
    relation = getattr(schedule, "log_signal_sigma_from_log_snr", None)
    if relation is None:  # a discrete table: variance preserving
        log_signal, log_sigma = -0.5 * _softplus(-lam), -0.5 * _softplus(lam)
    else:
        log_signal, log_sigma = relation(lam)
    log_c = log_conversion_exact(prediction, log_signal, log_sigma)
    if weighting is None:
        return torch.exp(log_c)
    omega = weighting.omega_at(torch.exp(log_signal), torch.exp(log_sigma), prediction)
    return omega * torch.exp(log_c)


def _end_weight(weighting: Weighting | None, prediction: str) -> float:
    """omega c at lambda = -inf (a zero-terminal-SNR step): c is 1 for epsilon and
    +inf for the other targets there; where omega tends to 0 the product is the
    epsilon-MSE weight's limit (omega_p c_p = omega_epsilon for a formula weighting)."""
    omega = 1.0 if weighting is None else weighting.limits(prediction)[1]
    c = 1.0 if prediction == "epsilon" else math.inf
    if omega == 0.0 and c == math.inf and weighting is not None:
        if weighting.name == "uniform":
            return 0.0  # a cap of 0 is refused, so unreachable; kept for clarity
        uncapped = type(weighting)(**{**weighting.parameters, "max_weight": math.inf})
        return uncapped.limits("epsilon")[1]
    return omega * c


def _log_snr_density(schedule: Any, sampler: TimestepSampler, lam: torch.Tensor) -> torch.Tensor:
    """p(lambda) of the sampler's draws on a continuous schedule, for lambda in its range."""
    x = _draw_at(schedule, sampler.space, lam)
    if sampler.space == "sigma":
        slope = 2.0 / x  # lambda = -2 log sigma + constant
    else:
        with torch.enable_grad():
            u = x.detach().requires_grad_(True)
            value = schedule.log_snr(schedule.time_of(u, "u"))
            (slope,) = torch.autograd.grad(value.sum(), u)
        slope = slope.detach().abs()
    pdf = sampler.pdf(x)
    return torch.where(pdf > 0, pdf / slope, torch.zeros_like(pdf))


def _draw_at(schedule: Any, space: str, lam: torch.Tensor) -> torch.Tensor:
    """The draw x whose time has log-SNR ``lam``: bisection of the decreasing
    lambda(time_of(x)), on u in [0, 1] or on log sigma."""
    if space == "sigma":
        lo, hi = torch.full_like(lam, -LOG_SIGMA), torch.full_like(lam, LOG_SIGMA)

        def lam_of(y: torch.Tensor) -> torch.Tensor:
            return schedule.log_snr(schedule.time_of(torch.exp(y), "sigma"))

    else:
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)

        def lam_of(y: torch.Tensor) -> torch.Tensor:
            return schedule.log_snr(schedule.time_of(y, "u"))

    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        later = lam_of(mid) > lam  # lambda still above: the draw lies further on
        lo, hi = torch.where(later, mid, lo), torch.where(later, hi, mid)
    y = 0.5 * (lo + hi)
    return torch.exp(y) if space == "sigma" else y


def _panel_integrals(
    density: Any, a: float, b: float, width: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(knots a = z_0 < ... < z_n = b, integrals over each [z_i, z_i+1]) of ``density``
    by composite Gauss-Legendre; empty for a <= b."""
    if not b > a:
        return torch.tensor([a], dtype=F64), torch.zeros(0, dtype=F64)
    count = max(1, math.ceil((b - a) / width))
    knots = torch.linspace(a, b, count + 1, dtype=F64)
    nodes, weights = (torch.as_tensor(v, dtype=F64) for v in np.polynomial.legendre.leggauss(NODES))
    half = 0.5 * (knots[1:] - knots[:-1])
    middle = 0.5 * (knots[1:] + knots[:-1])
    points = middle[:, None] + half[:, None] * nodes
    values = density(points.flatten()).reshape(points.shape)
    return knots, (values * weights).sum(1) * half


def _tail(
    integral: float, inside: float, density: Any, end: float, range_end: float, peak: float
) -> float:
    """A tail's weight in units of the inside's; inf where the range goes beyond TAIL
    and the density there is still above DIVERGENT of the peak and not falling
    outwards (from |lambda| = TAIL - 5 to TAIL)."""
    if abs(range_end) > TAIL:
        inner = end - math.copysign(5.0, end)
        at_inner, at_end = density(torch.tensor([inner, end], dtype=F64)).tolist()
        if not math.isfinite(at_end) or (at_end > DIVERGENT * peak and at_end >= at_inner):
            return math.inf
    return integral / inside


def _cells(lam_k: torch.Tensor) -> torch.Tensor:
    """Cell boundaries around decreasing log-SNRs: halfway between neighbours, and as far
    beyond the first and last steps (a cell of width 1 for a single step)."""
    if len(lam_k) == 1:
        return torch.cat([lam_k + 0.5, lam_k - 0.5])
    middle = 0.5 * (lam_k[1:] + lam_k[:-1])
    first = lam_k[:1] + 0.5 * (lam_k[:1] - lam_k[1:2])
    last = lam_k[-1:] - 0.5 * (lam_k[-2:-1] - lam_k[-1:])
    return torch.cat([first, middle, last])


def _renormalised(grid: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    total = torch.trapezoid(weight, grid)
    if not float(total) > 0:
        raise ValueError("a weighting is zero on the whole grid: nothing to compare")
    return weight / total


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(x, torch.zeros_like(x))


# ---- argument checks -------------------------------------------------------------------------


def _check_sampler(sampler: Any) -> TimestepSampler:
    if not isinstance(sampler, TimestepSampler):
        raise TypeError(f"sampler must be a TimestepSampler (get_sampler), got {sampler!r:.80}")
    if isinstance(sampler, Importance):  # weight 1 / (T p_t) undoes p_t: uniform steps
        return get_sampler("uniform")
    return sampler


def _check_weighting(weighting: Any) -> Weighting | None:
    if weighting is None:
        return None
    if isinstance(weighting, str):
        weighting = get_weighting(weighting)
    if not getattr(weighting, "inspectable", False) or not isinstance(weighting, Weighting):
        name = getattr(weighting, "name", repr(weighting))
        raise ValueError(
            f"the {name} weighting is not inspectable: it is learned (EDM2's e^-u(sigma)), "
            "not a function of lambda; inspect its base weighting (.base) instead"
        )
    return weighting


def _check_window(window: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in window)
    except (TypeError, ValueError):
        raise TypeError(f"window must be two numbers (low, high), got {window!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"window must be finite with low < high, got {window!r}")
    return low, high


def _check_lam(lam: Any) -> torch.Tensor:
    if isinstance(lam, bool) or (isinstance(lam, torch.Tensor) and lam.dtype == torch.bool):
        raise TypeError("lam must be log-SNR values (real numbers), got booleans")
    try:
        values = torch.as_tensor(lam, dtype=F64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"lam must be log-SNR values (numbers or a tensor), got {lam!r:.80}"
        ) from None
    if not bool(torch.isfinite(values).all()):
        raise ValueError("lam must hold finite log-SNR values (no NaN or inf)")
    return values.detach().cpu().clone()
