"""One shift for every schedule, in log-SNR, and the rules that choose it.

Shifting a schedule by s > 0 moves its log-SNR lambda = log(signal^2 / sigma^2) by a
constant, lambda_s(t) = lambda(t) - 2 log s, at every time t: the SNR is divided by s^2,
so s > 1 adds noise (as higher resolutions need). Each family keeps its relation between
signal and sigma (``schedule.shifted(s)``):

    discrete (VP)    abar' = abar / (abar + s^2 (1 - abar))          signal^2 + sigma^2 = 1
    VP-SDE, LogSNR   signal^2 = sigmoid(lambda_s), sigma^2 = sigmoid(-lambda_s)
    sub-VP SDE       sigma = 1 - signal^2: signal = 2 c / (1 + sqrt(1 + 4 c^2)),
                     c = exp(lambda_s / 2) (still a sub-VP SDE, of another beta(t))
    flow matching    t' = s t / (1 + (s - 1) t), signal = 1 - t', sigma = t'
                     (Esser et al. 2024, arXiv 2403.03206, eq. 23)    signal + sigma = 1
    EDM (VE)         sigma' = s sigma                                 signal = 1

Hoogeboom et al. 2023 (simple diffusion, arXiv 2301.11093, section 3.1) shift the cosine
schedule's log-SNR by 2 log(64 / d) for a d x d image: that is s = d / 64, i.e.
``resolution_shift(d * d, 64 * 64)``.

Rules that choose s:

    resolution_shift   s = sqrt(N / N_0) for N tokens against N_0 at the base resolution
                       (Esser et al. 2024, section 5.3.2)
    dynamic_shift_mu   Flux's mu, linear in the image's sequence length L:
                       mu = base_shift + (max_shift - base_shift) (L - L_0) / (L_1 - L_0)
                       (diffusers' ``calculate_shift``)
    shift_from_mu      s = e^mu for the exponential time shift (FlowMatchEuler's
                       time_shift_type="exponential": e^mu / (e^mu + 1/t - 1) is the shift
                       by e^mu), s = mu for the linear one
    open_sora_shift    s = sqrt(H W / base_HW) sqrt(F' / base_F) scale (Open-Sora 1.2's
                       ``timestep_transform``; F' the latent frames, 1 for an image)

``stretch_to_terminal`` is not a shift in log-SNR: it stretches an inference grid of
sigmas so that its last value is ``shift_terminal`` (LTX-Video, diffusers'
``stretch_shift_to_terminal``): 1 - sigma' = (1 - sigma) (1 - shift_terminal) /
(1 - sigma_last).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._numpy import from_numpy
from ..checks import check_real

__all__ = [
    "check_shift",
    "softplus",
    "dynamic_shift_mu",
    "open_sora_shift",
    "resolution_shift",
    "shift_from_mu",
    "stretch_to_terminal",
]

F64 = torch.float64
TIME_SHIFT_TYPES = ("exponential", "linear")


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) to every digit, = -log sigmoid(-x): max(x, 0) + log1p(e^-|x|) by
    ``logaddexp`` (``torch.nn.functional.softplus`` returns x itself above x = 20, off by
    e^-x: a relative error of 1e-9 in a log abar of -20); +inf and -inf give +inf and 0."""
    return torch.logaddexp(x, torch.zeros_like(x))


def check_shift(s: Any) -> float:
    """s as a float: a finite number > 0 (``schedule.shifted(s)``, ``FlowMatching(shift=)``)."""
    return check_real(s, "shift", low=0.0, open_low=True)


