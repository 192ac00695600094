"""Noise families, found by name: ``get_noise(name, **kwargs)``; ``available()`` lists them.

One module per family; ``base.py`` has the protocol. docs/noise-families.md has one
section per family: formula, source, covariance and how it is drawn.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from .base import NoiseFamily
from .composite import Kronecker, Sum
from .dense import Dense
from .diagonal import Diagonal
from .frames import FramesMixed, FramesProgressive
from .isotropic import Isotropic
from .lowrank import LowRank
from .offset import Offset, diffusers_offset_noise, kohya_offset_noise
from .pyramid import Pyramid
from .stationary import RBF, Colored, Spectral, Stationary

_FAMILIES: dict[str, Callable[..., NoiseFamily]] = {
    "isotropic": Isotropic,
    "diagonal": Diagonal,
    "offset": Offset,
    "pyramid": Pyramid,
    "colored": Colored,
    "pink": partial(Colored, 1.0),
    "brown": partial(Colored, 2.0),
    "blue": partial(Colored, -1.0),
    "rbf": RBF,
    "spectral": Spectral,
    "frames-mixed": FramesMixed,
    "frames-progressive": FramesProgressive,
    "dense": Dense,
    "lowrank": LowRank,
    "sum": Sum,
    "kronecker": Kronecker,
}


def available() -> list[str]:
    """The names [`get_noise`][noisejump.noise.get_noise] accepts."""
    return sorted(_FAMILIES)


def without_arguments() -> list[str]:
    """The families ``get_noise(name)`` builds with no arguments (the command line's
    ``--noise`` choices); the others need parameters (a covariance, factors, terms)."""
    names = []
    for name in available():
        try:
            get_noise(name)
        except (TypeError, ValueError):  # a required parameter is missing
            continue
        names.append(name)
    return names


def get_noise(name: str, **kwargs: Any) -> NoiseFamily:
    """The noise family called ``name``, built with ``kwargs`` (e.g. ``rho=``, ``axis=``).

    A family that needs parameters (a covariance, factors, parts) refuses to be built
    without them, with a TypeError that says how to build it.
    """
    if name not in _FAMILIES:
        raise ValueError(f"unknown noise family {name!r}; available: {available()}")
    factory = _FAMILIES[name]
    parameters = inspect.signature(factory).parameters.values()
    missing = [p.name for p in parameters if p.default is p.empty and p.name not in kwargs]
    if missing:
        arguments = ", ".join(f"{p}=..." for p in missing)
        cls = factory.func if isinstance(factory, partial) else factory
        raise TypeError(
            f"noise family {name!r} needs parameters ({', '.join(missing)}): build it as "
            f"get_noise({name!r}, {arguments}) or noisejump.noise.{cls.__name__}({arguments})"
        )
    return factory(**kwargs)


__all__ = [
    "NoiseFamily",
    "Isotropic",
    "Diagonal",
    "Offset",
    "Pyramid",
    "Stationary",
    "Colored",
    "RBF",
    "Spectral",
    "FramesMixed",
    "FramesProgressive",
    "Dense",
    "LowRank",
    "Sum",
    "Kronecker",
    "available",
    "diffusers_offset_noise",
    "kohya_offset_noise",
    "without_arguments",
    "get_noise",
]
