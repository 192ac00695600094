"""A discrete schedule seen in the variance-exploding parameterisation.

    x_t = x0 + sigma_t e,   sigma_t = sqrt((1 - abar_t) / abar_t) = exp(-log_snr_t / 2)

This is the DDPM chain rescaled by 1 / sqrt(abar_t) (Karras et al. 2022, arXiv 2206.00364,
eq. 4 and Table 1, "VP" with s(t) = sqrt(abar)): the form diffusers' Euler, Heun, LMS and
KDPM2 schedulers and k-diffusion's ``DiscreteEpsDDPMDenoiser`` add noise in. The chain is
x_k = x_{k-1} + sqrt(sigma_k^2 - sigma_{k-1}^2) e_k with sigma_{-1} = 0, so
``q_sample_loop`` stays an honest reference. sigma_t^2 is computed as expm1(-log abar_t).
"""

from __future__ import annotations

from typing import Any

import torch

from .discrete import Schedule, gather

F64 = torch.float64


class DiscreteSigmas:
    """The variance-exploding view x_t = x0 + sigma_t e of a discrete
    [`Schedule`][noisejump.Schedule].

    Args:
        schedule: the discrete schedule; its last abar must be > 0 (sigma finite). For a
            zero-terminal-SNR schedule, clamp the last abar first, as diffusers does (2^-24).
    """

    def __init__(self, schedule: Schedule):
        if schedule.has_zero_terminal_snr:
            raise ValueError(
                "DiscreteSigmas needs abar_T > 0: at zero terminal SNR sigma_T = "
                "sqrt((1 - abar_T) / abar_T) is infinite; clamp abar_T (diffusers uses 2**-24)"
            )
        self.base = schedule
        self.name = f"{schedule.name}:sigmas"
        self._cache: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def num_steps(self) -> int:
        return self.base.num_steps

    @property
    def sigmas(self) -> torch.Tensor:
        """sigma_t = sqrt((1 - abar_t) / abar_t), float64, length T."""
        return self._float64_table("sigma").clone()

    def shifted(self, s: float) -> DiscreteSigmas:
        """The sigma view of ``schedule.shifted(s)``: sigma'_t = s sigma_t (the shift keeps
        signal = 1 here; ``noisejump.schedules.shift``)."""
        return DiscreteSigmas(self.base.shifted(s))

    def time_of(self, x: Any, space: str = "u") -> torch.Tensor:
        """The steps of sampler draws, as the underlying schedule maps them."""
        return self.base.time_of(x, space)

    def steps(
        self,
        t: Any,
        like: torch.Tensor,
        *,
        name: str = "t",
        lowest: int = 0,
        validate: bool = True,
    ) -> Any:
        """Validated integer steps, exactly as the underlying schedule takes them."""
        return self.base.steps(t, like, name=name, lowest=lowest, validate=validate)

    def _table(self, name: str, device: Any, dtype: torch.dtype = F64) -> torch.Tensor:
        """Cached per-device tables: ``signal`` (ones), ``sigma``, ``sigma_data_last``
        (length T + 1, the last entry the data), ``sigma2_x0`` (length T + 1, entry 0 the
        data), ``sqrt_alphas`` (ones), ``sqrt_betas`` (one chain step)."""
        key = (name, torch.device(device), dtype)
        if key not in self._cache:
            self._cache[key] = self._float64_table(name).to(device=device, dtype=dtype)
        return self._cache[key]

    def _float64_table(self, name: str) -> torch.Tensor:
        log_abar = torch.log(self.base.alphas_cumprod)
        # sigma^2 = (1 - abar) / abar = exp(-log abar) - 1 = expm1(-log abar).
        sigma2 = torch.expm1(-log_abar)
        if name == "sigma":
            return sigma2.sqrt()
        if name == "signal" or name == "sqrt_alphas":
            return torch.ones_like(sigma2)
        if name == "sigma_data_last":
            return torch.cat([sigma2.sqrt(), sigma2.new_zeros(1)])
        if name == "sigma2_x0":
            return torch.cat([sigma2.new_zeros(1), sigma2])
        if name == "sqrt_betas":
            return torch.diff(sigma2, prepend=sigma2.new_zeros(1)).sqrt()
        raise KeyError(name)

    def marginal(
        self, t: Any, device: Any, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, sigma_t) of q(x_t | x0) = N(x0, sigma_t^2 I), gathered at t; step -1 (the
        data) gives (1, 0): the table's last entry, read at index -1."""
        sigma = gather(self._table("sigma_data_last", device, dtype), t)
        if isinstance(t, int):
            sigma = sigma.clone()  # an int index gives a view of the table
        return torch.ones_like(sigma), sigma

    def transition(
        self, s: Any, t: Any, device: Any, dtype: torch.dtype = F64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, sigma_t^2 - sigma_s^2) of q(x_t | x_s), s = -1 the data (sigma 0)."""
        sigma2 = self._table("sigma2_x0", device)
        variance = gather(sigma2, t + 1) - gather(sigma2, s + 1)  # entry 0 is step -1
        return torch.ones_like(variance).to(dtype), variance.to(dtype)

    def __repr__(self) -> str:
        return f"DiscreteSigmas({self.base!r})"
