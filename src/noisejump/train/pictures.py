"""PNG pictures: image grids (Pillow) and plots (matplotlib, headless "Agg" backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] to uint8 (N, H, W, C)."""
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def grid(
    images: torch.Tensor, columns: int | None = None, scale: int | None = None, pad: int = 1
) -> np.ndarray:
    """A uint8 (H', W', 3) mosaic of images in [-1, 1], row-major, upscaled ``scale`` x
    (nearest; default: up to about 32 pixels per image side)."""
    n, _, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    scale = scale or max(1, 32 // max(h, w))
    tiles = to_uint8(images)
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    out = np.full((rows * (th + pad) + pad, columns * (tw + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[
            pad + r * (th + pad) : pad + r * (th + pad) + th,
            pad + c * (tw + pad) : pad + c * (tw + pad) + tw,
        ] = tile
    return out


def save_grid(images: torch.Tensor, path, columns: int | None = None) -> Path:
    from PIL import Image

    Image.fromarray(grid(images, columns)).save(path)
    return Path(path)


def plot_losses(losses, path) -> Path:
    """Training loss per step and its running mean over 50 steps, log scale."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, len(losses) + 1)
    axes.plot(steps, losses, lw=0.5, alpha=0.4, label="loss")
    if len(losses) >= 50:
        running = np.convolve(losses, np.ones(50) / 50, mode="valid")
        axes.plot(steps[49:], running, lw=1.5, label="mean of 50 steps")
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
