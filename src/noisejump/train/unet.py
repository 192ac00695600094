"""A small U-Net for the noise-prediction network (Ho et al. 2020, appendix B, scaled down).

Timestep embedding: sinusoidal features of t (Vaswani et al. 2017, section 3.5) through a
two-layer MLP, added inside every residual block. Residual blocks: GroupNorm, SiLU, 3x3
conv, twice, with the embedding added between (Ho et al. 2020, appendix B). Self-attention
(one head) at the resolutions listed in ``attention_resolutions``. The output convolution
starts at zero, so an untrained model predicts 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t w_k), sin(t w_k)], w_k = max_period^(-k / (dim/2)), k < dim/2; shape (B, dim)."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embedding = nn.Linear(embedding_dim, out_channels)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x, embedding):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embedding(F.silu(embedding))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over the H x W positions, with a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v)  # (b, hw, c)
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps/v/x0-prediction network f(x_t, t) with x_t of shape (B, in_channels, H, W).

    Args:
        in_channels: image channels.
        channels: width of the first level; level i has channels * channel_mult[i].
        channel_mult: one entry per resolution level; H and W halve between levels.
        num_blocks: residual blocks per level (on the way down; one more on the way up).
        attention_resolutions: the spatial sizes (e.g. 4) whose blocks add self-attention;
            the middle block always attends.
        image_size: H = W of the input, to place the attention levels.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2),
        num_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (4,),
        image_size: int = 8,
    ):
        super().__init__()
        if image_size % 2 ** (len(channel_mult) - 1):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2^(levels - 1) = "
                f"{2 ** (len(channel_mult) - 1)} for channel_mult {channel_mult}"
            )
        self.channels = channels
        embedding_dim = 4 * channels
        self.embed = nn.Sequential(
            nn.Linear(channels, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, width, size = [channels], channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_blocks):
                self.down.append(
                    _block(width, channels * mult, embedding_dim, size in attention_resolutions)
                )
                width = channels * mult
                skips.append(width)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skips.append(width)
                size //= 2
        self.mid = nn.ModuleList(
            [ResidualBlock(width, width, embedding_dim), Attention(width)]
            + [ResidualBlock(width, width, embedding_dim)]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_blocks + 1):
                out = channels * mult
                self.up.append(
                    _block(width + skips.pop(), out, embedding_dim, size in attention_resolutions)
                )
                width = out
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                size *= 2
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        embedding = self.embed(timestep_embedding(t, self.channels))
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = _apply(layer, h, embedding)
            hs.append(h)
        for layer in self.mid:
            h = _apply(layer, h, embedding)
        for layer in self.up:
            if isinstance(layer, nn.Upsample):
                h = layer(h)
            else:
                h = _apply(layer, torch.cat([h, hs.pop()], dim=1), embedding)
        return self.conv_out(F.silu(self.norm_out(h)))


def _block(in_channels, out_channels, embedding_dim, attend: bool) -> nn.ModuleList:
    block = nn.ModuleList([ResidualBlock(in_channels, out_channels, embedding_dim)])
    if attend:
        block.append(Attention(out_channels))
    return block


def _apply(layer, h, embedding):
    if isinstance(layer, ResidualBlock):
        return layer(h, embedding)
    if isinstance(layer, nn.ModuleList):
        for sub in layer:
            h = sub(h, embedding) if isinstance(sub, ResidualBlock) else sub(h)
        return h
    return layer(h)
