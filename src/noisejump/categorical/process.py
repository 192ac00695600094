"""CategoricalProcess: the closed form for tokens, the chain it replaces, and the posteriors.

Notation (Austin et al. 2021, D3PM, arXiv 2107.03006; Sahoo et al. 2024, MDLM, arXiv
2406.07524; ``noisejump.categorical.keep``): K data classes, S states (K + 1 for
"absorbing", whose mask is state K; K for "uniform"); row vectors of probabilities;
[Q]_ij = q(x_k = j | x_(k-1) = i). Code step k is mathematical step k + 1; step -1 is
the data.

    Q_k        = alpha_k I + (1 - alpha_k) 1 m^T   m: e_mask (absorbing), 1/K (uniform)
    Qbar_t     = Q_0 ... Q_t = keep_t I + (1 - keep_t) 1 m^T   (the Q_k commute: m^T 1 = 1)
    q(x_t|x0)  = Cat(keep_t e_x0 + (1 - keep_t) m): O(1) per token to draw
    posterior  q(x_s | x_t, x0) proportional to q(x_t | x_s) q(x_s | x0)   (D3PM eq. 3)
               = L(x_s) P(x_s),  L = keep_{t|s} e_(x_t) + flip_{t|s} m[x_t] 1   (column x_t
               of Qbar_(t|s)),  P = keep_s e_x0 + flip_s m                (row x0 of Qbar_s)
    model side p(x_s | x_t) proportional to sum_x0 q(x_s, x_t | x0) p(x0 | x_t) = L (p Qbar_s)
               (D3PM eq. 4); for absorbing this is MDLM's SUBS parameterisation (eq. 7):
               an unmasked token is carried over, a masked one stays masked with
               probability (1 - keep_s) / (1 - keep_t)

For user-given matrices L and P come from the products Qbar_(t|s) and Qbar_s
(``noisejump.categorical.matrices``): precomputed while they fit, else walked.

Numerics: tables are float64 (``keep``: keep and flip = 1 - keep each computed directly),
applied in float32 (float64 on request); keyed draws compare 52-bit float64 uniforms with
float64 keep probabilities (``noisejump.categorical.draws``). Tokens are int64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from .._numpy import from_numpy
from ..checks import check_order, check_range
from ..processes.forward import _keyed
from ..processes.linear import MAX_DENSE_BYTES
from ..processes.plan import Plan, is_per_element
from ..schedules.discrete import Schedule
from .draws import TOKEN_STREAM, categorical_draw, keyed_token_uniforms
from .keep import KeepSchedule
from .matrices import TransitionMatrices, check_bytes, memory_mib

__all__ = ["CategoricalProcess", "KINDS", "PATHS"]

F64 = torch.float64
KINDS = ("absorbing", "uniform")
PATHS = ("auto", "dense", "chain")
#: Dtypes of the probabilities the process returns.
PROB_DTYPES = (torch.float32, torch.float64)


class _Steps:
    """The step rules of a discrete chain of ``num_steps`` steps: ``Schedule.steps``
    (ints, one per sequence, one per token; -1 where the data is allowed)."""

    def __init__(self, num_steps: int) -> None:
        self.num_steps = num_steps

    def steps(
        self, t: Any, like: torch.Tensor, *, name: str = "t", lowest: int = 0, validate: bool = True
    ) -> Any:
        return Schedule.steps(cast(Schedule, self), t, like, name=name, lowest=lowest,
                              validate=validate)  # fmt: skip


class CategoricalProcess:
    """The forward process of tokens: absorbing, uniform, or user-given matrices.

    Args:
        schedule: the keep probabilities (``noisejump.categorical.keep``): a discrete
            [`Schedule`][noisejump.Schedule] (keep_t = alphas_cumprod[t]), a variance-
            preserving continuous schedule (keep_t = signal_t^2: ``VPSDE``, ``LogSNR``,
            [`LogLinear`][noisejump.categorical.LogLinear]); None for user-given matrices.
        num_classes: K, the data classes (tokens 0 .. K - 1), K >= 2.
        kind: "absorbing" (K + 1 states, the mask is state K), "uniform" (K states), or
            a sequence of T row-stochastic K x K transition matrices ((T, K, K) tensor).
        validate: for CUDA tensors, check ranges with asynchronous device-side asserts
            (True) or not at all (False); CPU inputs are always checked.
        path: "auto" (the cheapest exact path, see ``plan``), "chain" (walk the chain in
            ``q_sample`` and ``q_probs``, for comparison) or, for matrices, "dense" (the
            precomputed products; refused beyond the bound).
        max_dense_bytes: the bound on the float64 table of every Qbar_t, 8 (T + 1) K^2
            bytes, for user-given matrices (default 1 GiB, as the dense Gaussian chain).
    """

    def __init__(
        self,
        schedule: Any,
        num_classes: int,
        kind: str | Sequence[Any] | torch.Tensor = "absorbing",
        *,
        validate: bool = True,
        path: str = "auto",
        max_dense_bytes: int = MAX_DENSE_BYTES,
    ) -> None:
        num_classes = from_numpy(num_classes)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self.num_classes = num_classes
        self.validate = validate
        self.path = path
        self.matrices: TransitionMatrices | None = None
        if isinstance(kind, str):
            if kind not in KINDS:
                raise ValueError(
                    f"kind must be one of {KINDS} or a sequence of {num_classes} x "
                    f"{num_classes} transition matrices, got {kind!r}"
                )
            if path == "dense":
                raise ValueError(
                    f"path='dense' is for user-given matrices; {kind!r} has a closed form "
                    "(path='auto') and a chain (path='chain')"
                )
            self.kind = kind
            self.keeps: KeepSchedule | None = KeepSchedule(schedule)
            self._step_rules: Any = self.keeps
        else:
            if schedule is not None:
                raise TypeError(
                    "user-given transition matrices carry their own steps: pass "
                    f"schedule=None, got {type(schedule).__name__}"
                )
            self.kind = "matrices"
            self.keeps = None
            self.matrices = TransitionMatrices(kind, num_classes, check_bytes(max_dense_bytes))
            self._step_rules = _Steps(self.matrices.num_steps)
            if path == "dense" and not self.matrices.dense_ok:
                raise ValueError(self._beyond_bound("path='dense' allows no chain"))
        self.num_states = num_classes + 1 if self.kind == "absorbing" else num_classes
        #: The mask state (absorbing: K), else None.
        self.mask_state = num_classes if self.kind == "absorbing" else None
        self._cache: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    # ---- what the process is ------------------------------------------------------------

    @property
    def is_continuous(self) -> bool:
        return self.keeps is not None and self.keeps.is_continuous

    @property
    def num_steps(self) -> int:
        """T (discrete schedules and matrices); TypeError for a continuous schedule."""
        if self.matrices is not None:
            return self.matrices.num_steps
        return cast(KeepSchedule, self.keeps).num_steps

    @property
    def schedule(self) -> Any:
        return None if self.keeps is None else self.keeps.schedule

    @property
    def stationary(self) -> torch.Tensor:
        """m (S,) float64, the distribution a corrupted token is drawn from (absorbing:
        e_mask; uniform: 1/K); ValueError for matrices, which have no single m."""
        if self.matrices is not None:
            raise ValueError("user-given matrices have no single distribution m")
        return self._m("cpu", F64).clone()

    def __repr__(self) -> str:
        if self.matrices is not None:
            return (
                f"CategoricalProcess(matrices T={self.matrices.num_steps}, "
                f"num_classes={self.num_classes})"
            )
        return f"CategoricalProcess({self.schedule!r}, {self.num_classes}, kind={self.kind!r})"

    def step_matrix(self, k: int) -> torch.Tensor:
        """Q_k (S, S) float64, one chain step (discrete schedules and matrices)."""
        if self.matrices is not None:
            return self.matrices.steps[k].clone()
        alpha = cast(KeepSchedule, self.keeps).step_keeps()[k]
        return self._structured_matrix(alpha, 1.0 - alpha)

    def marginal_matrix(self, t: int) -> torch.Tensor:
        """Qbar_t (S, S) float64 as the process computes it: the closed form
        keep_t I + (1 - keep_t) 1 m^T, or the matrices' precomputed (or walked) product."""
        if self.matrices is not None:
            return self.matrices.between(-1, t).clone()
        keep, flip = cast(KeepSchedule, self.keeps).keep(-1, t, torch.device("cpu"))
        return self._structured_matrix(float(keep), float(flip))

    def _structured_matrix(self, keep: float, flip: float) -> torch.Tensor:
        m = self._m("cpu", F64)
        return keep * torch.eye(self.num_states, dtype=F64) + flip * m.expand(self.num_states, -1)

    # ---- the plan ------------------------------------------------------------------------

    def plan(
        self, t: Any, shape: tuple[int, ...] | None = None, *, path: str | None = None
    ) -> Plan:
        """Which path ``q_sample`` takes for step(s) ``t`` on tokens of ``shape``, why, and
        its cost per sequence (print it). ``path="chain"`` shows the forced chain."""
        like_shape = shape if shape is not None else _like_shape(t)
        like = torch.zeros((), dtype=torch.int64).expand(tuple(like_shape))
        steps = self._steps(t, like, "t", lowest=-1)
        return self._plan(steps, shape, path or self.path)

    def _path(self, t: Any, path: str | None = None) -> str:
        path = path or self.path
        if path == "chain":
            return "chain"
        if self.matrices is None:
            return "closed"
        return "dense" if self.matrices.dense_ok else "chain"

    def _plan(self, t: Any, shape: tuple[int, ...] | None, path: str) -> Plan:
        if self.is_continuous and path == "chain":
            raise ValueError("path='chain' needs discrete steps; this schedule is continuous-time")
        chosen = self._path(t, path)
        tokens = None if shape is None else _prod(shape[1:])
        last = None if self.is_continuous else int(torch.as_tensor(t).max())
        K, S = self.num_classes, self.num_states
        chain_ops = None if tokens is None or last is None else float(tokens * (last + 1) * S)
        if chosen == "chain":
            assert last is not None  # continuous refused above
            why = (
                "forced by path='chain' (for comparison with the closed form)"
                if path == "chain"
                else self._beyond_bound("so the chain is walked")
            )
            return Plan(
                "chain",
                f"the chain x_k ~ Cat(Q_k[x_(k-1)]), one transition per step, {self!r}",
                why,
                "O(t K) per token to sample, O(t K^2) for its probabilities",
                last + 1,
                chain_ops,
                chain_ops,
            )
        if chosen == "dense":
            matrices = cast(TransitionMatrices, self.matrices)
            return Plan(
                "dense",
                f"user-given transition matrices Q_0 .. Q_{matrices.num_steps - 1}, K = {K}; "
                "no shared structure is assumed",
                f"every Qbar_t = Q_0 ... Q_t is precomputed once in float64: 8 (T + 1) K^2 = "
                f"{memory_mib(matrices.dense_bytes)} <= the bound "
                f"{memory_mib(matrices.max_dense_bytes)}",
                "O(K) per token (the inverse CDF of row x0 of Qbar_t)",
                1,
                None if tokens is None else float(tokens * K),
                chain_ops,
                matrices.dense_bytes,
            )
        m = "e_mask (state K)" if self.kind == "absorbing" else "1/K"
        reason = (
            f"the Q_k = alpha_k I + (1 - alpha_k) 1 m^T share m = {m}, so they commute and "
            "Qbar_t = keep_t I + (1 - keep_t) 1 m^T: q(x_t | x0) = Cat(keep_t e_x0 + "
            "(1 - keep_t) m) (Austin et al. 2021, section 3; Sahoo et al. 2024)"
        )
        if is_per_element(t):
            reason += "; per-token steps are per-token closed forms"
        return Plan(
            "closed",
            f"{self.kind} tokens, K = {K} ({S} states), keep probability from {self.schedule!r}",
            reason,
            "O(1) per token: keep x0 with probability keep_t, else draw from m",
            1,
            None if tokens is None else float(tokens * 2),
            chain_ops,
        )

    def _beyond_bound(self, then: str) -> str:
        matrices = cast(TransitionMatrices, self.matrices)
        return (
            f"the table of every Qbar_t, 8 (T + 1) K^2 = {memory_mib(matrices.dense_bytes)} "
            f"(T = {matrices.num_steps}, K = {self.num_classes}), exceeds max_dense_bytes = "
            f"{memory_mib(matrices.max_dense_bytes)}; {then}"
        )

    # ---- probabilities -------------------------------------------------------------------

    def q_probs(
        self, x0: torch.Tensor, t: Any, *, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """q(x_t | x0) per token: (*x0.shape, S) probabilities in ``dtype`` (float32 or
        float64) from float64 tables.

        Closed form keep_t e_x0 + (1 - keep_t) m; for matrices row x0 of Qbar_t (dense) or
        the token's distribution pushed through Q_0 .. Q_t (chain). ``t``: an int (a float
        time for a continuous schedule), one per sequence (B,), or one per token (as many
        dimensions as x0, broadcasting to its shape); -1 is the data (clean).
        """
        cd = _prob_dtype(dtype)
        x0 = self._tokens(x0, "x0", data=True)
        t = self._steps(t, x0, "t", lowest=-1)
        path = self._path(t)
        if self.matrices is None and path == "closed":
            keep, flip = cast(KeepSchedule, self.keeps).keep(-1, t, x0.device)
            return self._mix(keep.to(cd), self._onehot(x0, cd), flip.to(cd), self._m(x0.device, cd))
        if path == "dense":
            table = cast(TransitionMatrices, self.matrices).table(x0.device, cd)
            return table[_full(t, x0) + 1, x0]
        return self._chain_probs(x0, t).to(cd)

    def _chain_probs(self, x0: torch.Tensor, t: Any) -> torch.Tensor:
        """Each token's distribution pushed through Q_0 .. Q_t (float64): the O(t S^2) chain."""
        probs = self._onehot(x0, F64)
        t = _full(t, x0)
        for k in range(int(t.max()) + 1):
            step = self._step_matrix_on(k, x0.device)
            probs = torch.where((t >= k)[..., None], probs @ step, probs)
        return probs

    def _step_matrix_on(self, k: int, device: torch.device) -> torch.Tensor:
        if self.matrices is not None:
            return self.matrices.step_matrices(device)[k]
        return self.step_matrix(k).to(device)

    # ---- sampling ------------------------------------------------------------------------

    def q_sample(
        self,
        x0: torch.Tensor,
        t: Any,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_t ~ q(x_t | x0) in one step per token: int64 tokens of x0's shape.

        Closed form: x0 is kept where u_keep < keep_t, else replaced by a draw from m (the
        mask; or floor(u_draw K) for uniform). Matrices: the inverse CDF of row x0 of
        Qbar_t at u_draw (dense), or the chain. ``seed`` and ``keys`` (one key per sequence,
        (B,) or (B, 2)) draw the uniforms from Philox (``noisejump.categorical.draws``), so
        sequence b depends only on (seed, keys[b]) and a larger t masks a superset of the
        tokens a smaller t masks (absorbing: u_keep is the same at every t); else
        ``generator`` draws u_keep, then u_draw (float64, ``torch.rand``).
        """
        x0 = self._tokens(x0, "x0", data=True)
        t = self._steps(t, x0, "t", lowest=-1)
        keyed = _keyed(seed, keys, None, generator)
        draw = _keyed_draw(x0, seed, keys) if keyed else _random_draw(x0, generator)
        path = self._path(t)
        if path == "chain":
            return self._chain(x0, t, draw)
        u_keep, u_draw = draw(-1)
        if path == "dense":
            table = cast(TransitionMatrices, self.matrices).table(x0.device)
            return categorical_draw(table[_full(t, x0) + 1, x0], u_draw)
        keep, _ = cast(KeepSchedule, self.keeps).keep(-1, t, x0.device)
        return torch.where(u_keep < keep, x0, self._from_m(u_draw))

    def q_sample_loop(
        self, x0: torch.Tensor, t: Any, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """x_t by walking the chain x_k ~ Cat(Q_k[x_(k-1)]), k = 0 .. t: the O(t) reference
        the closed form is tested against (D3PM eq. 1). A token stops after its own t + 1
        steps (none at -1). Each step draws u_keep, then u_draw from ``generator``."""
        x0 = self._tokens(x0, "x0", data=True)
        t = self._steps(t, x0, "t", lowest=-1)
        return self._chain(x0, t, _random_draw(x0, generator))

    def _chain(
        self,
        x0: torch.Tensor,
        t: Any,
        draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """The chain; ``draw(k)`` gives step k's (u_keep, u_draw)."""
        if self.is_continuous:
            raise TypeError(
                f"the chain walks discrete steps; {self.schedule!r} is continuous-time. "
                "Compose exact jumps of q_probs between times instead."
            )
        x = x0.clone()
        t_full = _full(t, x0)
        alphas = None if self.matrices is not None else cast(KeepSchedule, self.keeps).step_keeps()
        for k in range(int(t_full.max()) + 1):
            u_keep, u_draw = draw(k)
            active = t_full >= k
            if alphas is None:
                rows = cast(TransitionMatrices, self.matrices).step_matrices(x0.device)[k][x]
                x = torch.where(active, categorical_draw(rows, u_draw), x)
            else:
                moved = active & (u_keep >= alphas[k])
                x = torch.where(moved, self._from_m(u_draw), x)
        return x

    def _from_m(self, u_draw: torch.Tensor) -> torch.Tensor:
        """A draw from m: the mask (absorbing), floor(u_draw K) (uniform)."""
        if self.kind == "absorbing":
            return torch.full_like(u_draw, self.num_classes, dtype=torch.int64)
        return (u_draw * self.num_classes).to(torch.int64).clamp_(max=self.num_classes - 1)

    # ---- posteriors ----------------------------------------------------------------------

    def q_posterior_probs(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: Any,
        s: Any = None,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """q(x_s | x_t, x0) per token, (*x_t.shape, S) in ``dtype``, for any s < t
        (default s = t - 1; s = -1 is x0 itself: e_x0). D3PM eq. 3: proportional to
        q(x_t | x_s) q(x_s | x0) (module docstring). Where x_t cannot follow x0 (absorbing:
        an unmasked x_t other than x0), the result is q(x_t | x_s) normalised over x_s."""
        cd = _prob_dtype(dtype)
        x0 = self._tokens(x0, "x0", data=True)
        x_t, t, s = self._posterior_inputs(x_t, t, s, like=x0)
        log_prior = torch.log(self._onehot(x0, cd))
        return self._log_posterior(log_prior, x_t, s, t).exp()

    def p_posterior_log_probs(
        self, x0_logits: torch.Tensor, x_t: torch.Tensor, t: Any, s: Any = None
    ) -> torch.Tensor:
        """log p(x_s | x_t) of the model whose prediction of x0 has logits ``x0_logits``
        (*x_t.shape, K) over the data classes: D3PM eq. 4, proportional to
        q(x_t | x_s) (p Qbar_s)(x_s) with p = softmax(x0_logits) (for absorbing, MDLM's SUBS
        parameterisation). Float32 (float64 for float64 logits), (*x_t.shape, S)."""
        log_p = _log_x0(x0_logits, x_t, self.num_classes, "x0_logits")
        x_t, t, s = self._posterior_inputs(x_t, t, s, like=None)
        if self.num_states > self.num_classes:  # the mask: never a prediction of x0
            log_p = torch.cat([log_p, torch.full_like(log_p[..., :1], -torch.inf)], -1)
        return self._log_posterior(log_p, x_t, s, t)

    def p_posterior_probs(
        self, x0_probs: torch.Tensor, x_t: torch.Tensor, t: Any, s: Any = None
    ) -> torch.Tensor:
        """p(x_s | x_t) from predicted x0 probabilities ``x0_probs`` (*x_t.shape, K)
        (non-negative; normalised here): ``p_posterior_log_probs`` of their logs, exp'd."""
        _check_probs(x0_probs, "x0_probs")
        return self.p_posterior_log_probs(torch.log(x0_probs), x_t, t, s).exp()

    def _posterior_inputs(
        self, x_t: torch.Tensor, t: Any, s: Any, like: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any, Any]:
        x_t = self._tokens(x_t, "x_t", data=False)
        if like is not None and like.shape != x_t.shape:
            raise ValueError(
                f"x_t must have x0's shape {tuple(like.shape)}, got {tuple(x_t.shape)}"
            )
        if like is not None and like.device != x_t.device:
            raise ValueError(f"x_t is on {x_t.device} but x0 is on {like.device}; move one")
        t = self._steps(t, x_t, "t", lowest=0)
        if s is None and self.is_continuous:
            raise ValueError("the posterior needs s (the earlier time) for a continuous schedule")
        s = t - 1 if s is None else self._steps(s, x_t, "s", lowest=-1)
        check_order(s, t, x_t.device, strict=True, validate=self.validate)
        return x_t, t, s

    def _log_posterior(
        self, log_prior: torch.Tensor, x_t: torch.Tensor, s: Any, t: Any
    ) -> torch.Tensor:
        """log of L(x_s) (prior Qbar_s)(x_s), normalised over x_s, for log_prior (..., S)
        over x0 (module docstring); where every term is 0, log L normalised instead."""
        if self.matrices is not None:
            likelihood, prior_s = self._matrix_factors(log_prior, x_t, s, t)
            log_l, log_p = torch.log(likelihood), torch.log(prior_s)
        else:
            cd = log_prior.dtype
            keeps = cast(KeepSchedule, self.keeps)
            keep_ts, flip_ts = (v.to(cd) for v in keeps.keep(s, t, x_t.device))
            keep_s, flip_s = (v.to(cd) for v in keeps.keep(-1, s, x_t.device))
            m = self._m(x_t.device, cd)
            log_l = torch.log(self._mix(keep_ts, self._onehot(x_t, cd), flip_ts, m[x_t][..., None]))
            log_p = torch.logaddexp(
                torch.log(keep_s)[..., None] + log_prior, torch.log(flip_s)[..., None] + m.log()
            )
        joint = log_l + log_p
        total = torch.logsumexp(joint, -1, keepdim=True)
        fallback = log_l - torch.logsumexp(log_l, -1, keepdim=True)
        return torch.where(total > -torch.inf, joint - total, fallback)

    def _matrix_factors(
        self, log_prior: torch.Tensor, x_t: torch.Tensor, s: Any, t: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, prior Qbar_s) per token for matrices: column x_t of Qbar_(t|s) and the prior
        pushed to s, for each distinct (s, t) pair."""
        matrices = cast(TransitionMatrices, self.matrices)
        cd = log_prior.dtype
        s_full, t_full = _full(s, x_t).reshape(-1), _full(t, x_t).reshape(-1)
        flat_x, prior = x_t.reshape(-1), log_prior.exp().reshape(-1, self.num_states)
        likelihood, prior_s = torch.empty_like(prior), torch.empty_like(prior)
        pairs = torch.stack([s_full, t_full], 1)
        for pair in torch.unique(pairs, dim=0).tolist():
            chosen = (pairs == torch.tensor(pair, device=pairs.device)).all(1)
            between = matrices.between(pair[0], pair[1]).to(x_t.device, cd)
            marginal_s = matrices.between(-1, pair[0]).to(x_t.device, cd)
            likelihood[chosen] = between.T[flat_x[chosen]]
            prior_s[chosen] = prior[chosen] @ marginal_s
        shape = (*x_t.shape, self.num_states)
        return likelihood.reshape(shape), prior_s.reshape(shape)

    # ---- helpers -------------------------------------------------------------------------

    def _steps(self, t: Any, like: torch.Tensor, name: str, lowest: int) -> Any:
        return self._step_rules.steps(t, like, name=name, lowest=lowest, validate=self.validate)

    def _tokens(self, x: Any, name: str, *, data: bool) -> torch.Tensor:
        """int64 tokens: x0 in [0, K - 1] (``data``), x_t in [0, S - 1]."""
        x = from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be an integer tensor of tokens, got {type(x).__name__}")
        if x.dtype == torch.bool or x.dtype.is_floating_point or x.dtype.is_complex:
            raise TypeError(
                f"{name} must be an integer tensor of tokens (int64), got {x.dtype}; "
                "categorical processes take class indices, not values or one-hot vectors"
            )
        if x.dim() == 0 or x.numel() == 0:
            raise ValueError(f"{name} must have a batch dimension and tokens, got shape "
                             f"{tuple(x.shape)}")  # fmt: skip
        x = x.to(torch.int64)
        high = self.num_classes - 1 if data else self.num_states - 1
        allowed = f"integers in [0, {high}]"
        if data and self.mask_state is not None:
            allowed += f" (the data classes; {self.mask_state} is the mask state, never data)"
        check_range(x, 0, high, name=name, allowed=allowed, validate=self.validate)
        return x

    def _m(self, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        key = ("m", torch.device(device), dtype)
        if key not in self._cache:
            if self.kind == "absorbing":
                m = torch.zeros(self.num_states, dtype=F64)
                m[self.num_classes] = 1.0
            else:
                m = torch.full((self.num_states,), 1.0 / self.num_classes, dtype=F64)
            self._cache[key] = m.to(device=device, dtype=dtype)
        return self._cache[key]

    def _onehot(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.nn.functional.one_hot(x, self.num_states).to(dtype)

    @staticmethod
    def _mix(a: torch.Tensor, x: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """a x + b y with a and b of the tokens' (broadcast) shape, x and y (..., S)."""
        return a[..., None] * x + b[..., None] * y


def _prob_dtype(dtype: Any) -> torch.dtype:
    if dtype not in PROB_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return cast(torch.dtype, dtype)


def _log_x0(logits: Any, x_t: Any, num_classes: int, name: str) -> torch.Tensor:
    """log softmax of the logits (*x_t.shape, K), float32 (float64 for float64 logits)."""
    if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point:
        kind = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"{name} must be a floating tensor (*x_t.shape, K), got {kind}")
    expected = (*getattr(x_t, "shape", ()), num_classes)
    if tuple(logits.shape) != expected:
        raise ValueError(
            f"{name} must have shape (*x_t.shape, K) = {expected} (K = {num_classes} data "
            f"classes), got {tuple(logits.shape)}"
        )
    cd = F64 if logits.dtype == F64 else torch.float32
    return torch.log_softmax(logits.to(cd), -1)


def _check_probs(probs: Any, name: str) -> None:
    if not isinstance(probs, torch.Tensor) or not probs.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating tensor of probabilities")
    if probs.device.type == "cpu" and not bool(((probs >= 0) & torch.isfinite(probs)).all()):
        raise ValueError(f"{name} must be finite and >= 0")


def _full(t: Any, like: torch.Tensor) -> torch.Tensor:
    """Validated steps as an int64 tensor of the tokens' shape."""
    return torch.as_tensor(t, device=like.device).expand(like.shape)


def _like_shape(t: Any) -> tuple[int, ...]:
    if isinstance(t, torch.Tensor) and t.dim() > 1:
        return tuple(t.shape)
    return (len(t), 1) if isinstance(t, torch.Tensor) and t.dim() == 1 else (1, 1)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for size in shape:
        n *= int(size)
    return n


def _random_draw(
    x: torch.Tensor, generator: torch.Generator | None
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """draw(k): (u_keep, u_draw), float64 uniforms of x's shape from ``generator``."""

    def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        u_keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=F64)
        return u_keep, torch.rand(x.shape, generator=generator, device=x.device, dtype=F64)

    return draw


def _keyed_draw(
    x: torch.Tensor, seed: int | None, keys: torch.Tensor | None
) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """draw(k): keyed (u_keep, u_draw); the one-draw paths (k = -1) take ``TOKEN_STREAM``,
    chain step k ``TOKEN_STREAM + 1 + k``."""

    def draw(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return keyed_token_uniforms(
            tuple(x.shape),
            seed=cast(int, seed),
            keys=cast(torch.Tensor, keys),
            stream=TOKEN_STREAM + 1 + k,
            device=x.device,
        )

    return draw