def _positive_int(value: Any, name: str) -> int:
    value = from_numpy(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def resolution_shift(num_tokens: int, base_num_tokens: int) -> float:
    """shift = sqrt(num_tokens / base_num_tokens) (Esser et al. 2024, section 5.3.2).

    The timestep shift that keeps the per-image signal-to-noise ratio when the number of
    positions (pixels or latent tokens) grows from ``base_num_tokens``, the resolution a
    schedule was tuned at, to ``num_tokens``. Pass the result to ``schedule.shifted`` or as
    ``FlowMatching(shift=...)``; ``resolution_shift(d * d, 64 * 64)`` is Hoogeboom et al.
    2023's d / 64.
    """
    num_tokens = _positive_int(num_tokens, "num_tokens")
    base_num_tokens = _positive_int(base_num_tokens, "base_num_tokens")
    return math.sqrt(num_tokens / base_num_tokens)


def dynamic_shift_mu(
    image_seq_len: int,
    *,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """Flux's mu(image_seq_len): the line through (base_seq_len, base_shift) and
    (max_seq_len, max_shift), evaluated at ``image_seq_len`` (diffusers'
    ``calculate_shift``, FlowMatchEulerDiscreteScheduler's ``base_image_seq_len``,
    ``max_image_seq_len``, ``base_shift``, ``max_shift``). Beyond the two lengths the line
    extends, as there. Turn mu into s with ``shift_from_mu``.
    """
    length = _positive_int(image_seq_len, "image_seq_len")
    base = _positive_int(base_seq_len, "base_seq_len")
    top = _positive_int(max_seq_len, "max_seq_len")
    if not base < top:
        raise ValueError(f"need base_seq_len < max_seq_len, got {base} and {top}")
    low = check_real(base_shift, "base_shift")
    high = check_real(max_shift, "max_shift")
    slope = (high - low) / (top - base)
    return low + slope * (length - base)


def shift_from_mu(mu: float, time_shift_type: str = "exponential") -> float:
    """The log-SNR shift s of Flux's time shift with parameter mu: e^mu for
    ``time_shift_type="exponential"`` (t' = e^mu / (e^mu + 1/t - 1)), mu itself for
    ``"linear"`` (t' = mu / (mu + 1/t - 1)), which needs mu > 0."""
    if time_shift_type not in TIME_SHIFT_TYPES:
        raise ValueError(
            f"time_shift_type must be one of {TIME_SHIFT_TYPES}, got {time_shift_type!r}"
        )
    if time_shift_type == "linear":
        return check_real(mu, "mu", low=0.0, open_low=True)
    mu = check_real(mu, "mu", low=-700.0, high=700.0)  # e^mu stays a finite float
    return math.exp(mu)


def open_sora_shift(
    height: int,
    width: int,
    latent_frames: int = 1,
    *,
    base_resolution: int = 512 * 512,
    base_num_frames: int = 1,
    scale: float = 1.0,
) -> float:
    """s = sqrt(height width / base_resolution) sqrt(latent_frames / base_num_frames) scale
    (Open-Sora 1.2, ``timestep_transform`` in opensora/schedulers/rf/rectified_flow.py).

    ``latent_frames`` is F', the frames the model sees: Open-Sora 1.2 uses
    ``num_frames // 17 * 5`` for a video (its VAE's temporal reduction) and 1 for an image;
    later versions ``(num_frames - 1) // 4``. ``height``, ``width`` in pixels, as there.
    """
    area = _positive_int(height, "height") * _positive_int(width, "width")
    frames = _positive_int(latent_frames, "latent_frames")
    base_area = _positive_int(base_resolution, "base_resolution")
    base_frames = _positive_int(base_num_frames, "base_num_frames")
    factor = check_real(scale, "scale", low=0.0, open_low=True)
    return math.sqrt(area / base_area) * math.sqrt(frames / base_frames) * factor


def stretch_to_terminal(sigmas: Any, shift_terminal: float) -> torch.Tensor:
    """An inference grid of sigmas stretched so that its last value is ``shift_terminal``:
    1 - sigma' = (1 - sigma) (1 - shift_terminal) / (1 - sigma_last) (LTX-Video; diffusers'
    FlowMatchEulerDiscreteScheduler ``shift_terminal``). Not a log-SNR shift: it moves the
    grid's ends, not the schedule.

    Args:
        sigmas: a 1-D grid in [0, 1] (the flow's sigma = t), its last value below 1.
        shift_terminal: the new last sigma, in (0, 1).
    Returns:
        the stretched grid, float64 (a new tensor).
    """
    terminal = check_real(
        shift_terminal, "shift_terminal", low=0.0, high=1.0, open_low=True, open_high=True
    )
    sigmas = from_numpy(sigmas)
    if isinstance(sigmas, torch.Tensor):
        grid = sigmas.detach().to(F64)
    else:
        grid = torch.as_tensor(sigmas, dtype=F64)
    if grid.dim() != 1 or len(grid) == 0:
        raise ValueError(f"sigmas must be a non-empty 1-D grid, got shape {tuple(grid.shape)}")
    if not bool(((grid >= 0) & (grid <= 1)).all()):
        raise ValueError("sigmas must lie in [0, 1] (flow matching's sigma = t)")
    if not grid[-1] < 1:
        raise ValueError("the grid's last sigma must be below 1 to stretch it (it is 1)")
    one_minus = 1.0 - grid
    return 1.0 - one_minus * ((1.0 - terminal) / one_minus[-1])
