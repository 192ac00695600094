"""Statistical tests used to check a sampler against its law or against another sampler.

Everything is float64 torch and dependency-free (no scipy), so ``noisejump verify`` can run
anywhere. Each test returns a p-value; a caller fixes the false-alarm rate alpha and, when
it runs k tests at once, compares each p-value with alpha / k (Bonferroni).

    z          whitened residuals, z = L^{-1} (x - mean); N(0, I) under the null
    ks_normal  one-sample Kolmogorov-Smirnov of z against N(0, 1)
    chi2_norm  one-sample KS of |z|^2 (per sample) against chi-square(d)
    ks_2samp   two-sample KS (e.g. random projections of closed form vs chain)
    chi_square Pearson's chi-square of category counts against their probabilities
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

F64 = torch.float64


def kolmogorov_pvalue(statistic: float, n_effective: float) -> float:
    """P(D > statistic) for the KS statistic D with the effective sample size n.

    Asymptotic Kolmogorov distribution with Stephens' small-sample correction
    (Stephens 1970; Numerical Recipes 3rd ed., eq. 14.3.18):
    lambda = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) D, p = 2 sum_k (-1)^(k-1) exp(-2 k^2 lambda^2).
    """
    root = math.sqrt(n_effective)
    lam = (root + 0.12 + 0.11 / root) * statistic
    if lam < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return min(1.0, max(0.0, 2 * total))


def ks_statistic(samples: torch.Tensor, cdf: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """sup |F_n - F| of 1-D ``samples`` against the callable ``cdf``."""
    x, _ = torch.sort(samples.to(F64).flatten())
    n = len(x)
    f = cdf(x)
    upper = torch.arange(1, n + 1, dtype=F64) / n - f
    lower = f - torch.arange(0, n, dtype=F64) / n
    return float(torch.maximum(upper.max(), lower.max()))


def ks_normal(z: torch.Tensor) -> float:
    """p-value of the one-sample KS test of all entries of ``z`` against N(0, 1)."""
    return kolmogorov_pvalue(ks_statistic(z, torch.special.ndtr), z.numel())


def chi2_norm(z: torch.Tensor) -> float:
    """p-value that the squared norms of the rows of ``z`` (n, d) follow chi-square(d).

    CDF of chi-square(d) at q: the regularised lower incomplete gamma P(d/2, q/2).
    """
    z = z.to(F64)
    d = z.shape[1]
    norms = (z * z).sum(1)
    return kolmogorov_pvalue(
        ks_statistic(
            norms, lambda q: torch.special.gammainc(torch.tensor(d / 2, dtype=F64), q / 2)
        ),
        len(norms),
    )


def mean_pvalue(z: torch.Tensor) -> float:
    """Two-sided p-value that the entries of ``z`` (i.i.d. N(0, 1) under the null) have mean 0."""
    z = z.to(F64).flatten()
    score = float(z.mean()) * math.sqrt(z.numel())
    return math.erfc(abs(score) / math.sqrt(2))


def variance_pvalue(z: torch.Tensor) -> float:
    """Two-sided p-value that sum z^2 over N entries is chi-square(N) (variance 1).

    Wilson-Hilferty: (S / N)^(1/3) is close to N(1 - 2/(9N), 2/(9N)) (Wilson & Hilferty 1931).
    """
    z = z.to(F64).flatten()
    n = z.numel()
    cube_root = float((z * z).mean()) ** (1 / 3)
    score = (cube_root - (1 - 2 / (9 * n))) / math.sqrt(2 / (9 * n))
    return math.erfc(abs(score) / math.sqrt(2))


def ks_2samp(a: torch.Tensor, b: torch.Tensor) -> float:
    """p-value of the two-sample KS test of 1-D samples ``a`` and ``b``."""
    a, _ = torch.sort(a.to(F64).flatten())
    b, _ = torch.sort(b.to(F64).flatten())
    both = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, both, right=True).to(F64) / len(a)
    cdf_b = torch.searchsorted(b, both, right=True).to(F64) / len(b)
    statistic = float((cdf_a - cdf_b).abs().max())
    return kolmogorov_pvalue(statistic, len(a) * len(b) / (len(a) + len(b)))


def whiten(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """z = L^{-1} (x - mean) for rows of ``x`` (n, d), with L L^T = cov (float64 Cholesky)."""
    scale_tril = torch.linalg.cholesky(cov.to(F64))
    residual = (x.to(F64) - mean.to(F64)).T
    return torch.linalg.solve_triangular(scale_tril, residual, upper=False).T


def gaussian_pvalues(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> dict[str, float]:
    """The one-sample checks of rows of ``x`` (n, d) against N(mean, cov): mean, variance,
    KS of whitened entries against N(0, 1), and KS of their squared norms against chi2(d)."""
    z = whiten(x, mean, cov)
    return {
        "mean": mean_pvalue(z),
        "variance": variance_pvalue(z),
        "ks_normal": ks_normal(z),
        "chi2_norm": chi2_norm(z),
    }


def projection_pvalues(
    a: torch.Tensor, b: torch.Tensor, n_projections: int = 8, seed: int = 0
) -> list[float]:
    """Two-sample KS p-values of ``a`` (n, d) and ``b`` (m, d) on random unit projections."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], n_projections, generator=generator, dtype=F64)
    directions /= directions.norm(dim=0, keepdim=True)
    pa, pb = a.to(F64) @ directions, b.to(F64) @ directions
    return [ks_2samp(pa[:, k], pb[:, k]) for k in range(n_projections)]


#: Cells whose expected count is below this are pooled (per row) before the chi-square.
MIN_EXPECTED = 5.0


def chi_square(
    counts: torch.Tensor, probs: torch.Tensor, min_expected: float = MIN_EXPECTED
) -> tuple[float, int, float]:
    """(statistic, degrees of freedom, p-value) of Pearson's chi-square test that each row
    of ``counts`` (R, C) is multinomial with the probabilities of the row of ``probs``.

    X^2 = sum (O - E)^2 / E with E = row total x probability; in each row the cells with
    E < ``min_expected`` are pooled into one (Cochran's rule), cells of probability 0 are
    left out, and df = sum over rows of (cells - 1). A count in a cell of probability 0
    is impossible under the null: p = 0. The p-value is P(chi2_df > X^2), the regularised
    upper incomplete gamma Q(df / 2, X^2 / 2).
    """
    counts, probs = counts.to(F64), probs.to(F64)
    if bool((counts[probs == 0] > 0).any()):
        return math.inf, 0, 0.0
    statistic, df = 0.0, 0
    for observed_row, prob_row in zip(counts, probs, strict=True):
        expected = observed_row.sum() * prob_row
        small, large = (expected > 0) & (expected < min_expected), expected >= min_expected
        observed = torch.cat([observed_row[large], observed_row[small].sum().reshape(1)])
        expected = torch.cat([expected[large], expected[small].sum().reshape(1)])
        keep = expected > 0
        observed, expected = observed[keep], expected[keep]
        statistic += float(((observed - expected) ** 2 / expected).sum())
        df += len(expected) - 1
    if df == 0:
        return statistic, 0, 1.0
    half = torch.tensor([df / 2, statistic / 2], dtype=F64)
    p = torch.special.gammaincc(half[0], half[1])
    return statistic, df, float(p)
