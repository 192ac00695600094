"""PNG pictures: image grids (Pillow) and plots (matplotlib, headless "Agg" backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] to uint8 (N, H, W, C)."""
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()


#: Pixels per image side a grid aims for: an 8 x 8 digit is drawn 8 x larger (nearest).
TILE_PIXELS = 64


def grid(
    images: torch.Tensor, columns: int | None = None, scale: int | None = None, pad: int = 1
) -> np.ndarray:
    """A uint8 (H', W', 3) mosaic of images in [-1, 1], row-major, upscaled ``scale`` x
    (nearest neighbour; default: up to ``TILE_PIXELS`` per image side)."""
    n, _, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    scale = scale or max(1, TILE_PIXELS // max(h, w))
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


def save_grid(images: torch.Tensor, path, columns: int | None = None, caption: str = "") -> Path:
    """``grid(images, columns)`` as a PNG; a ``caption`` is drawn above the grid and kept
    in the file's "Description" text chunk."""
    from PIL import Image, PngImagePlugin

    picture = Image.fromarray(grid(images, columns))
    info = PngImagePlugin.PngInfo()
    if caption:
        picture = _captioned(picture, caption)
        info.add_text("Description", caption)
    picture.save(path, pnginfo=info)
    return Path(path)


def sample_caption(step: int, sampler: str, sampler_steps: int, seed: int, weights: str) -> str:
    """What a grid of samples shows, e.g. "checkpoint step 4000, ddim 50 steps, seed 0, ema
    weights"."""
    return (
        f"checkpoint step {step}, {sampler} {sampler_steps} steps, seed {seed}, {weights} weights"
    )


def _captioned(picture, caption: str, size: int = 13):
    """``picture`` below ``caption`` in black on white, the text wrapped at ", " to the
    picture's width (the picture widened when one piece is wider still)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    measure = ImageDraw.Draw(picture).textlength
    lines: list[str] = []
    for piece in caption.split(", "):
        joined = f"{lines[-1]}, {piece}" if lines else piece
        if lines and measure(joined, font=font) <= picture.width - 8:
            lines[-1] = joined
        else:
            lines.append(piece)
    width = max(picture.width, *(int(measure(line, font=font)) + 8 for line in lines))
    band = (size + 4) * len(lines) + 4
    out = Image.new("RGB", (width, picture.height + band), "white")
    out.paste(picture, ((width - picture.width) // 2, band))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, 3 + i * (size + 4)), line, fill="black", font=font)
    return out


def output_path(out, default_name: str) -> Path:
    """Where a picture command writes: ``out``, or ``out/default_name`` when ``out`` is a
    folder (an existing one, or a path ending in a separator); ".png" is added to a name
    without a suffix (matplotlib would add it unseen); missing parent folders are made."""
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", "\\")):
        path = path / default_name
    elif not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


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


def load_image(path, size: int) -> torch.Tensor:
    """An image file as (1, 3, size, size) float32 in [-1, 1] (shorter side resized, centre
    crop); ValueError naming the file if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    from .data import _resize_crop, _to_tensor

    try:
        with Image.open(path) as image:
            pixels = np.asarray(_resize_crop(image.convert("RGB"), size))
    except (FileNotFoundError, IsADirectoryError):
        raise ValueError(f"image {str(path)!r} does not exist or is not a file") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {str(path)!r}: {error}") from None
    return _to_tensor(pixels[None])


def plot_trajectories(rows: dict[str, torch.Tensor], steps, path, title: str = "") -> Path:
    """A grid: one row per entry of ``rows`` (label -> (len(steps), C, H, W) in [-1, 1]),
    one column per step."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), len(steps)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols + 1.6, 1.35 * n_rows + 0.4),
                                squeeze=False)  # fmt: skip
    for r, (label, images) in enumerate(rows.items()):
        tiles = to_uint8(images)
        for c in range(n_cols):
            axis = axes[r][c]
            axis.imshow(tiles[c].squeeze(-1) if tiles.shape[-1] == 1 else tiles[c],
                        cmap="gray", vmin=0, vmax=255, interpolation="nearest")  # fmt: skip
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(f"t = {steps[c]}", fontsize=8)
            if c == 0:
                axis.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_objectives(results, path) -> Path:
    """w(lambda) of each (name, description, ImpliedWeighting) side by side, three panels a
    row, the 90 % interval shaded (``noisejump objective``)."""
    plt = _pyplot()
    columns = min(3, len(results))
    rows = -(-len(results) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False, sharex=True
    )
    for axis, (name, what, implied) in zip(axes.flat, results, strict=False):
        lam, weight = implied.lam.numpy(), implied.weight.numpy()
        axis.plot(lam, weight, lw=1.2)
        low, high = implied.central_interval(0.9)
        axis.axvspan(low, high, alpha=0.15, label=f"90 %: [{low:.1f}, {high:.1f}]")
        axis.set_title(f"{name}: {what}", fontsize=8)
        axis.set_xlabel("log-SNR lambda")
        axis.legend(fontsize=7, loc="upper right")
    for axis in axes.flat[len(results) :]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel("w(lambda), normalised")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return Path(path)


def plot_schedules(schedules, path) -> Path:
    """abar_t and log-SNR_t = log(abar_t / (1 - abar_t)) against t, one line per schedule."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for schedule in schedules:
        steps = np.arange(schedule.num_steps)
        left.plot(steps, schedule.alphas_cumprod.numpy(), label=schedule.name)
        log_snr = schedule.log_snr.numpy()
        finite = np.isfinite(log_snr)  # -inf at a zero-terminal-SNR last step
        right.plot(steps[finite], log_snr[finite], label=schedule.name)
    left.set_xlabel("step t")
    left.set_ylabel("alpha_bar_t (signal power)")
    right.set_xlabel("step t")
    right.set_ylabel("log SNR_t = log(alpha_bar / (1 - alpha_bar))")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
