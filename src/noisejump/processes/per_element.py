"""Per-element steps with correlated noise: the two joint laws, their sampling, the posterior.

Element i is at its own step t_i (code steps; -1 is x0, a clean element), x_t = signal x0 +
noise, noise covariance S per step (DESIGN.md, sections 1 and 5). Two joint laws:

    chain   the law of the Markov chain in which element i stops after its own t_i steps:
            the forward process's own law (the default, what ``verify`` proves),
                Cov(x_a[i], x_b[j]) = K(a_i, b_j) S_ij,
                K(a, b) = sigma_a sigma_b rho(a, b),  rho(a, b) = exp(-|lambda_a - lambda_b| / 2)
            with lambda = log(signal^2 / sigma^2) the log-SNR. For a <= b (a the cleaner)
            Cov = alpha_(b|a) sigma_a^2 (the increments they share), so rho = sqrt(snr_b /
            snr_a); for a discrete schedule K(a, b) = sqrt(abar_n / abar_m) (1 - abar_m),
            m = min(a, b), n = max(a, b). rho = 1 at equal steps, 0 against a clean element.
    shared  one draw L e of N(0, S), element i scaled by its own sigma_(t_i):
                Cov(x[i], x[j]) = sigma_i sigma_j S_ij
            (what users write by hand; ``ForwardProcess(joint_law="shared")``, the closed
            form with per-element coefficients).

Sampling the chain law:

    frames      S = R (x) S_space across the F frames of one axis, steps constant within a
                frame (``NoiseFamily.frame_split``): the F x F matrix C = rho o R (the
                elementwise product; positive definite by the Schur product theorem, R being
                so) is factored once per sample, C = G G^T, and e = (G (x) L_space) w from
                one white draw w. Clean frames have zero rows and columns in C and zero
                noise. No host read: the path runs inside torch.compile's fullgraph.
    increments  any family: per sample, its sorted distinct steps u_1 < ... < u_m (clean
                elements aside; u_0 = -1), z_j = alpha_(u_j|u_(j-1)) z_(j-1) +
                sigma_(u_j|u_(j-1)) L e_j, element i takes z_j where t_i = u_j. Draw j of
                sample b is its own j-th distinct step, so a sample's keyed noise depends
                on its key alone; m (the most distinct steps of a sample) is a host read.

The posterior q(x_s | x_t, x0) of the chain law is Gaussian conditioning (dense, small d):
mean = m_s + S_st S_tt^-1 (x_t - m_t), cov = S_ss - S_st S_tt^-1 S_ts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..noise import NoiseFamily

F64 = torch.float64
MAX_DENSE_D = 2048
JOINT_LAWS = ("chain", "shared")
#: A pivot of the frames' Cholesky factorisation at or below this share of its diagonal
#: entry is a zero pivot (a clean frame: C's row is zero), and its column is zero.
PIVOT_FLOOR = 1e-12


def check_joint_law(joint_law: Any) -> str:
    if joint_law not in JOINT_LAWS:
        raise ValueError(f"joint_law must be one of {JOINT_LAWS}, got {joint_law!r}")
    return str(joint_law)


def log_snr(schedule: Any, t: Any, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_t, lambda_t) in float64 on ``device`` at validated steps or times t (-1, the
    data: sigma 0, lambda +inf; zero terminal SNR: lambda -inf)."""
    signal, sigma = schedule.marginal(t, device, F64)
    return sigma, 2.0 * (torch.log(signal) - torch.log(sigma))


def correlation(lam_a: torch.Tensor, lam_b: torch.Tensor) -> torch.Tensor:
    """rho(a, b) = exp(-|lambda_a - lambda_b| / 2), broadcasting; 1 at equal log-SNR (also
    where both are +inf or -inf), 0 between a clean and a noisy element."""
    gap = torch.where(lam_a == lam_b, torch.zeros_like(lam_a * lam_b), (lam_a - lam_b).abs())
    return torch.exp(-gap / 2)


