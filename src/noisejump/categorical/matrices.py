"""User-given transition matrices: no shared structure, so precompute or walk.

A chain of row-stochastic K x K matrices Q_0 .. Q_(T-1) ([Q_k]_ij = q(x_k = j | x_(k-1) = i))
has q(x_t | x0) = row x0 of Qbar_t = Q_0 Q_1 ... Q_t (Austin et al. 2021, D3PM, arXiv
2107.03006, section 3), but without the structure Q_k = a_k I + (1 - a_k) 1 m^T the
product has no closed form. So, as ``noisejump.processes.linear`` does for Gaussians:

    dense   every Qbar_t precomputed once in float64, while the table's 8 (T + 1) K^2 bytes
            stay under ``max_dense_bytes``: O(K) per token afterwards
    chain   beyond the bound, the chain walked one transition per step: O(t K) per token
            to sample, O(t K^2) to propagate its probabilities

``discretized_gaussian`` builds D3PM's discretised-Gaussian kernel (appendix A.2.2), an
ordinal chain whose matrices do not share the closed form's structure.
"""

from __future__ import annotations

from typing import Any

import torch

from .._numpy import from_numpy

__all__ = ["ROW_TOLERANCE", "TransitionMatrices", "discretized_gaussian"]

F64 = torch.float64
#: The largest |row sum - 1| a user-given float64 matrix may have; a matrix given in a
#: lower precision may be off by K times its dtype's eps (float32, K = 17: 2e-6), the
#: rounding of K entries. Rows within it are renormalised in float64.
ROW_TOLERANCE = 1e-9


class TransitionMatrices:
    """Validated step matrices (T, K, K) in float64, their cumulative products (dense) or
    the chain, and the products between any two steps."""

    def __init__(self, matrices: Any, num_classes: int, max_dense_bytes: int) -> None:
        self.steps = _as_matrices(matrices, num_classes)
        self.num_steps = len(self.steps)
        self.num_classes = num_classes
        self.max_dense_bytes = max_dense_bytes
        self._table: torch.Tensor | None = None
        self._cache: dict[tuple[str, torch.device | str, torch.dtype], torch.Tensor] = {}
        self._between: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def dense_bytes(self) -> int:
        """8 (T + 1) K^2: the float64 table of every Qbar_t (and Qbar_(-1) = I)."""
        return 8 * (self.num_steps + 1) * self.num_classes**2

    @property
    def dense_ok(self) -> bool:
        return self.dense_bytes <= self.max_dense_bytes

    def table(self, device: torch.device | str, dtype: torch.dtype = F64) -> torch.Tensor:
        """(T + 1, K, K): entry 0 is Qbar_(-1) = I, entry k + 1 is Qbar_k, built once in
        float64 and cached per device and dtype."""
        key = ("table", device, dtype)
        if key not in self._cache:
            if self._table is None:
                products = [torch.eye(self.num_classes, dtype=F64)]
                for step in self.steps:
                    products.append(products[-1] @ step)
                self._table = torch.stack(products)
            self._cache[key] = self._table.to(device=device, dtype=dtype)
        return self._cache[key]

    def step_matrices(self, device: torch.device | str, dtype: torch.dtype = F64) -> torch.Tensor:
        key = ("steps", device, dtype)
        if key not in self._cache:
            self._cache[key] = self.steps.to(device=device, dtype=dtype)
        return self._cache[key]

    def between(self, s: int, t: int) -> torch.Tensor:
        """Qbar_(t|s) = Q_(s+1) ... Q_t (K, K) float64 for -1 <= s <= t: from the table
        where it is dense and s = -1, else the product walked (cached while dense)."""
        if s == -1 and self.dense_ok:
            return self.table("cpu")[t + 1]
        if (s, t) in self._between:
            return self._between[(s, t)]
        product = torch.eye(self.num_classes, dtype=F64)
        for k in range(s + 1, t + 1):
            product = product @ self.steps[k]
        if self.dense_ok:
            self._between[(s, t)] = product
        return product


