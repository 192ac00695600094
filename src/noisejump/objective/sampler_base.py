"""The timestep-sampler protocol and the keyed uniforms every sampler draws from.

A sampler is a law on its own space, never a process's time:

    space "u"       time u in [0, 1] (a process maps it: steps floor(u T), or its own t)
    space "sigma"   a noise level sigma in (0, inf), the VE noise of x0 + sigma e
                    (lambda = -2 log sigma; a process maps it by its log-SNR)

and answers ``pdf`` (its exact density in that space), ``cdf`` and ``icdf`` (the inverse
CDF), all in float64, and ``sample``. A draw is x = icdf(u) of one uniform u per sample
(a mixture takes one more to choose its component, a stratified draw puts u in the
sample's stratum of the global batch).

Keyed uniforms: sample b's uniforms are u_j = Phi(z_j), j = 0, 1, ..., with z the keyed
normal of (seed, keys[b]) on stream ``TIMESTEP_STREAM`` (``noisejump.rng.keyed_normal``,
elements j of the sample; Phi the standard normal CDF, so u_j ~ U(0, 1) independent).
Draw b therefore depends only on (seed, keys[b]) (and, for stratified draws, on b's
position in the global batch): any sub-batch gets exactly its rows of the full call, on
any number of ranks. u_0 is ``keyed_uniform(seed, keys)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._numpy import from_numpy
from ..checks import host_readable
from ..rng import keyed_normal

__all__ = ["SPACES", "TimestepSampler", "keyed_uniform", "keyed_uniforms"]

F64 = torch.float64
SPACES = ("u", "sigma")
TIMESTEP_STREAM = 1
DeviceLike = torch.device | str | None


class TimestepSampler:
    """A law of training times in its own space (module docstring), with keyed draws.

    Build one with [`get_sampler`][noisejump.objective.samplers.get_sampler]. Subclasses give
    ``pdf``, ``cdf`` and ``icdf``; ``sample`` draws through ``icdf`` unless a subclass
    draws otherwise (mixtures, stratified draws, tables).

    Attributes:
        name: the name ``get_sampler`` knows it by.
        space: ``"u"`` (u in [0, 1]) or ``"sigma"`` (sigma in (0, inf)).
        uniforms: keyed uniforms one draw takes (1; a mixture takes one more).
        stateful: True for the importance sampler, whose law learns from the losses
            (``update``, ``state_dict``).
    """

    name = "sampler"
    space = "u"
    uniforms = 1
    stateful = False

    @property
    def support(self) -> tuple[float, float]:
        """The interval the density lives on: [0, 1] for u, (0, inf) for sigma."""
        return (0.0, 1.0) if self.space == "u" else (0.0, math.inf)

    # ---- the law, in float64 ---------------------------------------------------------------

    def pdf(self, x: Any) -> torch.Tensor:
        """The exact density at x (float64; 0 outside the support)."""
        raise NotImplementedError

    def cdf(self, x: Any) -> torch.Tensor:
        """P(X <= x), float64."""
        raise NotImplementedError

    def icdf(self, p: Any) -> torch.Tensor:
        """The inverse CDF: the x with cdf(x) = p, for p in [0, 1] (float64)."""
        raise NotImplementedError

    # ---- draws -------------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        keys: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        positions: torch.Tensor | None = None,
        global_batch: int | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws in the sampler's space: (t, weight), t in ``dtype`` (float32), weight
        float32, both (n,).

        Args:
            n: the number of draws.
            seed, keys: keyed draws (module docstring): an int seed and one key per draw,
                an integer tensor (n,) or (n, 2); draw b depends only on (seed, keys[b]).
            generator: a torch.Generator instead (not keyed); with neither, torch's global
                generator.
            positions, global_batch: the draws' positions in the global batch and its size,
                used by stratified sampling only (default: 0..n-1 of n).
            device: where to draw without keys (keyed draws follow the keys' device).
            dtype: of t; float64 keeps every digit of the draw (``sample_time`` maps those,
                so float32 rounding never moves a draw across a step boundary).
        Returns:
            t, and the weight of each draw's loss: 1 except for importance sampling, where
            1 / (T p_t) keeps the loss unbiased.
        """
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        u = uniforms(n, self.uniforms, seed=seed, keys=keys, generator=generator, device=device)
        x, weight = self._from_uniforms(u, positions, global_batch)
        return x.to(dtype), weight

    def _from_uniforms(
        self, u: torch.Tensor, positions: torch.Tensor | None, global_batch: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float64, weight float32) from the draws' uniforms u, float64 (n, uniforms)."""
        return self.icdf(u[:, 0]), torch.ones(len(u), dtype=torch.float32, device=u.device)

    # ---- state (the importance sampler only) --------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state a checkpoint keeps: empty for a sampler without state."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(
                f"the {self.name} sampler has no state; got a state with {sorted(state)}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def uniforms(
    n: int,
    count: int,
    *,
    seed: int | None,
    keys: torch.Tensor | None,
    generator: torch.Generator | None,
    device: DeviceLike,
) -> torch.Tensor:
    """(n, count) float64 uniforms: keyed (seed and keys) or from ``generator``."""
    n = from_numpy(n)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0 (the number of draws), got {n!r}")
    if seed is None and keys is None:
        return torch.rand((n, count), generator=generator, dtype=F64, device=device)
    if seed is None or keys is None:
        given, missing = ("seed", "keys") if keys is None else ("keys", "seed")
        raise ValueError(
            f"keyed draws need both seed and keys: {given} was given without {missing} "
            "(a seed alone would repeat the same draws at every call)"
        )
    if generator is not None:
        raise ValueError("give either a generator or seed/keys, not both")
    keys = from_numpy(keys)
    if isinstance(keys, torch.Tensor) and keys.dim() >= 1 and len(keys) != n:
        raise ValueError(f"keys has {len(keys)} rows for n = {n} draws; give one key per draw")
    return keyed_uniforms(seed, keys, count)