def kernel(schedule: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """K(a_i, b_j) = sigma_a sigma_b rho(a, b) as a (len(a), len(b)) float64 CPU matrix."""
    sigma_a, lam_a = log_snr(schedule, a, "cpu")
    sigma_b, lam_b = log_snr(schedule, b, "cpu")
    return sigma_a[:, None] * sigma_b[None, :] * correlation(lam_a[:, None], lam_b[None, :])


# ---- the chain law by increments (any family) ------------------------------------------------


def distinct_steps(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (row of t flattened beyond the batch), the sorted distinct steps without
    the clean -1: (u (b, m) padded at the end by repeating the last, rank of each element
    of t (t's shape; -1 for a clean element)). m is the largest count (a host read)."""
    rows = t.reshape(t.shape[0], -1)
    ordered = rows.sort(dim=1).values
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    new &= ordered != -1
    m = max(1, int(new.sum(1).max()))
    position = new.cumsum(1) - 1  # the rank of each sorted entry among the distinct
    u = torch.full((len(rows), m), -1, dtype=rows.dtype, device=rows.device)
    # every entry to its value's rank (the clean -1 to rank 0, where the max ignores it)
    u.scatter_reduce_(1, position.clamp(min=0), ordered, reduce="amax")
    u = u.cummax(1).values  # pad with the last distinct step (transition (1, 0))
    rank = torch.searchsorted(u.contiguous(), rows.contiguous())
    return u, torch.where(rows == -1, -1, rank).reshape(t.shape)


def increments(
    schedule: Any,
    noise: NoiseFamily,
    x0: torch.Tensor,
    t: torch.Tensor,
    draw: Callable[[int], torch.Tensor],
) -> torch.Tensor:
    """The chain law sampled by increments (module docstring), vectorised over the batch;
    ``draw(j)`` gives white draw j of the whole batch. Returns e = z / sigma_t (x_t =
    signal_t x0 + sigma_t e; 0 where sigma_t = 0) in float32 (float64 for float64 x0)."""
    cd = F64 if x0.dtype == F64 else torch.float32
    shape = tuple(x0.shape)
    u, rank = distinct_steps(t)
    coefficient_shape = (len(u),) + (1,) * (x0.dim() - 1)
    z = torch.zeros(shape, device=x0.device, dtype=cd)
    noise_part = torch.zeros_like(z)
    previous = torch.full_like(u[:, 0], -1)
    for j in range(u.shape[1]):
        alpha, sigma2 = schedule.transition(previous, u[:, j], x0.device)
        e = noise.apply(draw(j), shape)
        z = alpha.to(cd).reshape(coefficient_shape) * z
        z = z + sigma2.sqrt().to(cd).reshape(coefficient_shape) * e
        noise_part = torch.where(rank == j, z, noise_part)
        previous = u[:, j]
    _, sigma = schedule.marginal(t, x0.device, cd)
    return noise_part / torch.where(sigma > 0, sigma, torch.ones_like(sigma))


# ---- the chain law with one draw (frame families) --------------------------------------------


def frame_axis(noise: NoiseFamily, t: Any, event_shape: tuple[int, ...]) -> int | None:
    """The frame axis when the frames path serves per-element steps ``t`` (validated, batch
    first): the family splits S = R (x) S_space there and t varies along no other event
    axis; else None."""
    if not isinstance(t, torch.Tensor) or t.dim() != len(event_shape) + 1:
        return None
    split = noise.frame_split(tuple(event_shape))
    if split is None:
        return None
    axis = split[0]
    others = [n for i, n in enumerate(t.shape[1:]) if i != axis]
    return axis if all(n == 1 for n in others) else None


def frame_noise(
    schedule: Any,
    noise: NoiseFamily,
    t: torch.Tensor,
    shape: tuple[int, ...],
    white: torch.Tensor,
) -> torch.Tensor:
    """The chain law's noise e (x_t = signal_t x0 + sigma_t e) for per-frame steps, from one
    white draw ``white`` (the family's white shape, in the compute dtype): e = (G (x) L_space) w,
    G G^T = rho o R per sample. Zero at clean frames. The factorisation and the mixing run
    in the opaque op ``noisejump::frame_chain_noise`` while torch.compile traces."""
    event = tuple(shape[1:])
    axis, _ = noise.frame_split(event)  # type: ignore[misc]
    frames = event[axis]
    steps = t.reshape(t.shape[0], -1).expand(t.shape[0], frames)  # (B or 1, F)
    _, lam = log_snr(schedule, steps, white.device)
    noisy = steps != -1
    cov = _frame_covariance(noise, event, white.device)
    w = noise.frame_white(white, shape)
    if torch.compiler.is_compiling():
        e = _frame_mix_op(w, lam, noisy, cov)
    else:
        e = _frame_mix(w, lam, noisy, cov)
    return e.movedim(1, 1 + axis)


def _frame_covariance(noise: NoiseFamily, event: tuple[int, ...], device: Any) -> torch.Tensor:
    """R (F x F, float64) on ``device``, cached on the family per event and device."""
    cache = noise.__dict__.setdefault("_frame_covariances", {})
    key = (event, torch.device(device))
    if key not in cache:
        _, cov = noise.frame_split(event)  # type: ignore[misc]
        cache[key] = cov.to(device=device, dtype=F64)
    return cache[key]


def cholesky_psd(cov: torch.Tensor) -> torch.Tensor:
    """Lower-triangular G with G G^T = cov for positive semi-definite (..., F, F) float64,
    column by column (outer-product form); a pivot at or below PIVOT_FLOOR of its diagonal
    entry gives a zero column. Elementwise operations only, so a matrix's factor does not
    depend on the other matrices of the batch (batched LAPACK and cuSOLVER routines may
    choose their algorithm by batch size)."""
    a = cov.clone()
    factor = torch.zeros_like(a)
    diagonal = torch.diagonal(cov, dim1=-2, dim2=-1)
    for j in range(a.shape[-1]):
        pivot = a[..., j, j]
        positive = pivot > PIVOT_FLOOR * diagonal[..., j]
        root = torch.where(positive, pivot, torch.ones_like(pivot)).sqrt()
        column = torch.where(positive[..., None], a[..., j:, j] / root[..., None], 0.0)
        factor[..., j:, j] = column
        below = column[..., 1:]
        a[..., j + 1 :, j + 1 :] -= below[..., :, None] * below[..., None, :]
    return factor


def _frame_mix(
    w: torch.Tensor, lam: torch.Tensor, noisy: torch.Tensor, cov: torch.Tensor
) -> torch.Tensor:
    """e[:, f] = sum_(g <= f) G[:, f, g] w[:, g] with G G^T = (rho o R) masked to the noisy
    frames; w (B, F, ...) in the compute dtype, lam and noisy (B or 1, F)."""
    both = noisy[:, :, None] & noisy[:, None, :]
    c = torch.where(both, correlation(lam[:, :, None], lam[:, None, :]) * cov, 0.0)
    g = cholesky_psd(c).to(w.dtype)
    frames = w.shape[1]
    view = (g.shape[0], -1) + (1,) * (w.dim() - 2)
    e = g[:, :, 0].reshape(view) * w[:, :1]
    for k in range(1, frames):  # column k of G into frames k .. F-1: a fixed order
        e[:, k:].addcmul_(g[:, k:, k].reshape(view), w[:, k : k + 1])  # in place: no temporary
    return e


@torch.library.custom_op("noisejump::frame_chain_noise", mutates_args=())
def _frame_mix_op(
    w: torch.Tensor, lam: torch.Tensor, noisy: torch.Tensor, cov: torch.Tensor
) -> torch.Tensor:
    return _frame_mix(w, lam, noisy, cov)


@_frame_mix_op.register_fake
def _(w: torch.Tensor, lam: torch.Tensor, noisy: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    return w.new_empty(w.shape)


# ---- the posterior of the chain law ------------------------------------------------------------


def posterior(
    schedule: Any, noise: NoiseFamily, x0: torch.Tensor, x_t: torch.Tensor, s: Any, t: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and dense covariance of q(x_s | x_t, x0) with per-element steps s < t.

    Returns (mean of x_t's shape and dtype, cov (B, d, d) float64, one per sample).
    """
    event = tuple(x_t.shape[1:])
    d = math.prod(event)
    if d > MAX_DENSE_D:
        raise ValueError(
            f"q_posterior with per-element steps and correlated noise is a dense {d} x {d} "
            f"solve; only d <= {MAX_DENSE_D} is supported"
        )
    cov = noise.covariance(event)
    batch = len(x_t)
    s_all = torch.as_tensor(s).expand(x_t.shape).reshape(batch, d).cpu()
    t_all = torch.as_tensor(t).expand(x_t.shape).reshape(batch, d).cpu()
    flat0, flat_t = x0.reshape(batch, d).to(F64).cpu(), x_t.reshape(batch, d).to(F64).cpu()
    means, covs = [], []
    for b in range(batch):
        signal_s, _ = schedule.marginal(s_all[b], "cpu", F64)
        signal_t, _ = schedule.marginal(t_all[b], "cpu", F64)
        cov_st = kernel(schedule, s_all[b], t_all[b]) * cov
        cov_tt = kernel(schedule, t_all[b], t_all[b]) * cov
        gain = torch.linalg.solve(cov_tt, cov_st.T).T  # S_st S_tt^-1 (S_tt symmetric)
        residual = flat_t[b] - signal_t * flat0[b]
        means.append(signal_s * flat0[b] + gain @ residual)
        covs.append(kernel(schedule, s_all[b], s_all[b]) * cov - gain @ cov_st.T)
    mean = torch.stack(means).reshape(x_t.shape).to(device=x_t.device, dtype=x_t.dtype)
    return mean, torch.stack(covs)
