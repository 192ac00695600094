"""Timestep samplers: t in {0, ..., T-1} per sample from a keyed uniform u in [0, 1).

    uniform       t = floor(u T)
    stratified    t = floor((j + u) T / B) for the sample at position j of the global batch
                  of B: one stratum per sample, across the batch and across ranks
    logit_normal  t = floor(sigmoid(m + s z) T), z = Phi^{-1}(u) (Esser et al. 2024,
                  arXiv 2403.03206, section 3.1: "logit-normal sampling")
    importance    t ~ p_t proportional to sqrt(E[L_t^2]) over the last 10 losses at t,
                  mixed with 1 % uniform, loss weight 1 / (T p_t); uniform until every t
                  has 10 losses (Nichol & Dhariwal 2021, arXiv 2102.09672, section 3.3)

The uniform u of a sample is keyed (``keyed_uniform``): u = Phi(z) with z the keyed normal of
stream ``TIMESTEP_STREAM`` (Phi the standard normal CDF, so u ~ U(0, 1)).

``sample`` returns (t, weight): the weight is 1 except for importance sampling, which keeps
the loss unbiased. Only the importance sampler has state (``state_dict``), updated with the
whole global batch so it stays identical on every rank.
"""

from __future__ import annotations

import math

import torch

from .._numpy import from_numpy
from ..rng import keyed_normal

SAMPLERS = ("uniform", "stratified", "logit_normal", "importance")


class TimestepSampler:
    """A timestep sampler over the T steps of a discrete schedule (module docstring)."""

    def __init__(
        self, name: str, num_steps: int, *, logit_mean: float = 0.0, logit_std: float = 1.0
    ) -> None:
        if name not in SAMPLERS:
            raise ValueError(f"timestep sampler must be one of {SAMPLERS}, got {name!r}")
        num_steps = from_numpy(num_steps)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        self.name = name
        self.num_steps = num_steps
        self.logit_mean, self.logit_std = logit_mean, logit_std
        self.history = torch.zeros(num_steps, IMPORTANCE_HISTORY, dtype=torch.float64)
        self.counts = torch.zeros(num_steps, dtype=torch.int64)

    def sample(
        self, u: torch.Tensor, positions: torch.Tensor, global_batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(t int64 (B,), weight float32 (B,)) from uniforms ``u`` (float64 (B,)) and the
        samples' ``positions`` in the global batch."""
        T = self.num_steps
        weight = torch.ones(len(u), dtype=torch.float32)
        if self.name == "uniform":
            t = u * T
        elif self.name == "stratified":
            t = (positions.to(torch.float64) + u) * (T / global_batch)
        elif self.name == "logit_normal":
            z = math.sqrt(2.0) * torch.erfinv(2.0 * u - 1.0)  # Phi^{-1}(u)
            t = torch.sigmoid(self.logit_mean + self.logit_std * z) * T
        else:
            p = self.probabilities()
            t = torch.searchsorted(torch.cumsum(p, 0), u, right=True)
            t = t.clamp(max=T - 1)
            weight = (1.0 / (T * p[t])).to(torch.float32)
        return t.to(torch.int64).clamp(0, T - 1), weight

    def probabilities(self) -> torch.Tensor:
        """p_t (float64, (T,)): importance weights once warm, uniform before."""
        T = self.num_steps
        if self.name != "importance" or (self.counts < IMPORTANCE_HISTORY).any():
            return torch.full((T,), 1.0 / T, dtype=torch.float64)
        p = self.history.pow(2).mean(1).sqrt()
        p = p / p.sum()
        return (1 - IMPORTANCE_UNIFORM) * p + IMPORTANCE_UNIFORM / T

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record per-sample (unweighted) losses of the whole global batch."""
        if self.name != "importance":
            return
        for step, loss in zip(t.tolist(), losses.to(torch.float64).tolist(), strict=True):
            self.history[step] = torch.roll(self.history[step], -1)
            self.history[step, -1] = loss
            self.counts[step] = min(int(self.counts[step]) + 1, IMPORTANCE_HISTORY)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"history": self.history.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.history = state["history"].to(torch.float64).clone()
        self.counts = state["counts"].to(torch.int64).clone()


def keyed_uniform(seed: int, keys: torch.Tensor) -> torch.Tensor:
    """u ~ U(0, 1) per sample, float64 (B,), from the keyed normal of ``TIMESTEP_STREAM``."""
    z = keyed_normal((len(keys), 1), seed=seed, keys=keys, stream=TIMESTEP_STREAM)
    return torch.special.ndtr(z[:, 0].to(torch.float64))


TIMESTEP_STREAM = 1
IMPORTANCE_HISTORY = 10
IMPORTANCE_UNIFORM = 0.01