def _as_matrices(matrices: Any, num_classes: int) -> torch.Tensor:
    """(T, K, K) float64, finite, non-negative, rows summing to 1 within ``_row_tolerance``
    of the given dtype, then renormalised in float64 (a copy: the caller's stays as it is)."""
    matrices = from_numpy(matrices)
    try:
        if isinstance(matrices, torch.Tensor):
            given = [matrices.detach()]
            table = matrices.detach().to(device="cpu", dtype=F64).clone()
        else:
            given = [torch.as_tensor(from_numpy(m)).detach() for m in matrices]
            table = torch.stack([m.to(device="cpu", dtype=F64) for m in given])
    except (TypeError, RuntimeError, ValueError) as error:
        raise TypeError(
            f"kind must be 'absorbing', 'uniform' or a sequence of {num_classes} x {num_classes} "
            f"transition matrices (a tensor of shape (T, {num_classes}, {num_classes})); "
            f"could not read the matrices: {error}"
        ) from None
    if table.dim() != 3 or table.shape[1:] != (num_classes, num_classes) or len(table) == 0:
        raise ValueError(
            f"transition matrices must have shape (T, {num_classes}, {num_classes}) with "
            f"T >= 1 (num_classes = {num_classes}), got {tuple(table.shape)}"
        )
    if not torch.isfinite(table).all():
        k = int((~torch.isfinite(table)).flatten(1).any(1).nonzero()[0])
        raise ValueError(f"transition matrices must be finite; matrix {k} holds NaN or infinity")
    if (table < 0).any():
        k = int((table < 0).flatten(1).any(1).nonzero()[0])
        raise ValueError(
            f"transition matrices must be row-stochastic (entries >= 0, rows summing to 1); "
            f"matrix {k} has a negative entry {float(table[k].min()):.6g}"
        )
    tolerance = _row_tolerance(given, num_classes)
    excess = (table.sum(-1) - 1.0).abs()
    if (excess > tolerance).any():
        k, row = (int(v) for v in (excess > tolerance).nonzero()[0])
        raise ValueError(
            f"transition matrices must be row-stochastic (rows summing to 1 within "
            f"{tolerance:.3g} for {_dtype_name(given)}); row {row} of matrix {k} sums to "
            f"{float(table[k, row].sum()):.12g}"
        )
    return table / table.sum(-1, keepdim=True)


def _row_tolerance(given: list[torch.Tensor], num_classes: int) -> float:
    """ROW_TOLERANCE for float64 (or integer) input, else K eps of the least precise dtype."""
    eps = [torch.finfo(m.dtype).eps for m in given if m.dtype.is_floating_point]
    return max([ROW_TOLERANCE] + [num_classes * e for e in eps if e > 2.0**-52])


def _dtype_name(given: list[torch.Tensor]) -> str:
    return ", ".join(sorted({str(m.dtype).removeprefix("torch.") for m in given}))


def discretized_gaussian(betas: Any, num_classes: int) -> torch.Tensor:
    """D3PM's discretised-Gaussian transition matrices (Austin et al. 2021, appendix A.2.2):

        [Q_k]_ij = exp(-4 (i - j)^2 / ((K - 1)^2 beta_k)) / sum_{n=-(K-1)}^{K-1}
                   exp(-4 n^2 / ((K - 1)^2 beta_k))            for i != j,
        [Q_k]_ii = 1 - sum_{j != i} [Q_k]_ij

    An ordinal kernel: nearby classes are likelier, and the products Qbar_t share no
    closed form (``CategoricalProcess`` precomputes or walks them). Returns (T, K, K)
    float64 for betas (T,) in (0, 1].
    """
    betas = torch.as_tensor(from_numpy(betas), dtype=F64)
    if betas.dim() != 1 or len(betas) == 0 or not ((betas > 0) & (betas <= 1)).all():
        raise ValueError(f"betas must be a non-empty 1-D sequence in (0, 1], got {betas}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    classes = torch.arange(num_classes, dtype=F64)
    offsets = torch.arange(-(num_classes - 1), num_classes, dtype=F64)
    scale = (num_classes - 1) ** 2 * betas[:, None]
    normaliser = torch.exp(-4.0 * offsets**2 / scale).sum(-1)  # (T,)
    distance2 = (classes[:, None] - classes[None, :]) ** 2
    matrices = torch.exp(-4.0 * distance2 / scale[:, :, None]) / normaliser[:, None, None]
    eye = torch.eye(num_classes, dtype=torch.bool)
    matrices = matrices.masked_fill(eye, 0.0)
    return matrices + torch.diag_embed(1.0 - matrices.sum(-1))


def memory_mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.3g} MiB"


def check_bytes(value: Any) -> int:
    value = from_numpy(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_dense_bytes must be an int >= 0, got {value!r}")
    return value