def keyed_uniforms(seed: int, keys: torch.Tensor, count: int) -> torch.Tensor:
    """u_j = Phi(z_j) for j < ``count``: float64 (B, count), z the keyed normal of
    ``TIMESTEP_STREAM`` (module docstring); column 0 is ``keyed_uniform``."""
    z = keyed_normal((len(keys), count), seed=seed, keys=keys, stream=TIMESTEP_STREAM)
    return torch.special.ndtr(z.to(F64))


def keyed_uniform(seed: int, keys: torch.Tensor) -> torch.Tensor:
    """u ~ U(0, 1) per sample, float64 (B,), from the keyed normal of ``TIMESTEP_STREAM``."""
    return keyed_uniforms(seed, keys, 1)[:, 0]


def as_float64(x: Any, name: str) -> torch.Tensor:
    """x (a number, a sequence or a tensor) as a float64 tensor; NaN refused on the host."""
    x = from_numpy(x)
    if isinstance(x, bool) or (isinstance(x, torch.Tensor) and x.dtype == torch.bool):
        raise TypeError(f"{name} must be real numbers, got a boolean")
    value = x.to(F64) if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=F64)
    if host_readable(value) and bool(torch.isnan(value).any()):
        raise ValueError(f"{name} must not be NaN")
    return value


def as_probability(p: Any) -> torch.Tensor:
    """p as float64, checked in [0, 1] on the host (the argument of an inverse CDF)."""
    p = as_float64(p, "p")
    if host_readable(p) and p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        bad = p[~((p >= 0) & (p <= 1))].flatten()[0].item()
        raise ValueError(f"p must be a probability in [0, 1], got {bad!r}")
    return p


def normal_icdf(p: torch.Tensor) -> torch.Tensor:
    """Phi^{-1}(p) = sqrt(2) erfinv(2 p - 1), float64 (the form the training loop has always
    used, so its logit-normal draws are unchanged)."""
    return math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)
