"""What the time-varying processes share: sampling glue around a closed form and a chain.

A subclass gives ``white_shape(shape)`` (white noise per draw), ``_closed_parts(x0, t,
draw)`` (the mean M_t x0 and the noise term of x_t, from white draws),
``_chain_step(x, k, white)`` (one step of x_k = A_k x_(k-1) + B_k e_k),
``moments(event_shape, t)`` (dense M_t, C_t of q(x_t | x0) = N(M_t x0, C_t), small shapes
only) and ``_plan(t, shape)``. Steps are discrete (a table per step): an int, a 0-d tensor
or one step per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._numpy import from_numpy
from .forward import _check_pair, _check_sample, _compute_dtype, _int_list
from .plan import Plan, check_path

F64 = torch.float64


class TimeVaryingProcess:
    """Base class; see the module docstring. ``path="chain"`` forces the chain."""

    num_steps: int
    path = "auto"

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def check_event(self, event_shape: tuple[int, ...]) -> None:
        """Raise ValueError when the process cannot act on samples of ``event_shape``."""

    def _closed_parts(
        self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(M_t x0, noise term) of the closed form, in the compute dtype."""
        raise NotImplementedError

    def _closed(
        self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        mean, noise = self._closed_parts(x0, t, draw)
        return mean + noise

    def _chain_step(self, x: torch.Tensor, k: int, white: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _plan(self, t: Any, shape: tuple[int, ...] | None) -> Plan:
        raise NotImplementedError

    def moments(self, event_shape: tuple[int, ...], t: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # ---- public API -------------------------------------------------------------------------

    def plan(
        self, t: Any, shape: tuple[int, ...] | None = None, *, path: str | None = None
    ) -> Plan:
        """Which path ``q_sample`` takes for step(s) ``t`` (batch ``shape``), why, and cost."""
        t = self._steps(t, shape[0] if shape else None)
        path = check_path(path or self.path)
        if path == "chain":
            last = int(torch.as_tensor(t).max())
            return Plan(
                "chain",
                f"sequential chain of {self!r}",
                "forced by path='chain' (for comparison with the closed form)",
                "O(t) steps",
                last + 1,
            )
        return self._plan(t, shape)

    def q_sample(
        self,
        x0: torch.Tensor,
        t: Any,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t ~ q(x_t | x0) by the plan's path. Returns (x_t, noise) in x0's dtype, with
        noise = x_t - E[x_t | x0], the noise term (it is not a unit-variance e here).
        ``noise`` is in ForwardProcess's place but refused: these draws are not one L e."""
        if noise is not None:
            raise ValueError(
                f"{type(self).__name__}.q_sample draws its own noise (its noise term is not "
                "one structured draw L e); pass generator= for reproducible draws"
            )
        x0, t = self._start(x0, t)
        draw = self._random_draw(x0, generator)
        plan = self.plan(t, tuple(x0.shape))
        if plan.path == "chain":
            x_t = self._chain(x0, t, draw)
            zeros = torch.zeros(self.white_shape(x0.shape), device=x0.device, dtype=x_t.dtype)
            mean, _ = self._closed_parts(x0, t, lambda k: zeros)
            noise = x_t - mean
        else:
            mean, noise = self._closed_parts(x0, t, draw)
            x_t = mean + noise
        return x_t.to(x0.dtype), noise.to(x0.dtype)

    def q_sample_loop(
        self, x0: torch.Tensor, t: Any, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """x_t by walking the chain step by step: O(t), the reference."""
        x0, t = self._start(x0, t)
        return self._chain(x0, t, self._random_draw(x0, generator)).to(x0.dtype)

    def trajectory(
        self, x0: torch.Tensor, steps: Any, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One path observed at increasing ``steps``, by the chain (one pass, O(last step))."""
        _check_sample(x0, "x0")
        steps = _int_list(steps, "steps")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"steps must be strictly increasing, got {steps}")
        for k in steps:
            self._steps(k, None)
        self.check_event(tuple(x0.shape[1:]))
        draw = self._random_draw(x0, generator)
        x = x0.to(_compute_dtype(x0.dtype), copy=True)
        path = x0.new_empty((len(steps), *x0.shape))
        for k in range(steps[-1] + 1):
            x = self._chain_step(x, k, draw(k))
            if k in steps:
                path[steps.index(k)] = x
        return path

    # ---- helpers --------------------------------------------------------------------------

    def _check_posterior_inputs(self, x0: torch.Tensor, x_t: torch.Tensor) -> None:
        """x0 and x_t: floating, non-empty, the same shape and device."""
        _check_sample(x0, "x0")
        _check_sample(x_t, "x_t")
        _check_pair(x0, x_t, "x0", "x_t")

    def _start(self, x0: torch.Tensor, t: Any) -> tuple[torch.Tensor, Any]:
        _check_sample(x0, "x0")
        self.check_event(tuple(x0.shape[1:]))
        t = self._steps(t, x0.shape[0])
        if isinstance(t, torch.Tensor) and t.dim() == 1:
            t = t.to(x0.device).reshape((-1,) + (1,) * (x0.dim() - 1))
        return x0, t

    def _steps(self, t: Any, batch: int | None) -> Any:
        """An int, or an int64 CPU/device tensor: 0-d or one step per sample."""
        allowed = f"integers in [0, {self.num_steps - 1}]"
        t = from_numpy(t)
        if isinstance(t, bool) or isinstance(t, float):
            raise TypeError(f"t must be {allowed}, got {t!r}")
        if isinstance(t, int):
            if not 0 <= t < self.num_steps:
                raise ValueError(f"t must be {allowed}, got {t}")
            return t
        if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"t must be an int or an integer tensor ({allowed}), got {t!r}")
        if t.dim() > 1 and any(n > 1 for n in t.shape[1:]):
            raise ValueError(
                f"{type(self).__name__} takes one step per sample, not per element; got t of "
                f"shape {tuple(t.shape)}"
            )
        t = t.reshape(-1) if t.dim() > 1 else t
        if t.dim() == 1 and batch is not None and len(t) != batch:
            raise ValueError(f"t has {len(t)} steps but the batch is {batch}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
            raise ValueError(f"t must be {allowed}, got values in [{int(t.min())}, {int(t.max())}]")
        return t.long()

    def _chain(self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
        x = x0.to(_compute_dtype(x0.dtype), copy=True)
        per_sample = isinstance(t, torch.Tensor) and t.dim() > 0
        last = int(t.max()) if per_sample else int(t)
        for k in range(last + 1):
            stepped = self._chain_step(x, k, draw(k))
            x = torch.where(t >= k, stepped, x) if per_sample else stepped
        return x

    def _random_draw(
        self, x: torch.Tensor, generator: torch.Generator | None
    ) -> Callable[[int], torch.Tensor]:
        cd = _compute_dtype(x.dtype)
        shape = self.white_shape(tuple(x.shape))
        return lambda k: torch.randn(shape, generator=generator, device=x.device, dtype=cd)
