"""Noise families, found by name: ``get_noise(name, **kwargs)``; ``available()`` lists them."""

from __future__ import annotations

from .base import NoiseFamily
from .isotropic import Isotropic

_FAMILIES: dict[str, type[NoiseFamily]] = {
    "isotropic": Isotropic,
}


def available() -> list[str]:
    """The names :func:`get_noise` accepts."""
    return sorted(_FAMILIES)


def get_noise(name: str, **kwargs) -> NoiseFamily:
    """The noise family called ``name``, built with ``kwargs``."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown noise family {name!r}; available: {available()}")
    return _FAMILIES[name](**kwargs)


__all__ = ["NoiseFamily", "Isotropic", "available", "get_noise"]
