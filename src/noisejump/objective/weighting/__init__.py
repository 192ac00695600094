"""Loss weightings as functions of log-SNR and the prediction target, found by name:
``get_weighting(name, **kwargs)``; ``weighting_names()`` lists them.

Notation: lambda = log-SNR = log(signal_t^2 / sigma_t^2), SNR = e^lambda. A weighting is a
per-sample weight omega(lambda; prediction) of the MSE in the predicted target (``base``:
one formula per weighting, carried to every target by the conversion factors of
``noisejump.objective.targets``). docs/weightings.md has each formula, source and limits.

    uniform       1                                     (every target)
    min_snr       min(SNR, gamma) on x0                 Hang et al. 2023
    soft_min_snr  gamma SNR / (SNR + gamma) on x0       Crowson et al. 2024
    debiased      1 / sqrt(SNR) on e                    Yu et al. (arXiv 2310.08442)
    p2            1 / (k + SNR)^gamma on e              Choi et al. 2022
    sigma_sqrt    sigma^-2 on x0 (rectified flow t)     SD3 / diffusers
    cosmap        2 / (pi (1 - 2 t + 2 t^2)) on x0      SD3 / diffusers
    edm           (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 on x0    Karras et al. 2022
    edm2          EDM's, over a learned e^u(sigma), + u (a module)         Karras et al. 2024

``min_snr_weight`` and ``loss_weights`` are the functions the training loop has used since
before the registry; they are built on it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from ..._numpy import from_numpy
from .base import Weighting, reached_ends
from .edm import EDMWeighting, LearnedUncertainty
from .flow import CosMap, SigmaSqrt
from .snr import P2, Debiased, MinSNR, SoftMinSNR, Uniform

__all__ = [
    "WEIGHTINGS",
    "CosMap",
    "Debiased",
    "EDMWeighting",
    "LearnedUncertainty",
    "MinSNR",
    "P2",
    "SigmaSqrt",
    "SoftMinSNR",
    "Uniform",
    "Weighting",
    "check_gamma",
    "get_weighting",
    "loss_weights",
    "min_snr_weight",
    "reached_ends",
    "shared_weighting",
    "weighting_names",
]

_REGISTRY: dict[str, type[Weighting] | type[LearnedUncertainty]] = {
    cls.name: cls
    for cls in (
        Uniform,
        MinSNR,
        SoftMinSNR,
        Debiased,
        P2,
        SigmaSqrt,
        CosMap,
        EDMWeighting,
        LearnedUncertainty,
    )
}
#: The weightings ``noisejump train --weighting`` takes today (its gamma is --snr-gamma).
WEIGHTINGS = ("uniform", "min_snr")


def weighting_names() -> list[str]:
    """The names [`get_weighting`][noisejump.objective.weighting.get_weighting] accepts."""
    return list(_REGISTRY)


def get_weighting(name: str, **kwargs: Any) -> Weighting | LearnedUncertainty:
    """The weighting called ``name`` (``weighting_names()``), built with ``kwargs``: e.g.
    ``get_weighting("min_snr", gamma=5)``, ``get_weighting("p2", gamma=1, k=1)``,
    ``get_weighting("debiased", max_weight=1e3)``. Every parameter is checked here; a
    name or parameter that does not exist is refused with the ones that do."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown weighting {name!r}; available: {weighting_names()}")
    factory = _REGISTRY[name]
    accepted = [p for p in inspect.signature(factory).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"weighting {name!r} takes {accepted or 'no parameters'}, not {unknown}")
    return factory(**kwargs)


@functools.lru_cache(maxsize=64)
def shared_weighting(name: str, **kwargs: Any) -> Weighting:
    """``get_weighting(name, **kwargs)``, one instance per arguments (hashable ones), so its
    per-schedule tables are built once: what ``keyed_mse`` uses for a weighting given by
    name or by ``min_snr_gamma``. Not for the learned edm2 (its module is trained)."""
    weighting = get_weighting(name, **kwargs)
    if not isinstance(weighting, Weighting):
        raise ValueError(
            f"the {name} weighting is learned: pass the LearnedUncertainty module itself "
            "(and train its parameters), not its name"
        )
    return weighting


def check_gamma(gamma: Any) -> float:
    """gamma of min-SNR-gamma given as ``min_snr_gamma``: a positive number."""
    gamma = from_numpy(gamma)
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not gamma > 0:
        raise ValueError(f"min_snr_gamma must be a positive number, got {gamma!r}")
    return float(gamma)


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Min-SNR-gamma weight of each snr >= 0 (float64 in, float64 out) for ``prediction``:
    ``MinSNR(gamma).omega(log snr, prediction)``, finite at snr = 0 and snr = inf."""
    return MinSNR(gamma).omega(torch.log(torch.as_tensor(snr, dtype=torch.float64)), prediction)


def loss_weights(
    schedule: Any,
    t: torch.Tensor,
    weighting: str | Weighting,
    gamma: float,
    prediction: str,
) -> torch.Tensor:
    """Per-sample loss weights (float32, t's shape, on the CPU) at steps ``t``: a name of
    ``WEIGHTINGS`` (min_snr takes ``gamma``) or any ``Weighting``."""
    if isinstance(weighting, str):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        parameters = {"gamma": gamma} if weighting == "min_snr" else {}
        return shared_weighting(weighting, **parameters).weights(schedule, t.cpu(), prediction)
    if not isinstance(weighting, Weighting):
        raise TypeError(
            f"weighting must be a name of {WEIGHTINGS} or a Weighting, got {weighting!r:.80}; "
            "a learned weighting (edm2) trains through keyed_mse(..., weighting=module)"
        )
    return weighting.weights(schedule, t.cpu(), prediction)
