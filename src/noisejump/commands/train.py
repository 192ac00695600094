"""``noisejump train``: train a diffusion model on a built-in data set or a folder."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from ._types import (
    MAX_BLOCKS,
    MAX_CHANNEL_MULT,
    MAX_CHANNELS,
    MAX_DIFFUSION_STEPS,
    MAX_IMAGE_SIDE,
    MAX_SAMPLES,
    blocks,
    channel_mult,
    channels,
    device,
    diffusion_steps,
    image_side,
    non_negative_int,
    positive_float,
    positive_int,
    samples,
    samples_or_none,
    seed,
)


def add_parser(subparsers) -> None:
    from ..noise import without_arguments
    from ..objective import PREDICTIONS, SAMPLERS, WEIGHTINGS
    from ..schedules import schedule_names
    from ..train.config import TrainConfig
    from ..train.data import PHOTO_MAX_SIZE

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a small U-Net diffusion model (DDPM) with noisejump's forward process",
        description=(
            "Trains a small U-Net on RUN_DIR's data set with the exact O(1) jump for the "
            "noisy input. Noise and timesteps are keyed by (seed, global sample index, step), "
            "so a resumed run and a run on any number of processes (torchrun, DDP) see the "
            "same draws. Rank 0 writes checkpoints (safetensors + JSON, atomic) every "
            "--checkpoint-every steps, then losses.json, loss.png, samples.png and "
            "summary.json. The defaults below are those of a new run: with --resume, every "
            "option not given keeps the run's saved value (--device included)."
        ),
        epilog=(
            "examples:\n"
            "  noisejump train runs/digits\n"
            "  noisejump train runs/digits --resume\n"
            "  noisejump train runs/pink --noise pink --prediction v --weighting min_snr\n"
            "  noisejump train runs/photos --data photos --image-size 32 --channels 64\n"
            "  noisejump train runs/mine --data folder:path/to/images --image-size 32\n"
            "  torchrun --nproc_per_node=2 -m noisejump train runs/ddp --batch-size 128"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="the run folder (must be new or empty unless --resume)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN_DIR from its newest intact checkpoint; options not "
        "given keep the run's saved values (--steps too: give a larger one to train further)",
    )
    p.add_argument(
        "--allow-changed-data",
        action="store_true",
        help="with --resume: continue even though the data folder changed since the "
        "checkpoint (its file names, sizes or times)",
    )
    p.add_argument(
        "--data",
        default=d.data,
        help="digits (8x8, default), photos, or folder:PATH (PNG/JPEG images)",
    )
    p.add_argument(
        "--image-size",
        type=image_side,
        default=d.image_size,
        help=f"side of photos and folder images, at most {MAX_IMAGE_SIDE} (photos: "
        f"{PHOTO_MAX_SIZE}) (default: 32; digits are 8)",
    )
    p.add_argument("--schedule", choices=schedule_names(), default=d.schedule)
    p.add_argument(
        "--diffusion-steps",
        type=diffusion_steps,
        default=d.diffusion_steps,
        help=f"T, steps of the forward process, at most {MAX_DIFFUSION_STEPS} "
        f"(default: {d.diffusion_steps})",
    )
    p.add_argument(
        "--zero-terminal-snr",
        action="store_true",
        help="rescale the schedule to zero terminal SNR (Lin et al. 2023; needs "
        "--prediction v or sample)",
    )
    p.add_argument(
        "--noise",
        choices=without_arguments(),
        default=d.noise,
        help=f"noise family (default: {d.noise})",
    )
    p.add_argument(
        "--prediction",
        choices=PREDICTIONS,
        default=d.prediction,
        help=f"the model's target: epsilon (noise), v, or sample (x0) (default: {d.prediction})",
    )
    p.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default=d.weighting,
        help=f"loss weight per step (default: {d.weighting})",
    )
    p.add_argument(
        "--snr-gamma",
        type=positive_float,
        default=d.snr_gamma,
        help=f"gamma of min-SNR-gamma weighting (default: {d.snr_gamma})",
    )
    p.add_argument(
        "--timestep-sampler",
        choices=SAMPLERS,
        default=d.timestep_sampler,
        help=f"how t is drawn (default: {d.timestep_sampler})",
    )
    p.add_argument(
        "--channels",
        type=channels,
        default=d.channels,
        help=f"U-Net width of the first level, at most {MAX_CHANNELS} (default: {d.channels})",
    )
    p.add_argument(
        "--channel-mult",
        type=channel_mult,
        nargs="+",
        default=list(d.channel_mult),
        metavar="M",
        help=f"width multiplier per level, each at most {MAX_CHANNEL_MULT} (default: 1 2)",
    )
    p.add_argument(
        "--num-blocks",
        type=blocks,
        default=d.num_blocks,
        help=f"residual blocks per level, at most {MAX_BLOCKS} (default: {d.num_blocks})",
    )
    p.add_argument(
        "--attention-resolutions",
        type=image_side,
        nargs="*",
        default=None,
        metavar="R",
        help="spatial sizes with self-attention (default: the lowest)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=d.steps, help=f"optimiser steps (default: {d.steps})"
    )
    p.add_argument(
        "--batch-size",
        type=samples,
        default=d.batch_size,
        help=f"global batch, all processes together, at most {MAX_SAMPLES} "
        f"(default: {d.batch_size})",
    )
    p.add_argument(
        "--lr", type=positive_float, default=d.lr, help=f"AdamW learning rate (default: {d.lr})"
    )
    p.add_argument(
        "--warmup-steps",
        type=non_negative_int,
        default=d.warmup_steps,
        help=f"linear learning-rate warm-up (default: {d.warmup_steps})",
    )
    p.add_argument(
        "--ema-halflife-ksamples",
        type=positive_float,
        default=d.ema_halflife_ksamples,
        help=f"EMA half-life in thousands of training samples (default: {d.ema_halflife_ksamples})",
    )
    p.add_argument(
        "--grad-clip",
        type=positive_float,
        default=d.grad_clip,
        help=f"clip the gradient norm to this (default: {d.grad_clip})",
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=d.seed,
        help=f"seed of weights, data order, noise and timesteps (default: {d.seed})",
    )
    p.add_argument(
        "--device",
        type=device,
        default=d.device,
        help="cpu or cuda[:N] (under torchrun, cuda is cuda:LOCAL_RANK) (default: cpu)",
    )
    p.add_argument(
        "--no-bf16",
        dest="bf16",
        action="store_false",
        help="disable bfloat16 autocast (only used on CUDA)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=d.checkpoint_every,
        help=f"steps between checkpoints (default: {d.checkpoint_every})",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        default=d.keep_checkpoints,
        help=f"newest checkpoints kept (default: {d.keep_checkpoints})",
    )
    p.add_argument(
        "--final-samples",
        type=samples_or_none,
        default=d.final_samples,
        help=f"DDIM samples in samples.png at the end, 0 for none, at most {MAX_SAMPLES} "
        f"(default: {d.final_samples})",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads per process (default: PyTorch's choice; on a busy "
        "machine 1 can be many times faster than 2)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    # An option of the run's config that is not given stays UNSET, so that --resume can
    # tell it from one given with its default value (_fill_unset).
    p.set_defaults(run=run, **dict.fromkeys((f.name for f in fields(TrainConfig)), UNSET))


#: The value of a config option not given on the command line.
UNSET = object()


def _fill_unset(args) -> None:
    """Give each config option not on the command line its value: with ``--resume``, the
    one the run saved in its newest checkpoint (``restore.saved_config``); otherwise (or
    without a readable checkpoint, which ``train`` then reports) ``TrainConfig``'s."""
    from ..train.config import TrainConfig
    from ..train.restore import saved_config

    saved = saved_config(args.run_dir) if args.resume else None
    values = (TrainConfig() if saved is None else TrainConfig.from_json(saved)).to_json()
    if saved is not None and args.device is UNSET:  # checked as a given --device is
        try:
            values["device"] = device(values["device"])
        except argparse.ArgumentTypeError as error:
            raise ValueError(
                f"--resume: the run trained on {values['device']}, but {error}; pass --device "
                "to choose where it continues"
            ) from None
    for name, value in values.items():
        if getattr(args, name, None) is UNSET:
            setattr(args, name, value)


