"""``noisejump sample``: draw images from a trained checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._types import MAX_SAMPLES, device, positive_int, samples, seed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="sample images from a checkpoint (ancestral DDPM, DDIM; tokens: ancestral)",
        description=(
            "Loads CHECKPOINT (a run folder: its newest intact checkpoint; or a checkpoint "
            "directory), draws --num samples with the EMA (or raw) weights and writes "
            "OUT.png (a grid) and OUT.safetensors (the tensor 'samples', (N, C, H, W) in "
            "[-1, 1]). ddpm samples every step of the exact posterior q(x_{t-1} | x_t, x0_hat), "
            "correlated noise included; ddim takes --steps deterministic steps. A token run "
            "(--process absorbing or uniform) samples with ancestral: --steps (default 100, "
            "at most T) steps of the model's posterior p(x_s | x_t), unmasking ancestrally."
        ),
        epilog="examples:\n  noisejump sample runs/digits\n"
        "  noisejump sample runs/digits --sampler ddpm --num 16 --out runs/digits/ddpm\n"
        "  noisejump sample runs/tokens --steps 64",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="run folder or checkpoint directory")
    p.add_argument(
        "--sampler",
        choices=("ddpm", "ddim", "ancestral"),
        default=None,
        help="ancestral DDPM (all T steps) or DDIM; ancestral for token runs (default: "
        "ddim, tokens: ancestral)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="DDIM steps (default: 50, or the schedule's T when smaller); ancestral steps "
        "of a token run (default: 100, or T when smaller)",
    )
    p.add_argument(
        "--num", type=samples, default=64, help=f"samples, at most {MAX_SAMPLES} (default: 64)"
    )
    p.add_argument("--seed", type=seed, default=0, help="sampling seed (default: 0)")
    p.add_argument(
        "--weights",
        choices=("ema", "model"),
        default="ema",
        help="EMA or raw weights (default: ema)",
    )
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument(
        "--out",
        default=None,
        help="output path without suffix (default: CHECKPOINT's run folder/samples-SAMPLER)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    import torch
    from safetensors.torch import save

    from ..train import checkpoint, files
    from ..train.pictures import sample_caption, save_grid
    from ..train.restore import load_trained
    from ..train.sampling import default_sampler, process_steps, sample, sampler_steps

    trained = load_trained(args.checkpoint, weights=args.weights, device=args.device)
    sampler = args.sampler or default_sampler(trained.process)
    out = Path(args.out) if args.out else trained.run_dir / f"samples-{sampler}"
    inside = checkpoint.inside_checkpoint(out, trained.run_dir)
    if inside is not None:
        raise ValueError(
            f"--out {str(out)!r} is inside checkpoint folder {str(inside)!r}; sample never "
            "writes into checkpoints: choose a path outside them"
        )
    images = sample(
        trained.model,
        trained.process,
        (args.num, *trained.image_shape),
        sampler=sampler,
        prediction=trained.config.prediction,
        seed=args.seed,
        steps=args.steps,
        device=args.device,
    )
    if not torch.isfinite(images).all():
        raise ValueError(f"sampling {args.checkpoint!r} gave non-finite values; nothing written")
    png, tensor = out.with_suffix(".png"), out.with_suffix(".safetensors")
    steps = sampler_steps(sampler, process_steps(trained.process), args.steps)
    caption = sample_caption(trained.step, sampler, steps, args.seed, args.weights)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_grid(images, png, caption=caption)
        files.replace(tensor, save({"samples": images.cpu().contiguous()}))
    except OSError as error:
        print(f"noisejump sample: error: could not write {out}.*: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"png": str(png), "tensor": str(tensor), "shape": list(images.shape)}))
    return 0
