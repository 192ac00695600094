"""The numerical pieces the samplers need, in float64: monotone inversion and the
regularized incomplete beta function.

    invert_increasing   x with F(x) = y for an increasing F on a bracket [lo, hi]:
                        Newton steps where a derivative is given and the step stays inside
                        the bracket, bisection otherwise (Press et al., Numerical Recipes,
                        3rd ed., section 9.4, "rtsafe"); the bracket shrinks at every step
    betainc             I_x(a, b) = B(x; a, b) / B(a, b) by its continued fraction,
                        evaluated with the modified Lentz method (Numerical Recipes, 3rd ed.,
                        section 6.4, eq. 6.4.5, and section 5.2), on the side
                        x < (a + 1) / (a + b + 2) where it converges fast, and by the
                        symmetry I_x(a, b) = 1 - I_{1-x}(b, a) on the other
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

F64 = torch.float64
#: Iterations of ``invert_increasing``: bisection alone halves a bracket 200 times.
MAX_INVERSION_STEPS = 200
#: Continued-fraction terms of ``betainc``; it needs about sqrt(max(a, b)) of them.
MAX_FRACTION_TERMS = 10_000
TINY = 1e-300  # Lentz's guard against a zero denominator
EPS = 2.0**-52


def invert_increasing(
    fn: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    derivative: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tolerance: float = 4 * 2.0**-52,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """x in [lo, hi] with fn(x) = y, elementwise, for fn increasing with fn(lo) <= y <= fn(hi).

    Each step keeps a bracket [lo, hi] around the root: a Newton step x - (fn(x) - y) / fn'(x)
    where ``derivative`` is given and the step lands strictly inside the bracket, the
    midpoint otherwise. Stops when, for every element, the bracket or the last step is down
    to a few ulps or |fn(x) - y| <= ``tolerance`` (for a CDF: the probability is reached to
    float64 precision); float64 throughout. ``start``: a first guess inside the bracket
    (default its midpoint).
    """
    y, lo, hi = (torch.as_tensor(v, dtype=F64) for v in (y, lo, hi))
    y, lo, hi = torch.broadcast_tensors(y, lo, hi)
    lo, hi = lo.clone(), hi.clone()
    x = 0.5 * (lo + hi) if start is None else torch.clamp(start.to(F64), lo, hi)
    moved = torch.full_like(x, math.inf)  # the last step's length
    for _ in range(MAX_INVERSION_STEPS):
        residual = fn(x) - y
        below = residual < 0
        lo = torch.where(below, x, lo)
        hi = torch.where(below, hi, x)
        scale = 4 * EPS * torch.maximum(lo.abs(), hi.abs())
        done = (residual.abs() <= tolerance) | (hi - lo <= scale) | (moved <= scale)
        if bool(done.all()):
            break
        step = 0.5 * (lo + hi)
        if derivative is not None:
            newton = x - residual / derivative(x)
            inside = (newton > lo) & (newton < hi) & torch.isfinite(newton)
            step = torch.where(inside, newton, step)
        step = torch.where(done, x, step)
        moved, x = (step - x).abs(), step
    return x


def betainc(a: float, b: float, x: torch.Tensor) -> torch.Tensor:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1].

    I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) * 1 / (1 + d_1 / (1 + d_2 / (1 + ...))) with
    d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)) and
    d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)) (Numerical Recipes eq. 6.4.5).
    """
    x = torch.as_tensor(x, dtype=F64)
    flip = x > (a + 1.0) / (a + b + 2.0)
    p = torch.where(flip, torch.full_like(x, b), torch.full_like(x, a))
    q = torch.where(flip, torch.full_like(x, a), torch.full_like(x, b))
    z = torch.where(flip, 1.0 - x, x)
    inner = (z > 0) & (z < 1)
    z = torch.where(inner, z, torch.full_like(z, 0.5))  # ends: set below, no log(0)
    log_front = (
        math.lgamma(a + b)
        - torch.lgamma(p)
        - torch.lgamma(q)
        + p * torch.log(z)
        + q * torch.log1p(-z)
    )
    value = torch.exp(log_front) * _beta_fraction(p, q, z) / p
    value = torch.where(flip, 1.0 - value, value)
    # the ends: I_0 = 0 and I_1 = 1
    ends = torch.where(x <= 0, torch.zeros_like(x), torch.ones_like(x))
    return torch.where((x > 0) & (x < 1), value, ends)


def betaincinv_guess(a: float, b: float, p: torch.Tensor) -> torch.Tensor:
    """A first guess of x with I_x(a, b) = p (Numerical Recipes, 3rd ed., section 6.14.1,
    ``invbetai``): a normal approximation for a, b >= 1, else the two power-law tails."""
    p = torch.as_tensor(p, dtype=F64)
    if a >= 1 and b >= 1:
        low = torch.minimum(p, 1 - p).clamp(min=TINY)
        t = torch.sqrt(-2 * torch.log(low))
        z = (2.30753 + t * 0.27061) / (1 + t * (0.99229 + t * 0.04481)) - t
        z = torch.where(p < 0.5, -z, z)
        al = (z * z - 3) / 6
        h = 2 / (1 / (2 * a - 1) + 1 / (2 * b - 1))
        w = z * torch.sqrt(al + h) / h - (1 / (2 * b - 1) - 1 / (2 * a - 1)) * (
            al + 5 / 6 - 2 / (3 * h)
        )
        return a / (a + b * torch.exp(2 * w))
    # the two tails: I_x ~ x^a / (a B) near 0 and 1 - (1 - x)^b / (b B) near 1
    lower = math.exp(a * math.log(a / (a + b))) / a
    upper = math.exp(b * math.log(b / (a + b))) / b
    total = lower + upper
    head = (a * total * p).pow(1 / a)
    tail = 1 - (b * total * (1 - p)).clamp(min=0).pow(1 / b)
    return torch.where(p < lower / total, head, tail)


def _beta_fraction(p: torch.Tensor, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The continued fraction of I_z(p, q) by the modified Lentz method (NR section 5.2)."""

    def guard(v: torch.Tensor) -> torch.Tensor:
        return torch.where(v.abs() < TINY, torch.full_like(v, TINY), v)

    c = torch.ones_like(z)
    d = 1.0 / guard(1.0 - (p + q) * z / (p + 1.0))
    h = d
    for m in range(1, MAX_FRACTION_TERMS + 1):
        even = m * (q - m) * z / ((p + 2 * m - 1.0) * (p + 2 * m))
        d = 1.0 / guard(1.0 + even * d)
        c = guard(1.0 + even / c)
        h = h * d * c
        odd = -(p + m) * (p + q + m) * z / ((p + 2 * m) * (p + 2 * m + 1.0))
        d = 1.0 / guard(1.0 + odd * d)
        c = guard(1.0 + odd / c)
        step = d * c
        h = h * step
        if bool(((step - 1.0).abs() <= 2 * EPS).all()):
            return h
    raise RuntimeError(
        f"betainc: the continued fraction did not converge in {MAX_FRACTION_TERMS} terms"
    )
