"""MkDocs hook: the pictures of docs/diffusion-forcing.md, made at build time.

``img/sequences/levels.png`` shows the noise levels of ``noisejump.sequences``' training
generators (one row per sample, one column per frame), ``img/sequences/matrices.png`` the
four scheduling matrices (one row per sampling iteration). Both come from the library's
own functions, so the pictures cannot drift from the code. matplotlib (Agg), small PNGs.
"""

from __future__ import annotations

import io

from mkdocs.structure.files import File, Files

DPI = 72


def on_files(files: Files, config) -> Files:
    for name, figure in (("levels", _levels), ("matrices", _matrices)):
        files.append(File.generated(config, f"img/sequences/{name}.png", content=figure()))
    return files


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def _levels() -> bytes:
    """Training levels: 8 samples x 16 frames (12 tokens in blocks of 4 for blocks), T = 1000."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import noisejump as nj
    from noisejump import sequences as sq

    keys, T = torch.arange(8), 1000
    schedule = nj.get_schedule("linear", T)
    ar, _ = sq.autoregressive_steps(schedule, 16, 60, seed=0, keys=keys)
    panels = {
        "independent_steps": sq.independent_steps(schedule, 16, seed=0, keys=keys)[0],
        "context_steps (4 clean)": sq.context_steps(schedule, 16, 4, seed=0, keys=keys)[0],
        "block_steps (blocks of 4)": sq.block_steps(schedule, 16, 4, seed=0, keys=keys)[0],
        "autoregressive_steps (ar_step 60)": ar,
    }
    figure, axes = plt.subplots(1, 4, figsize=(12, 2.6), sharey=True)
    cmap = plt.get_cmap("viridis").with_extremes(under="white")
    for ax, (title, steps) in zip(axes, panels.items(), strict=True):
        image = ax.imshow(steps.numpy(), cmap=cmap, vmin=0, vmax=T - 1, aspect="auto")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frame")
    axes[0].set_ylabel("sample")
    bar = figure.colorbar(image, ax=axes, fraction=0.02, pad=0.01)
    bar.set_label("step (white: clean, -1)", fontsize=8)
    return _png(figure)


def _matrices() -> bytes:
    """Scheduling matrices: 8 frames, S = 10 sampling steps (pyramid and trapezoid u = 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from noisejump import sequences as sq

    figure, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, kind in zip(axes, sq.KINDS, strict=True):
        matrix = sq.scheduling_matrix(kind, 8, 10)
        image = ax.imshow(matrix.numpy(), cmap="magma", vmin=0, vmax=10, aspect="auto")
        ax.set_title(f"{kind} ({matrix.shape[0]} rows)", fontsize=9)
        ax.set_xlabel("frame")
    axes[0].set_ylabel("sampling iteration")
    bar = figure.colorbar(image, ax=axes, fraction=0.02, pad=0.01)
    bar.set_label("level (10: noise, 0: clean)", fontsize=8)
    return _png(figure)
