"""NumPy inputs, accepted wherever the Python or torch equivalent is.

``np.int64(3)`` is not an ``int`` and ``np.float32(0.5)`` is not a ``float``, so every
public argument that takes a number or a step tensor passes through :func:`from_numpy`
first: NumPy scalars become Python numbers, NumPy arrays tensors. Booleans stay as they
are (and are refused where a number is expected).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def from_numpy(value: Any) -> Any:
    """NumPy integers and floats become Python ints and floats, NumPy arrays tensors; any
    other value (NumPy booleans included) is returned as is."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        return value.item()
    return value
