"""``verify_categorical``: a token process's closed form against its own chain.

Exact (float64, every state): the process's Qbar_t (the closed form, or the precomputed
products), its ``q_probs`` and the probabilities its chain path propagates against the
product Q_0 Q_1 ... Q_t of the step matrices, at every step (and -1, the data);
``q_posterior_probs`` against Bayes' rule on the chain's joint law
q(x_s, x_t | x0) = [Qbar_s]_(x0, x_s) [Q_(s+1) ... Q_t]_(x_s, x_t), for every s < t and every
possible (x0, x_t); ``p_posterior_probs`` of a random prediction p against
sum_x0 p(x0) q(x_s, x_t | x0), normalised.

Statistical (seeded): n sequences holding each data class once (n K tokens per path) are
noised to step t by ``q_sample`` (generator), ``q_sample`` (keyed) and ``q_sample_loop``;
the counts of (x0, x_t) are tested against ``q_probs`` at t with Pearson's chi-square
(``noisejump.stats.chi_square``). Each has a negative control: the same counts against
``q_probs`` at t + offset (t - offset at the last step), which must be rejected. All
p-values share alpha by Bonferroni: the k checks and the k controls are compared with
alpha / k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import stats
from .._numpy import from_numpy
from ..verify import VerifyReport, _relative
from .process import CategoricalProcess

__all__ = ["CategoricalReport", "verify_categorical"]

F64 = torch.float64


@dataclass
class CategoricalReport(VerifyReport):
    """A ``VerifyReport`` with negative controls: ``controls`` holds the p-values of the
    counts against q_probs at t + ``offset``; each must be at or below the threshold."""

    offset: int = 1
    controls: dict[str, float] = field(default_factory=dict)

    @property
    def controls_rejected(self) -> bool:
        return all(p <= self.threshold for p in self.controls.values())

    @property
    def passed(self) -> bool:
        return self.exact_ok and self.statistical_ok and self.controls_rejected

    def __str__(self) -> str:
        lines = super().__str__().splitlines()[:-1]  # the verdict follows the controls
        (states,), (tokens,) = self.exact_shape, self.stat_shape
        lines[1] = lines[1].replace(f"event {self.exact_shape}", f"every state (S = {states})")
        at = next(i for i, line in enumerate(lines) if line.startswith("  statistical"))
        lines[at] = lines[at].replace(
            f"event {self.stat_shape}, n = {self.n} per path",
            f"n = {self.n} sequences x {tokens} tokens per path",
        )
        lines.append(
            f"  negative controls (the same counts against q_probs at t {self.offset:+d}; "
            f"each must be rejected, p <= {self.threshold:.3g}):"
        )
        for name, p in self.controls.items():
            verdict = "rejected" if p <= self.threshold else "NOT REJECTED"
            lines.append(f"    {name:<40} p = {p:<9.3g} {verdict}")
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(
            f"  verdict: {verdict} (exact {'ok' if self.exact_ok else 'FAILED'}, statistical "
            f"{'ok' if self.statistical_ok else 'FAILED'}, controls "
            f"{'rejected' if self.controls_rejected else 'NOT REJECTED'})"
        )
        return "\n".join(lines)


def verify_categorical(
    process: CategoricalProcess,
    t: int,
    *,
    n: int = 1000,
    alpha: float = 1e-3,
    seed: int = 0,
    offset: int = 1,
) -> CategoricalReport:
    """Check ``process`` (discrete steps) at step ``t`` (module docstring).

    Args:
        t: the step, an int in [0, T - 1].
        n: sequences per path; each holds the K data classes once (n K tokens).
        alpha: the false-alarm rate of the whole statistical check.
        seed: of the generator draws and of the keys (keys = seed-offset arange(n)).
        offset: the negative controls' step error, an int >= 1.
    Returns a `CategoricalReport`; ``report.passed`` is the verdict.
    """
    if process.is_continuous:
        raise TypeError("verify_categorical walks the chain: it needs discrete steps")
    T = process.num_steps
    t, n, seed, offset = (from_numpy(v) for v in (t, n, seed, offset))
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < T:
        raise ValueError(f"verify: t must be an int in [0, {T - 1}], got {t!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 20:
        raise ValueError(f"verify: n must be an int >= 20 sequences per path, got {n!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"verify: alpha must be in (0, 1), got {alpha!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 1 <= offset < T:
        raise ValueError(f"verify: offset must be an int in [1, {T - 1}], got {offset!r}")
    K, S = process.num_classes, process.num_states
    report = CategoricalReport(repr(process), t, (S,), (K,), n, alpha, offset=offset)
    report.exact_errors = _exact(process, t, seed)

    x0 = torch.arange(K).expand(n, K).contiguous()
    generator = torch.Generator().manual_seed(seed)
    keys = torch.arange(n, dtype=torch.int64) + seed * n
    drawn = {
        "q_sample (generator)": process.q_sample(x0, t, generator=generator),
        "q_sample (keyed)": process.q_sample(x0, t, seed=seed, keys=keys),
        "q_sample_loop (chain)": process.q_sample_loop(x0, t, generator=generator),
    }
    classes = torch.arange(K)
    law = process.q_probs(classes[None], t, dtype=F64)[0]
    wrong_t = t + offset if t + offset < T else t - offset
    wrong = process.q_probs(classes[None], wrong_t, dtype=F64)[0]
    for name, x_t in drawn.items():
        counts = torch.zeros(K, S, dtype=F64)
        counts.index_put_((x0.reshape(-1), x_t.reshape(-1)), torch.ones(n * K, dtype=F64),
                          accumulate=True)  # fmt: skip
        report.pvalues[name] = stats.chi_square(counts, law)[2]
        report.controls[name] = stats.chi_square(counts, wrong)[2]
    return report


def _exact(process: CategoricalProcess, t: int, seed: int) -> dict[str, float]:
    """The relative max errors of the exact checks (module docstring)."""
    T, K, S = process.num_steps, process.num_classes, process.num_states
    steps = [process.step_matrix(k) for k in range(T)]
    products = [torch.eye(S, dtype=F64)]  # products[k + 1] = Q_0 ... Q_k, the chain's
    for step in steps:
        products.append(products[-1] @ step)
    product = torch.stack(products[1:])[:, :K]  # rows of the data classes: (T, K, S)
    marginal = torch.stack([process.marginal_matrix(k) for k in range(T)])[:, :K]
    x0 = torch.arange(K).expand(T + 1, K)
    every_t = torch.arange(-1, T)[:, None]  # one step per row, -1 (the data) included
    probs = process.q_probs(x0, every_t, dtype=F64)
    chain_probs = process._chain_probs(x0, every_t)  # the path beyond a dense bound
    errors = {
        "Qbar_t: process/product": _relative(marginal, product),
        "q_probs: process/product": _relative(probs, torch.stack(products)[:, :K]),
        "q_probs (chain path)/product": _relative(chain_probs, torch.stack(products)[:, :K]),
    }

    # Bayes on the chain's joint, every s < t and every possible (x0, x_t).
    x0_grid, xt_grid = torch.meshgrid(torch.arange(K), torch.arange(S), indexing="ij")
    x0_grid, xt_grid = x0_grid.reshape(1, -1), xt_grid.reshape(1, -1)
    generator = torch.Generator().manual_seed(seed)
    # p(x0 | x_t) for each x_t, (S, K): Dirichlet(1, ..., 1), normalised exponentials.
    exponentials = -torch.rand(S, K, generator=generator, dtype=F64).log()
    prediction = exponentials / exponentials.sum(1, keepdim=True)
    q_error = p_error = 0.0
    for s in range(-1, t):
        between = torch.eye(S, dtype=F64)
        for k in range(s + 1, t + 1):
            between = between @ steps[k]
        joint = products[s + 1][:K, :, None] * between[None]  # (x0, x_s, x_t)
        possible = joint.sum(1) > 0  # (x0, x_t) pairs the chain reaches
        bayes = joint / joint.sum(1, keepdim=True).clamp(min=1e-300)
        got = process.q_posterior_probs(x0_grid, xt_grid, t, s, dtype=F64)[0].reshape(K, S, S)
        want = bayes.permute(0, 2, 1)  # (x0, x_t, x_s)
        q_error = max(q_error, _relative(got[possible], want[possible]))
        mixed = torch.einsum("tk,kst->ts", prediction, joint)  # (x_t, x_s)
        model_bayes = mixed / mixed.sum(1, keepdim=True)
        states = torch.arange(S)[None]
        got_p = process.p_posterior_probs(prediction[None], states, t, s)[0]
        p_error = max(p_error, _relative(got_p, model_bayes))
    errors["q_posterior: process/Bayes"] = q_error
    errors["p_posterior: process/Bayes"] = p_error
    return errors
