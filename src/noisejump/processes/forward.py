"""ForwardProcess: the exact jump, the chain it replaces, the posterior and the targets.

Notation (see ``noisejump.schedules.discrete``): x_t = signal_t x0 + sigma_t e, e ~ N(0, S), with
signal_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) (Ho et al. 2020, arXiv 2006.11239,
eq. 4). Between steps s < t: x_t = alpha_{t|s} x_s + sigma_{t|s} e (Kingma et al. 2021,
VDM, arXiv 2107.00630, eq. 19). Code step k is mathematical step k + 1; step -1 is x0.

Numerics (DESIGN.md, section 2): coefficient tables are built in float64, cached per
device, gathered and applied in float32 (float64 for float64 samples) and the result is
stored in the sample's dtype. The noise returned is rounded to the sample's dtype first
and x_t is computed from that rounded noise, so (x_t, noise) is a consistent pair.
Nothing here reads a GPU value on the host: t is checked eagerly when it is a Python
int or a CPU tensor, and with an asynchronous device-side assert otherwise. (Exception:
per-element steps with correlated noise on the "increments" path need the number of
distinct steps, one host read; the "frames" path needs none.)

Clean elements (DESIGN.md, section 5): step -1 (the data; -1.0 in continuous time) per
element, sample or call applies no transition: x_t = x0 exactly there and the noise
returned is 0 there, for every family and path, keyed or not. Per-element steps with
correlated noise follow one of two joint laws (``per_element``): "chain" (the default,
the chain's own law) or "shared" (one draw, each element scaled by its own sigma_t).

Sharded keyed noise (``noisejump.shards``): ``shard=(axis, start, stop, size)`` makes a
call on elements [start, stop) of every sample along an event axis draw exactly that slice
of the unsharded call's noise, for families independent along that axis.

Correlated noise (DESIGN.md, section 1): with a fixed covariance S the chain
x_k = sqrt(alpha_k) x_{k-1} + sqrt(beta_k) L e_k has q(x_t | x0) = N(signal_t x0,
sigma_t^2 S), so every method keeps its isotropic formula with L e in place of e. The
``variance`` that ``q_posterior`` returns is the isotropic one; the posterior covariance
is that variance times S. ``plan(t)`` says which path ``q_sample`` takes and why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from .._numpy import from_numpy
from ..checks import check_order, check_values, host_extremes, host_readable
from ..kernels import q_sample_keyed
from ..kernels.affine import affine
from ..kernels.affine import compute_dtype as _compute_dtype
from ..kernels.q_sample import diagonal_scale
from ..noise import NoiseFamily, get_noise
from ..noise.isotropic import Isotropic
from ..rng import keyed_normal
from ..schedules.discrete import ScheduleLike
from ..shards import Shard, restrict
from . import per_element
from .plan import (
    Plan,
    check_path,
    fixed_covariance_path,
    is_per_element,
    plan_fixed_covariance,
)

__all__ = ["ForwardProcess", "PREDICTIONS"]

F64 = torch.float64
#: The regression targets (``noisejump.objective.targets``); flow_velocity only on flow matching.
PREDICTIONS = ("epsilon", "v", "sample", "flow_velocity")
#: Keyed streams of the second and later draws of one q_sample call (per-element steps with
#: correlated noise, a forced chain); streams 1 .. 2^31 stay free for callers.
EXTRA_DRAW_STREAM = 2**31


class ForwardProcess:
    """The forward (noising) process of a schedule and a noise family.

    Args:
        schedule: a [`Schedule`][noisejump.Schedule] (or any object with its ``steps``,
            ``marginal`` and ``transition`` methods).
        noise: a noise family or its name (default: isotropic, S = I).
        validate: for CUDA step tensors, check the range with an asynchronous device-side
            assert (True, no host sync) or not at all (False). CPU inputs are always checked.
        path: "auto" (the cheapest exact path, see [`plan`][noisejump.ForwardProcess.plan])
            or "chain" (force the O(t) chain in ``q_sample``, for comparison).
        joint_law: the law of per-element steps with correlated noise: "chain" (the
            default: the Markov chain in which element i has taken its own t_i steps,
            Cov = sigma_i sigma_j rho(t_i, t_j) S_ij, what ``verify`` proves) or "shared"
            (one draw L e of N(0, S), each element scaled by its own sigma_t: Cov =
            sigma_i sigma_j S_ij). See ``noisejump.processes.per_element``.
    """

    #: The white-noise shard of a restricted copy (``_restricted``); None: unsharded.
    _white_shard: Shard | None = None

    def __init__(
        self,
        schedule: ScheduleLike,
        noise: NoiseFamily | str | None = None,
        *,
        validate: bool = True,
        path: str = "auto",
        joint_law: str = "chain",
    ) -> None:
        if isinstance(schedule, str):
            raise TypeError(
                f"schedule must be a schedule object, got the string {schedule!r}: build one "
                f"with noisejump.get_schedule({schedule!r}) (discrete) or from "
                "noisejump.continuous (VPSDE(), EDM(), FlowMatching(), ...)"
            )
        if not all(
            callable(getattr(schedule, m, None)) for m in ("steps", "marginal", "transition")
        ):
            raise TypeError(
                "schedule must be a noisejump schedule (get_schedule(...), a continuous "
                "schedule, or an object with steps, marginal and transition methods), got "
                f"{type(schedule).__name__}"
            )
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be True or False, got {validate!r}")
        self.schedule: Any = schedule  # discrete-only methods also read num_steps, table
        if noise is None:
            noise = Isotropic()
        elif isinstance(noise, str):
            noise = get_noise(noise)
        elif not isinstance(noise, NoiseFamily):
            raise TypeError(
                "noise must be a noise family (a noisejump.noise.NoiseFamily such as "
                "get_noise('pink') or Offset(0.1)), a family's name (one of "
                f"noisejump.noise.available()) or None for isotropic; got {type(noise).__name__}"
            )
        self.noise = noise
        self.validate = validate
        self.path = check_path(path)
        self.joint_law = per_element.check_joint_law(joint_law)

    @property
    def num_steps(self) -> int:
        return self.schedule.num_steps

    def __repr__(self) -> str:
        law = "" if self.joint_law == "chain" else f", joint_law={self.joint_law!r}"
        return f"ForwardProcess({self.schedule!r}, noise={self.noise!r}{law})"

    # ---- sampling ----------------------------------------------------------------------

    def q_sample(
        self,
        x0: torch.Tensor,
        t: Any,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
        keys: torch.Tensor | None = None,
        shard: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t ~ q(x_t | x0) = N(signal_t x0, sigma_t^2 S) in one step (Ho et al. 2020, eq. 4).

        Args:
            x0: clean samples, batch first, any trailing shape, floating dtype.
            t: an int, a 0-d integer tensor, one step per sample (shape (B,)), or one step
                per element (as many dimensions as x0, broadcasting to its shape). Step -1
                is the data: no transition there (a clean context frame: x_t = x0, noise 0).
            noise: the structured noise to use (x0's shape); drawn if None. Not accepted
                where the plan is not one structured draw (per-element steps with
                correlated noise under the chain law, a forced chain).
            generator: torch.Generator for the drawn noise.
            seed, keys: keyed noise instead (``noisejump.rng``): an int seed and one key per
                sample, an integer tensor (B,) or (B, 2); sample b's noise depends only on
                (seed, keys[b]), so any sub-batch gets exactly its rows of the full call.
            shard: (axis, start, stop, size), keyed noise only: x0 (and t) hold elements
                [start, stop) of every sample along event axis ``axis`` (batch excluded) of
                full length ``size``; the result is exactly that slice of the unsharded
                call (``noisejump.shards``). Refused along an axis the noise is correlated
                along, and on the "increments" path.
        Returns:
            (x_t, noise), both in x0's dtype; x_t is computed from the returned noise,
            noise = (x_t - signal_t x0) / sigma_t elementwise (0 at clean elements).
        """
        _check_sample(x0, "x0")
        process = self._for_shard(shard, x0, seed, keys)
        return process._q_sample(x0, t, noise, generator, seed, keys)

    def _q_sample(
        self,
        x0: torch.Tensor,
        t: Any,
        noise: torch.Tensor | None,
        generator: torch.Generator | None,
        seed: int | None,
        keys: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._steps(t, x0, lowest=-1)
        keyed = _keyed(seed, keys, noise, generator)
        shape = tuple(x0.shape)
        path = fixed_covariance_path(self.noise, t, self.path, shape[1:], self.joint_law)
        if path == "closed":
            return self._q_sample_closed(x0, t, noise, generator, seed, keys)
        if noise is not None:
            plan = self._plan(t, shape)
            raise ValueError(
                f"noise= cannot be used on the {plan.path!r} path (it takes "
                f"{plan.draws} draws, not one): {plan.reason}"
            )
        draw = self._keyed_draw(x0, seed, keys) if keyed else self._random_draw(x0, generator)
        if path == "chain":
            return self._with_noise(x0, t, self._chain(x0, t, draw))
        sliced = self._white_shard
        if path == "increments" and sliced is not None and t.shape[1 + sliced.axis] > 1:
            raise ValueError(
                "shard= along an axis the steps vary along cannot be used on the "
                f"'increments' path (per-element steps with correlated noise {self.noise!r}): "
                "its draws follow the distinct steps of the whole sample, which a shard does "
                "not see. Shard along another axis, use a frame family with per-frame steps "
                "(the 'frames' path), or joint_law='shared'"
            )
        e = self._correlated_noise(x0, t, path, draw)
        signal, sigma = self.schedule.marginal(t, x0.device, _compute_dtype(x0.dtype))
        e = e.to(x0.dtype)
        return _affine(signal, x0, sigma, e), e

    def _correlated_noise(
        self, x0: torch.Tensor, t: Any, path: str, draw: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        """The chain law's e (zero at clean elements) on the "frames" or "increments" path,
        in the compute dtype; ``draw(j)`` gives white draw j."""
        if path == "frames":
            return per_element.frame_noise(self.schedule, self.noise, t, tuple(x0.shape), draw(0))
        return per_element.increments(self.schedule, self.noise, x0, t, draw)

    def _q_sample_closed(
        self,
        x0: torch.Tensor,
        t: Any,
        noise: torch.Tensor | None,
        generator: torch.Generator | None,
        seed: int | None = None,
        keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The one-draw closed form signal_t x0 + sigma_t L e, L e zero at clean elements.
        Keyed noise of a diagonal family (L e = s * e) takes ``q_sample_keyed``: one fused
        pass where the kernel runs, and one opaque op while torch.compile traces, so
        compiled = eager bitwise."""
        cd = _compute_dtype(x0.dtype)
        signal, sigma = self.schedule.marginal(t, x0.device, cd)
        clean = _clean_mask(t, x0.device)
        if seed is not None and keys is not None:
            diagonal, scale = diagonal_scale(self.noise, tuple(x0.shape))
            if diagonal:
                keep = None if clean is None else (~clean).to(cd)
                return q_sample_keyed(
                    x0,
                    signal,
                    sigma,
                    seed=seed,
                    keys=keys,
                    scale=scale,
                    keep=keep,
                    shard=self._white_shard,
                )
        noise = self._noise(x0, noise, generator, seed, keys)
        if clean is not None:
            noise = noise.masked_fill(clean, 0.0)
        return _affine(signal, x0, sigma, noise), noise

    def q_sample_from(
        self,
        x_s: torch.Tensor,
        s: Any,
        t: Any,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
        keys: torch.Tensor | None = None,
        shard: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t ~ q(x_t | x_s) = N(alpha_{t|s} x_s, sigma^2_{t|s} S) for s <= t; s = -1 is x0.

        alpha_{t|s} = sqrt(abar_t / abar_s), sigma^2_{t|s} = 1 - abar_t / abar_s
        (Kingma et al. 2021, eq. 19). Returns (x_t, noise) in x_s's dtype. ``seed``,
        ``keys`` and ``shard`` draw keyed noise, as in
        [`q_sample`][noisejump.ForwardProcess.q_sample]. Where t = -1 (then s = -1: a clean
        element) x_t = x_s and the noise is 0.
        """
        _check_sample(x_s, "x_s")
        process = self._for_shard(shard, x_s, seed, keys)
        s = process._steps(s, x_s, name="s", lowest=-1)
        t = process._steps(t, x_s, lowest=-1)
        process._require_elementwise("q_sample_from", s, t)
        process._check_order(s, t, x_s.device, strict=False)
        alpha, sigma2 = process.schedule.transition(s, t, x_s.device)
        noise = process._noise(x_s, noise, generator, seed, keys)
        clean = _clean_mask(t, x_s.device)
        if clean is not None:
            noise = noise.masked_fill(clean, 0.0)
        cd = _compute_dtype(x_s.dtype)
        return _affine(alpha.to(cd), x_s, sigma2.sqrt().to(cd), noise), noise

    def q_sample_loop(
        self, x0: torch.Tensor, t: Any, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """x_t by walking the chain x_k = sqrt(alpha_k) x_{k-1} + sqrt(beta_k) e_k, k = 0..t.

        O(t) per sample: the reference the closed form is tested against (Ho et al. 2020,
        eq. 2), with L e_k for correlated noise. Vectorised over the batch; with per-sample
        (per-element) t a sample (an element) stops after its own t + 1 steps. Runs in
        float32 (float64 for float64 x0), returns x0's dtype. An element at step -1 takes
        no step (x0 itself).
        """
        _check_sample(x0, "x0")
        self.noise.check_shape(tuple(x0.shape[1:]))
        t = self._steps(t, x0, lowest=-1)
        return self._chain(x0, t, self._random_draw(x0, generator)).to(x0.dtype)

    def _chain(self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """The chain in the compute dtype; ``draw(k)`` gives step k's white noise."""
        if getattr(self.schedule, "is_continuous", False):
            raise TypeError(
                f"the chain walks discrete steps; {self.schedule!r} is continuous-time. "
                "Compose exact jumps with q_sample_from over a time grid instead."
            )
        cd = _compute_dtype(x0.dtype)
        x = x0.to(cd, copy=True)
        # Python floats from the CPU float64 tables: no device read per step.
        sqrt_alphas = self.schedule._table("sqrt_alphas", "cpu").tolist()
        sqrt_betas = self.schedule._table("sqrt_betas", "cpu").tolist()
        per_sample = isinstance(t, torch.Tensor) and t.dim() > 0
        last = int(t.max()) if per_sample else int(t)
        for k in range(last + 1):
            e = self.noise.apply(draw(k), x.shape)
            if per_sample:
                active = t >= k
                # in cd: torch.where on Python floats would round them to float32
                a = active.to(cd) * (sqrt_alphas[k] - 1.0) + 1.0
                b = active.to(cd) * sqrt_betas[k]
                x.mul_(a).addcmul_(b, e)
            else:
                x.mul_(sqrt_alphas[k]).add_(e, alpha=sqrt_betas[k])
        return x

    def _with_noise(
        self, x0: torch.Tensor, t: Any, x_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, noise) in x0's dtype with noise = (x_t - signal_t x0) / sigma_t (0 where
        sigma_t = 0: clean elements, where the chain leaves x0 as it is), and x_t
        recomputed from the rounded noise so the pair stays consistent."""
        signal, sigma = self.schedule.marginal(t, x0.device, _compute_dtype(x0.dtype))
        safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
        noise = ((x_t - signal * x0.to(x_t.dtype)) / safe).to(x0.dtype)
        return _affine(signal, x0, sigma, noise), noise

    def _random_draw(
        self, x: torch.Tensor, generator: torch.Generator | None
    ) -> Callable[[int], torch.Tensor]:
        """draw(k): white noise of the family's white shape, in one reused buffer."""
        cd = _compute_dtype(x.dtype)
        buffer = torch.empty(self.noise.white_shape(tuple(x.shape)), device=x.device, dtype=cd)
        return lambda k: torch.randn(buffer.shape, generator=generator, out=buffer)

    def trajectory(
        self,
        x0: torch.Tensor,
        steps: Sequence[int] | torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One sample path observed at increasing ``steps``, by successive exact jumps.

        Returns a tensor of shape (len(steps), *x0.shape) in x0's dtype; the path is
        carried in float32 (float64 for float64 x0) between jumps. O(len(steps)).
        """
        _check_sample(x0, "x0")
        steps = [self._steps(int(k), x0, name="steps") for k in _int_list(steps, "steps")]
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"steps must be strictly increasing, got {steps}")
        path = x0.new_empty((len(steps),) + tuple(x0.shape))
        x, previous = x0.to(_compute_dtype(x0.dtype)), -1
        for i, k in enumerate(steps):
            x, _ = self.q_sample_from(x, previous, k, generator=generator)
            path[i] = x
            previous = k
        return path

    # ---- what verify and the plan use --------------------------------------------------

    def check_event(self, event_shape: tuple[int, ...]) -> None:
        """Raise ValueError when the noise cannot be made for samples of ``event_shape``."""
        self.noise.check_shape(tuple(event_shape))

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The white noise of one draw for a batch of ``shape``."""
        return self.noise.white_shape(tuple(shape))

    def _closed(
        self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        """The plan's closed form in the compute dtype; ``draw(j)`` gives white draw j."""
        signal, sigma = self.schedule.marginal(t, x0.device, _compute_dtype(x0.dtype))
        path = fixed_covariance_path(self.noise, t, "auto", tuple(x0.shape[1:]), self.joint_law)
        if path == "closed":
            e = self.noise.apply(draw(0), x0.shape)
        else:
            e = self._correlated_noise(x0, t, path, draw)
        return signal * x0.to(signal.dtype) + sigma * e

    def moments(self, event_shape: tuple[int, ...], t: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(M_t, C_t) of q(x_t | x0) = N(M_t x0, C_t) for one sample, dense float64, from the
        analytic covariance S of the family: M_t = signal_t I, C_t = sigma_t^2 S; for
        per-element t (event-shaped), M_t = diag(signal_ti) and, under the chain law,
        C_ij = K(ti, tj) S_ij with K(a, b) = sigma_a sigma_b rho(a, b) (``per_element``),
        under the shared law C_ij = sigma_ti sigma_tj S_ij."""
        event_shape = tuple(event_shape)
        t = torch.as_tensor(t).cpu()
        if t.dim() == len(event_shape) + 1:  # a batch-first step tensor of one sample
            t = t[0]
        noise_cov = self.noise.covariance(event_shape)  # refuses a d x d beyond its bound
        steps = t.expand(event_shape).flatten()
        signal, sigma = self.schedule.marginal(steps, "cpu", F64)
        if self.joint_law == "shared":
            law = sigma[:, None] * sigma[None, :]
        else:
            law = per_element.kernel(self.schedule, steps, steps)
        return torch.diag(signal), law * noise_cov

    # ---- the plan --------------------------------------------------------------------------

    def plan(
        self, t: Any, shape: tuple[int, ...] | None = None, *, path: str | None = None
    ) -> Plan:
        """Which path ``q_sample`` takes for step(s) ``t`` on a batch of ``shape``, why,
        and its cost per sample (print it). ``path="chain"`` shows the forced chain.

        ``shape`` (batch first) is needed for per-element ``t`` that does not have the
        full shape, and for the cost estimate.
        """
        if shape is None:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) and t.dim() > 1 else None
        like_shape = shape if shape is not None else (_batch_of(t), 1)
        like = torch.zeros(()).expand(tuple(like_shape))
        t = self._steps(t, like, lowest=-1)
        return self._plan(t, shape, path=path)

    def _plan(self, t: Any, shape: tuple[int, ...] | None, *, path: str | None = None) -> Plan:
        continuous = getattr(self.schedule, "is_continuous", False)
        path = check_path(path or self.path)
        return plan_fixed_covariance(
            self.noise, t, shape, path, continuous=continuous, joint_law=self.joint_law
        )

    # ---- posterior and targets --------------------------------------------------------------

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: Any, s: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_s | x_t, x0) for s < t (default s = t - 1).

        mean = signal_s sigma^2_{t|s} / sigma_t^2 x0 + alpha_{t|s} sigma_s^2 / sigma_t^2 x_t,
        variance = sigma^2_{t|s} sigma_s^2 / sigma_t^2, times S for correlated noise
        (Ho et al. 2020, eq. 6-7; Kingma et al. 2021, eq. 26 for any s < t). At t = 0 the
        target is x0 itself: (x0, 0), in discrete time and at a continuous t with sigma_t = 0
        (t = 0 of VP, sub-VP and flow matching; EDM's t is sigma > 0, and its s = 0 or -1
        is the data). Returns the mean in x_t's dtype (computed in float32, float64 for
        float64 x_t) and the variance as a float32 tensor (float64 for float64 x_t) that
        broadcasts against x_t.

        Per-element steps with correlated noise: the posterior covariance is not a multiple
        of S; returns (mean, cov) with cov the dense (B, d, d) float64 covariance of each
        sample, by Gaussian conditioning (``per_element.posterior``, d <= 2048).
        """
        _check_sample(x0, "x0")
        _check_sample(x_t, "x_t")
        _check_pair(x0, x_t, "x0", "x_t")
        self.noise.check_shape(tuple(x_t.shape[1:]))
        t = self._steps(t, x_t)
        if s is None and getattr(self.schedule, "is_continuous", False):
            raise ValueError("q_posterior needs s (the earlier time) for a continuous-time process")
        s = t - 1 if s is None else self._steps(s, x_t, name="s", lowest=-1)
        self._check_order(s, t, x_t.device, strict=True)
        if not self._elementwise(s, t):
            if self.joint_law == "shared":
                raise ValueError(
                    "q_posterior with per-element steps and correlated noise needs the chain "
                    "law: the 'shared' law defines the marginal q(x_t | x0) only, no joint "
                    "law of (x_s, x_t)"
                )
            return per_element.posterior(self.schedule, self.noise, x0, x_t, s, t)
        device, transition = x_t.device, self.schedule.transition
        alpha_ts, sigma2_ts = transition(s, t, device)
        signal_s, sigma2_s = transition(-1, s, device)
        _, sigma2_t = transition(-1, t, device)
        # sigma_t = 0 (t is the data time: 0 of VP, sub-VP, flow matching): x_t carries no
        # noise, nor does x_s (sigma_s <= sigma_t), so x_s = signal_s x0 exactly, where the
        # ratios below read 0 / 0: there sigma^2_{t|s} / sigma_t^2 is 1, sigma_s^2 / sigma_t^2
        # is 0.
        noisy = sigma2_t > 0
        denominator = torch.where(noisy, sigma2_t, torch.ones_like(sigma2_t))
        share_x0 = torch.where(noisy, sigma2_ts / denominator, torch.ones_like(sigma2_t))
        share_xt = torch.where(noisy, sigma2_s / denominator, torch.zeros_like(sigma2_t))
        cd = _compute_dtype(x_t.dtype)
        coef_x0 = (signal_s * share_x0).to(cd)
        coef_xt = (alpha_ts * share_xt).to(cd)
        variance = (sigma2_ts * share_xt).to(cd)
        return _affine(coef_xt, x_t, coef_x0, x0), variance

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, t: Any) -> torch.Tensor:
        """v = signal_t e - sigma_t x0 (Salimans & Ho 2022, arXiv 2202.00512, section 4).

        Returns x0's dtype, computed in float32 (float64 for float64 x0), as ``q_sample``.
        """
        _check_sample(x0, "x0")
        _check_noise(noise, x0)
        t = self._steps(t, x0, lowest=-1)
        signal, sigma = self.schedule.marginal(t, x0.device, _compute_dtype(x0.dtype))
        return _affine(-sigma, x0, signal, noise)

    def flow_velocity(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """u = dx_t/dt = e - x0 for flow matching's x_t = (1 - t) x0 + t e (Lipman et al.
        2022, arXiv 2210.02747, eq. 23; Liu et al. 2022, arXiv 2209.03003, eq. 1).

        Not the v-prediction target (``v_target`` = (1 - t) e - t x0 on this path); only
        defined for a flow-matching schedule. Returns x0's dtype, computed in float32.
        """
        self._require_flow("flow_velocity (e - x0)")
        _check_sample(x0, "x0")
        _check_noise(noise, x0)
        cd = _compute_dtype(x0.dtype)
        return (noise.to(cd) - x0.to(cd)).to(x0.dtype)

    def predict_x0(
        self, x_t: torch.Tensor, model_output: torch.Tensor, t: Any, prediction: str = "epsilon"
    ) -> torch.Tensor:
        """x0 from a model's output: ``epsilon``: (x_t - sigma_t e) / signal_t;
        ``v``: signal_t x_t - sigma_t v; ``sample``: the output itself; ``flow_velocity``
        (flow matching only): x_t - t u, as x_t = (1 - t) x0 + t e and u = e - x0.

        ``epsilon`` at a step with signal 0 (zero terminal SNR, Lin et al. 2023) divides by
        zero: refused for int and CPU t; use ``v`` there. Returns x_t's dtype, computed in
        float32 (float64 for float64 x_t).
        """
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        _check_sample(x_t, "x_t")
        _check_sample(model_output, "model_output")
        _check_pair(x_t, model_output, "x_t", "model_output")
        t = self._steps(t, x_t, lowest=-1)
        signal, sigma = self.schedule.marginal(t, x_t.device, _compute_dtype(x_t.dtype))
        if prediction == "sample":
            return model_output.to(x_t.dtype)
        if prediction == "flow_velocity":
            self._require_flow("flow_velocity")
            return _affine(torch.ones_like(sigma), x_t, -sigma, model_output)
        if prediction == "v":
            return _affine(signal, x_t, -sigma, model_output)
        check_values(
            signal,
            lambda v: v != 0,
            name="signal_t",
            allowed="non-zero for prediction='epsilon': where signal_t = 0 (zero terminal "
            "SNR) x0 = (x_t - sigma e) / 0 cannot be recovered; use prediction='v'",
            validate=self.validate,
        )
        return _affine(1 / signal, x_t, -sigma / signal, model_output)

    # ---- helpers -------------------------------------------------------------------------

    def _require_flow(self, what: str) -> None:
        if not getattr(self.schedule, "is_flow", False):
            raise TypeError(
                f"{what} is the target of the flow-matching path x_t = (1 - t) x0 + t e; "
                f"{self.schedule!r} is not one. Use v_target or FlowMatching()."
            )

    def _steps(self, t: Any, like: torch.Tensor, name: str = "t", lowest: int = 0) -> Any:
        return self.schedule.steps(t, like, name=name, lowest=lowest, validate=self.validate)

    def _elementwise(self, *steps: Any) -> bool:
        """Per-element steps are elementwise formulas only for diagonal S."""
        return not any(is_per_element(k) for k in steps) or (
            self.noise.is_isotropic or self.noise.eigenbasis == "identity"
        )

    def _require_elementwise(self, what: str, *steps: Any) -> None:
        if not self._elementwise(*steps):
            raise ValueError(
                f"{what} with per-element steps needs isotropic or diagonal noise, got "
                f"{self.noise!r}: with correlated noise the per-element law is not a multiple "
                "of S (q_sample samples it exactly; q_posterior conditions densely)"
            )

    def _check_order(self, s: Any, t: Any, device: torch.device, *, strict: bool) -> None:
        check_order(s, t, device, strict=strict, validate=self.validate)

    def _noise(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None,
        generator: torch.Generator | None,
        seed: int | None = None,
        keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The noise to use, in x's dtype: the given one (checked), or drawn in float32
        (float64 for float64 x) and rounded to x's dtype; keyed when seed and keys are given
        (white noise of the family's white shape, counters over it, then ``apply``)."""
        if _keyed(seed, keys, noise, generator):
            return self._keyed_closed_noise(x, cast(int, seed), cast(torch.Tensor, keys))
        if noise is not None:
            _check_noise(noise, x)
            return noise.to(x.dtype)
        drawn = self.noise.sample(
            x.shape, generator=generator, device=x.device, dtype=_compute_dtype(x.dtype)
        )
        return drawn.to(x.dtype)

    def _keyed_closed_noise(
        self, x: torch.Tensor, seed: int, keys: torch.Tensor, stream: int = 0
    ) -> torch.Tensor:
        """Keyed structured noise L e of x's shape and dtype, e white of ``stream``."""
        white = keyed_normal(
            self.noise.white_shape(tuple(x.shape)),
            seed=seed,
            keys=keys,
            stream=stream,
            device=x.device,
            shard=self._white_shard,
        )
        return self.noise.apply(white.to(_compute_dtype(x.dtype)), tuple(x.shape)).to(x.dtype)

    def _keyed_epsilon(
        self, x0: torch.Tensor, t: Any, seed: int, keys: torch.Tensor, stream: int = 0
    ) -> torch.Tensor:
        """The noise ``q_sample(x0, t, seed=seed, keys=keys)`` returns, for validated steps
        t (the epsilon target of the keyed losses; a copy restricted by ``_for_shard``
        gives its shard's); ``stream`` moves the closed form's draw. On the closed path it
        does not read x0's values (only its shape and dtype)."""
        path = fixed_covariance_path(self.noise, t, self.path, tuple(x0.shape[1:]), self.joint_law)
        if path == "closed":
            noise = self._keyed_closed_noise(x0, seed, keys, stream)
            clean = _clean_mask(t, x0.device)
            return noise if clean is None else noise.masked_fill(clean, 0.0)
        if stream != 0:
            raise ValueError(
                f"stream={stream}: the {path!r} path draws keyed streams of its own; only "
                "stream 0 is defined there"
            )
        return self._q_sample(x0, t, None, None, seed, keys)[1]

    def _for_shard(
        self, shard: Any, x: torch.Tensor, seed: int | None, keys: torch.Tensor | None
    ) -> ForwardProcess:
        """This process for samples like ``x``: itself (shape checked) when ``shard`` is
        None, else a copy whose family is the noise of the slice (``NoiseFamily.restricted``)
        and whose keyed draws take the slice's counters of the full sample."""
        event = tuple(x.shape[1:])
        if shard is None:
            self.noise.check_shape(event)
            return self
        if seed is None or keys is None:
            raise ValueError(
                "shard= needs keyed noise (seed= and keys=): only counter-based noise can "
                "give a rank its slice of the unsharded draw"
            )
        restricted = copy.copy(self)
        restricted.noise, restricted._white_shard = restrict(self.noise, shard, event)
        return restricted

    def _keyed_draw(
        self, x: torch.Tensor, seed: int | None, keys: torch.Tensor | None
    ) -> Callable[[int], torch.Tensor]:
        """draw(j): keyed white noise of the family's white shape (``noisejump.rng``);
        counters run over the white shape, so a sub-batch gets exactly its rows. Draw 0 is
        stream 0, what the closed form uses; the extra draws of the per-element and chain
        paths take streams from EXTRA_DRAW_STREAM on."""
        white_shape = self.noise.white_shape(tuple(x.shape))
        cd = _compute_dtype(x.dtype)
        return lambda j: keyed_normal(
            white_shape,
            seed=cast(int, seed),
            keys=cast(torch.Tensor, keys),
            stream=0 if j == 0 else EXTRA_DRAW_STREAM + j,
            device=x.device,
            shard=self._white_shard,
        ).to(cd)


def _keyed(
    seed: int | None,
    keys: torch.Tensor | None,
    noise: torch.Tensor | None,
    generator: torch.Generator | None,
) -> bool:
    """True for keyed noise (seed and keys), after refusing half a key or a mix of sources."""
    if seed is None and keys is None:
        return False
    if seed is None or keys is None:
        given, missing = ("seed", "keys") if keys is None else ("keys", "seed")
        raise ValueError(
            f"keyed noise needs both seed and keys: {given} was given without {missing} "
            "(a seed alone would repeat the same noise at every call)"
        )
    if noise is not None or generator is not None:
        raise ValueError("give either noise/generator or seed/keys, not both")
    return True


def _clean_mask(t: Any, device: torch.device) -> torch.Tensor | None:
    """Where t = -1 (the data: no transition, noise 0), as a boolean tensor broadcasting to
    the sample; None where there is no such element (read only where that costs no sync)."""
    if not isinstance(t, torch.Tensor):
        return torch.ones((), dtype=torch.bool, device=device) if t == -1 else None
    if host_readable(t) and (t.numel() == 0 or host_extremes(t)[0] > -1):
        return None  # the read the range check makes: no elementwise pass on the hot path
    return t == -1


def _batch_of(t: Any) -> int:
    return len(t) if isinstance(t, torch.Tensor) and t.dim() == 1 else 1


def _affine(a: Any, x: torch.Tensor, b: Any, y: torch.Tensor) -> torch.Tensor:
    """a x + b y in float32 (float64 for float64 x), stored in x's dtype (``kernels.affine``:
    bitwise the same under torch.compile)."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        cd = _compute_dtype(x.dtype)
        a, b = (torch.as_tensor(v, dtype=cd, device=x.device) for v in (a, b))
    return affine(a, x, b, y)


#: The sample dtypes every method takes; float8 and other floating formats are refused
#: (torch draws no noise in them and a coefficient rounded to them is meaningless).
SAMPLE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_FLOATS = f"a floating tensor ({', '.join(str(d).removeprefix('torch.') for d in SAMPLE_DTYPES)})"


def _check_sample(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be {_FLOATS}, got {type(x).__name__}")
    if x.dtype not in SAMPLE_DTYPES:
        raise TypeError(f"{name} must be {_FLOATS}, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); nothing to noise")


def _check_pair(x: torch.Tensor, y: torch.Tensor, x_name: str, y_name: str) -> None:
    if y.shape != x.shape:
        raise ValueError(
            f"{y_name} must have {x_name}'s shape {tuple(x.shape)}, got {tuple(y.shape)}"
        )
    if y.device != x.device:
        raise ValueError(
            f"{y_name} is on {y.device} but {x_name} is on {x.device}; move one of them"
        )


def _check_noise(noise: torch.Tensor, x: torch.Tensor) -> None:
    _check_sample(noise, "noise")
    _check_pair(x, noise, "the sample", "noise")


def _int_list(steps: Any, name: str) -> list[int]:
    steps = from_numpy(steps)
    if isinstance(steps, torch.Tensor):
        if steps.dtype.is_floating_point or steps.dtype == torch.bool or steps.dim() != 1:
            raise TypeError(f"{name} must be a 1-D sequence of integers")
        steps = steps.tolist()
    steps = [from_numpy(k) for k in steps]
    if not steps or not all(isinstance(k, int) and not isinstance(k, bool) for k in steps):
        raise TypeError(f"{name} must be a non-empty sequence of ints, got {steps!r}")
    return steps