def run(args) -> int:
    from ..train.config import TrainConfig
    from ..train.errors import TrainingStopped
    from ..train.loop import train

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    _fill_unset(args)
    config = TrainConfig(
        data=args.data,
        image_size=args.image_size,
        schedule=args.schedule,
        diffusion_steps=args.diffusion_steps,
        zero_terminal_snr=args.zero_terminal_snr,
        noise=args.noise,
        prediction=args.prediction,
        weighting=args.weighting,
        snr_gamma=args.snr_gamma,
        timestep_sampler=args.timestep_sampler,
        channels=args.channels,
        channel_mult=tuple(args.channel_mult),
        num_blocks=args.num_blocks,
        attention_resolutions=(
            None if args.attention_resolutions is None else tuple(args.attention_resolutions)
        ),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        ema_halflife_ksamples=args.ema_halflife_ksamples,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=str(args.device),
        bf16=args.bf16,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        final_samples=args.final_samples,
    )
    try:
        summary = train(
            config,
            args.run_dir,
            resume=args.resume,
            progress=not args.quiet,
            allow_changed_data=args.allow_changed_data,
        )
    except TrainingStopped as stopped:  # a signal, divergence, another writer
        print(f"noisejump train: {stopped}", file=sys.stderr)
        return stopped.exit_code
    except OSError as error:  # a full disk or a read-only folder: one line
        print(f"noisejump train: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the second Ctrl-C
        print(
            "noisejump train: stopped at once (second interrupt); the newest complete "
            f"checkpoint is intact: continue with `noisejump train {args.run_dir} --resume`",
            file=sys.stderr,
        )
        return 130
    if "losses" in summary:  # rank 0
        print(json.dumps(summary, indent=1, allow_nan=False))
    return 0
