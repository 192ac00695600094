"""The protocol every loss weighting follows, written once.

A weighting is a per-sample weight omega(lambda; prediction) of the MSE in the target the
model predicts, a function of the log-SNR lambda = 2 log(signal_t / sigma_t). Each
weighting's formula is written once, for the target its source states it for (its
*native* target), and carried to the others by the conversion factors of
``noisejump.objective.targets`` (Kingma & Gao 2023, arXiv 2303.00848):

    omega_p(lambda) = omega_native(lambda) c_native(lambda) / c_p(lambda)

so the same weighting is the same objective whatever the model predicts: the weighted
epsilon-MSE it optimises is omega_p c_p = omega_native c_native for every p (min-SNR-gamma
is Hang et al. 2023's table of one weight per target this way). The exception is
``uniform`` (weight 1 in whichever target is predicted).

Limits. Near each end a native weight behaves as C e^(kappa lambda) (``asymptotes``) and so
does every conversion factor, so the weight in any target tends to 0, to a constant or to
+inf at lambda = +inf (no noise) and lambda = -inf (no signal: zero terminal SNR, flow
matching's t = 1). ``limits`` gives both; at lambda = +-inf exactly ``omega`` returns them.
Where a weight diverges, ``weights`` refuses a schedule that reaches that end, unless a
cap ``max_weight`` is given: omega is then min(omega, max_weight) everywhere. Nothing
here returns a silent Inf or NaN: an infinite weight is a ValueError (a device-side
assert on CUDA), and finite weights that overflow float32 are refused the same way.

Numerics: every formula is evaluated as log omega in float64 (logaddexp, softplus), so it
is finite for any finite lambda that float64 holds; the weights come back as float32.
While torch.compile traces, the formula is the opaque custom op ``noisejump::loss_weight``
(the compiler would evaluate exp and log in its own way), so compiled weights are the
eager ones bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ...checks import host_readable
from ...noise.base import check_number
from ...schedules.discrete import Schedule
from ..targets import PREDICTIONS, check_target, log_conversion_exact, log_conversion_factor

__all__ = ["Weighting", "check_max_weight", "reached_ends"]

F64 = torch.float64
#: The conversion factors' exponents kappa (c ~ e^(kappa lambda)) at lambda = +inf and -inf;
#: their constants are all 1 (``noisejump.objective.targets``).
CONVERSION_EXPONENTS = {
    "epsilon": (0.0, 0.0),
    "sample": (-1.0, -1.0),
    "v": (0.0, -1.0),
    "flow_velocity": (0.0, -1.0),
}
#: Registered weightings by name, so the custom op (``_op``) can rebuild one from its
#: parameters.
_CLASSES: dict[str, type[Weighting]] = {}


def check_max_weight(value: Any, family: str) -> float:
    """The cap of a weighting: a number in (0, inf]; inf (the default) is no cap."""
    if value == math.inf:
        return math.inf
    return check_number(value, "max_weight", family, low=0.0, open_low=True)


class Weighting:
    """Base class: a loss weight omega(lambda; prediction) (module docstring).

    Subclasses set ``name`` and ``native`` and implement ``_log_native`` (log omega of the
    native target for finite float64 lambda) and ``asymptotes``. ``inspectable`` is True
    for every weighting given by a formula (the objective inspector can read it).
    """

    name: ClassVar[str] = "weighting"
    #: The target the source writes the formula for.
    native: ClassVar[str] = "epsilon"
    inspectable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a weighting, not a shared base of some
            _CLASSES[cls.name] = cls

    def __init__(self, max_weight: float = math.inf) -> None:
        self.max_weight = check_max_weight(max_weight, self.name)
        #: Caches (the parameters are fixed at construction): weights of every step of a
        #: discrete schedule per (schedule, target, device); the (schedule, target) pairs
        #: whose ends were checked.
        self._tables: dict[tuple[Any, str, torch.device], torch.Tensor] = {}
        self._checked: set[tuple[Any, str]] = set()

    # ---- what a subclass provides -----------------------------------------------------------

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        """log omega_native(lambda) for finite float64 lambda."""
        raise NotImplementedError

    def asymptotes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((C, kappa) as lambda -> +inf, (C, kappa) as lambda -> -inf) of the native
        weight: omega_native ~ C e^(kappa lambda), C > 0."""
        raise NotImplementedError

    @property
    def parameters(self) -> dict[str, float]:
        """The constructor's arguments, in order (what ``get_weighting`` takes)."""
        return {"max_weight": self.max_weight}

    # ---- the weight as a function of log-SNR ------------------------------------------------

    def limits(self, prediction: str) -> tuple[float, float]:
        """(omega at lambda = +inf, omega at lambda = -inf) for ``prediction``: 0, a constant
        or math.inf (diverges), after the cap."""
        _check_name(prediction)
        ends = []
        for side, (constant, kappa) in enumerate(self.asymptotes()):
            exponent = (
                kappa
                + CONVERSION_EXPONENTS[self.native][side]
                - CONVERSION_EXPONENTS[prediction][side]
            )
            growth = exponent if side == 0 else -exponent  # > 0: unbounded towards that end
            limit = math.inf if growth > 0 else 0.0 if growth < 0 else constant
            ends.append(min(limit, self.max_weight))
        return ends[0], ends[1]

    def log_omega(self, lam: Any, prediction: str) -> torch.Tensor:
        """log omega(lambda; prediction), float64, lambda's shape and device, with log 0 =
        -inf and log inf = +inf at the ends (no error: for plotting). ``omega`` checks."""
        return torch.log(self._omega(lam, prediction))

    def omega(self, lam: Any, prediction: str) -> torch.Tensor:
        """omega(lambda; prediction) as float64, for float64 log-SNRs ``lam`` (any shape,
        +-inf allowed where the weight is finite there: the limits). A weight that is
        infinite at a given lambda (a divergent end without ``max_weight``, or beyond
        float64) raises ValueError naming the lambda."""
        lam = torch.as_tensor(lam, dtype=F64)
        weight = self._omega(lam, prediction)
        self._check_finite(weight, lambda: lam, prediction, torch.finfo(F64).max)
        return weight

    def _omega(self, lam: Any, prediction: str) -> torch.Tensor:
        _check_name(prediction)
        lam = torch.as_tensor(lam, dtype=F64)
        if lam.device.type == "cpu" and bool(torch.isnan(lam).any()):
            raise ValueError(f"{self.name}: lambda (log-SNR) must not be NaN")
        finite = torch.isfinite(lam)
        value = self._log_weight(torch.where(finite, lam, torch.zeros_like(lam)), prediction)
        return self._ends(lam, value, prediction)

    # ---- the weight of a batch on a schedule ----------------------------------------------

    def check_schedule(self, schedule: Any, prediction: str) -> None:
        """Refuse a schedule that reaches an end (lambda = +-inf at a valid training time)
        where this weight diverges for ``prediction``, and a target the schedule lacks."""
        check_target(prediction, schedule)
        plus, minus = self.limits(prediction)
        reach_plus, reach_minus = reached_ends(schedule)
        for reached, limit, end, what in (
            (reach_plus, plus, "+inf", "no noise, sigma_t = 0"),
            (reach_minus, minus, "-inf", "no signal, zero SNR"),
        ):
            if reached and limit == math.inf:
                raise ValueError(
                    f"the {self.name} weighting diverges for prediction {prediction!r} at "
                    f"lambda = {end} ({what}), and {schedule!r} reaches that end, where "
                    "the weight would be infinite. Pass max_weight=... to cap it, or use "
                    "another target or schedule"
                )

    def weights(
        self, schedule: Any, t: Any, prediction: str, *, validate: bool = True
    ) -> torch.Tensor:
        """The weight of each step or time ``t`` (validated, as ``schedule.steps`` returns
        them) for ``prediction``: float32, t's shape and device. v off variance preserving
        takes the family's own conversion factor (``targets.log_conversion_exact``).

        A discrete schedule's weights are one table of its T steps, computed and checked
        once per (schedule, target, device) and gathered at t; a continuous schedule's are
        computed at t. Raises ValueError (``check_schedule``) for a schedule that reaches a
        divergent end; a weight that still overflows float32 is a ValueError on the CPU
        and a device-side assert elsewhere (skipped with ``validate=False``). The schedule
        check runs eagerly (it reads values on the host), once per schedule and target.
        """
        device = t.device if isinstance(t, torch.Tensor) else torch.device("cpu")
        if isinstance(schedule, Schedule):
            return self._table(schedule, prediction, device, validate)[t]
        self._check_once(schedule, prediction)
        signal, sigma = schedule.marginal(t, device, F64)
        return self._checked_weights(signal, sigma, prediction, validate)

    def _table(
        self, schedule: Schedule, prediction: str, device: torch.device, validate: bool
    ) -> torch.Tensor:
        """The float32 weights of every step of a discrete schedule, cached per device."""
        key = (schedule, prediction, device)
        table = self._tables.get(key)
        if table is None:
            self._check_once(schedule, prediction)
            every = torch.arange(schedule.num_steps)
            table = self._checked_weights(
                *schedule.marginal(every, "cpu", F64), prediction, validate
            )
            self._tables[key] = table = table.to(device)
        return table

    def _check_once(self, schedule: Any, prediction: str) -> None:
        if not torch.compiler.is_compiling() and (schedule, prediction) not in self._checked:
            self.check_schedule(schedule, prediction)
            self._checked.add((schedule, prediction))

    def _checked_weights(
        self, signal: torch.Tensor, sigma: torch.Tensor, prediction: str, validate: bool
    ) -> torch.Tensor:
        """``_weights``, through the opaque op while torch.compile traces; then the float32
        overflow check."""
        if torch.compiler.is_compiling() and _CLASSES.get(self.name) is type(self):
            from ._op import loss_weight_op  # the op rebuilds the weighting from _CLASSES

            values = [float(v) for v in self.parameters.values()]
            weight = loss_weight_op(signal, sigma, self.name, values, prediction)
        else:
            weight = self._weights(signal, sigma, prediction)

        def lam() -> torch.Tensor:
            return 2.0 * (torch.log(signal) - torch.log(sigma))

        self._check_finite(weight, lam, prediction, torch.finfo(torch.float32).max, validate)
        return weight

    def _weights(self, signal: torch.Tensor, sigma: torch.Tensor, prediction: str) -> torch.Tensor:
        """float32 weights from float64 (signal, sigma): ``omega_at``, rounded once."""
        return self.omega_at(signal, sigma, prediction).to(torch.float32)

    def omega_at(self, signal: torch.Tensor, sigma: torch.Tensor, prediction: str) -> torch.Tensor:
        """omega at a family's own float64 (signal_t, sigma_t), float64: as ``omega`` of
        lambda = 2 log(signal / sigma), except that v off variance preserving takes the
        family's factor (``targets.log_conversion_exact``); the limits where sigma or
        signal is 0, then the cap. No finiteness check (``weights`` checks)."""
        log_signal, log_sigma = torch.log(signal), torch.log(sigma)
        lam = 2.0 * (log_signal - log_sigma)
        finite = torch.isfinite(lam)
        zero = torch.zeros_like(lam)
        log_signal = torch.where(finite, log_signal, zero)
        log_sigma = torch.where(finite, log_sigma, zero)
        value = self._log_weight_family(log_signal, log_sigma, prediction)
        return self._ends(lam, value, prediction)

    # ---- helpers ------------------------------------------------------------------------------

    def _log_weight(self, lam: torch.Tensor, prediction: str) -> torch.Tensor:
        """log omega_p = log omega_native + log c_native - log c_p, finite lambda."""
        native = self._log_native(lam) + log_conversion_factor(self.native, lam)
        return native - log_conversion_factor(prediction, lam)

    def _log_weight_family(
        self, log_signal: torch.Tensor, log_sigma: torch.Tensor, prediction: str
    ) -> torch.Tensor:
        """``_log_weight`` with a family's own v factor (finite entries)."""
        lam = 2.0 * (log_signal - log_sigma)
        if "v" not in (prediction, self.native):
            return self._log_weight(lam, prediction)
        native = self._log_native(lam) + log_conversion_exact(self.native, log_signal, log_sigma)
        return native - log_conversion_exact(prediction, log_signal, log_sigma)

    def _ends(self, lam: torch.Tensor, log_value: torch.Tensor, prediction: str) -> torch.Tensor:
        """omega from its log at finite lambda, the limits at lambda = +-inf (exactly), then
        the cap."""
        plus, minus = self.limits(prediction)
        value = torch.exp(log_value)
        value = torch.where(lam == math.inf, torch.full_like(value, plus), value)
        value = torch.where(lam == -math.inf, torch.full_like(value, minus), value)
        return value.clamp(max=self.max_weight)

    def _check_finite(
        self,
        weight: torch.Tensor,
        lam: Callable[[], torch.Tensor],
        prediction: str,
        largest: float,
        validate: bool = True,
    ) -> None:
        """weight <= largest everywhere (so finite): the log-SNR of the first that is not."""
        ok = weight <= largest  # False for inf (and NaN)
        where = f"the {self.name} weight for prediction {prediction!r}"
        if host_readable(weight):
            if weight.numel() and not bool(ok.all()):
                bad_lam = lam().expand(weight.shape)[~ok].flatten()[0].item()
                bad = weight[~ok].flatten()[0].item()
                raise ValueError(
                    f"{where} at lambda = {bad_lam!r} is {bad!r}, above {largest:.4g}: pass "
                    "max_weight=... to cap it"
                )
        elif validate and weight.device.type != "meta":
            torch._assert_async(ok.all(), f"{where} overflows: pass max_weight=... to cap it")

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:g}" for k, v in self.parameters.items())
        return f"{type(self).__name__}({shown})"


def _check_name(prediction: Any) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def reached_ends(schedule: Any) -> tuple[bool, bool]:
    """(lambda = +inf at a valid training time, lambda = -inf at one): the ends of the
    log-SNR range the schedule reaches, not only approaches. Discrete: steps 0 and T - 1
    (zero terminal SNR reaches -inf). Continuous: t_min and t_max where they are valid
    training times (flow matching reaches both, VP-SDE +inf at t = 0, EDM neither: its
    sigma is in (0, inf))."""
    if getattr(schedule, "is_continuous", False):
        ends = []
        for t in (float(schedule.t_min), float(schedule.t_max)):
            try:
                schedule.steps(t, torch.zeros(1, dtype=F64))
            except (TypeError, ValueError):  # not a training time (EDM's 0 and inf)
                ends.append(math.nan)
                continue
            ends.append(float(schedule.log_snr(t)))
        return ends[0] == math.inf, ends[1] == -math.inf
    num_steps = getattr(schedule, "num_steps", None)
    if not isinstance(num_steps, int):
        return False, False
    signal, sigma = schedule.marginal(torch.tensor([0, num_steps - 1]), "cpu", F64)
    return bool(sigma[0] == 0), bool(signal[1] == 0)
