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

#: The TrainConfig fields ``add_objective_arguments`` and ``add_perturbation_arguments``
#: define (the options of ``noisejump objective`` are the first group).
OBJECTIVE_FIELDS = (
    "process", "schedule", "diffusion_steps", "zero_terminal_snr", "shift", "prediction",
    "weighting", "snr_gamma", "p2_gamma", "p2_k", "sigma_data", "max_weight",
    "timestep_sampler", "logit_mean", "logit_std", "mode_scale", "beta_a", "beta_b",
    "p_mean", "p_std", "t_min", "t_max",
)  # fmt: skip
PERTURBATION_FIELDS = ("input_perturbation", "time_offset")


def add_objective_arguments(p, d) -> None:
    """The options that set a run's objective (process, schedule, shift, target,
    weighting, timestep sampler), with ``d`` (a TrainConfig) for the defaults: shared by
    ``noisejump train`` and ``noisejump objective``."""
    from ..objective import PREDICTIONS
    from ..schedules import schedule_names
    from ..train.objective import PROCESSES, TIMESTEP_SAMPLERS, TRAIN_WEIGHTINGS

    g = p.add_argument_group("objective (noisejump objective inspects these)")
    g.add_argument(
        "--process",
        choices=list(PROCESSES),
        default=d.process,
        help="what is trained: " + "; ".join(f"{name}: {what}" for name, what in PROCESSES.items()),
    )
    g.add_argument(
        "--schedule",
        choices=schedule_names(),
        default=d.schedule,
        help=f"the discrete schedule of --process ddpm and uniform (default: {d.schedule})",
    )
    g.add_argument(
        "--diffusion-steps",
        type=diffusion_steps,
        default=d.diffusion_steps,
        help=f"T, steps of the ddpm and uniform processes, at most {MAX_DIFFUSION_STEPS} "
        f"(default: {d.diffusion_steps})",
    )
    g.add_argument(
        "--zero-terminal-snr",
        action="store_true",
        help="rescale the schedule to zero terminal SNR (Lin et al. 2023; needs "
        "--prediction v or sample)",
    )
    g.add_argument(
        "--shift",
        type=positive_float,
        default=d.shift,
        help="log-SNR shift s: lambda -> lambda - 2 log s (s > 1 adds noise; SD3 uses 3); "
        "flow: the model sees the shifted t' = s t / (1 + (s - 1) t) (default: 1, none)",
    )
    g.add_argument(
        "--prediction",
        choices=PREDICTIONS,
        default=d.prediction,
        help="the model's target: epsilon (noise), v, sample (x0), or flow_velocity (e - x0, "
        f"--process flow only) (default: {d.prediction})",
    )
    g.add_argument(
        "--weighting",
        choices=TRAIN_WEIGHTINGS,
        default=d.weighting,
        help="loss weight per sample (docs/weightings.md); edm2 is learned: train refuses "
        f"it, objective reports it not inspectable (default: {d.weighting})",
    )
    g.add_argument(
        "--snr-gamma",
        type=positive_float,
        default=d.snr_gamma,
        help=f"gamma of min_snr and soft_min_snr (default: {d.snr_gamma})",
    )
    g.add_argument("--p2-gamma", type=float, default=d.p2_gamma, help="gamma of p2 (default: 1)")
    g.add_argument("--p2-k", type=positive_float, default=d.p2_k, help="k of p2 (default: 1)")
    g.add_argument(
        "--sigma-data",
        type=positive_float,
        default=d.sigma_data,
        help=f"EDM's sigma_data (--process edm, --weighting edm) (default: {d.sigma_data})",
    )
    g.add_argument(
        "--max-weight",
        type=positive_float,
        default=d.max_weight,
        help="cap the per-sample weight (needed where a weighting diverges at an end the "
        "process reaches) (default: no cap)",
    )
    g.add_argument(
        "--timestep-sampler",
        choices=TIMESTEP_SAMPLERS,
        default=d.timestep_sampler,
        help="how t is drawn (docs/samplers.md; edm takes log_normal) "
        f"(default: {d.timestep_sampler})",
    )
    g.add_argument("--logit-mean", type=float, default=d.logit_mean, help="m of logit_normal (0)")
    g.add_argument(
        "--logit-std", type=positive_float, default=d.logit_std, help="s of logit_normal (1)"
    )
    g.add_argument("--mode-scale", type=float, default=d.mode_scale, help="s of mode (1.29)")
    g.add_argument("--beta-a", type=positive_float, default=d.beta_a, help="a of beta (1)")
    g.add_argument("--beta-b", type=positive_float, default=d.beta_b, help="b of beta (1)")
    g.add_argument("--p-mean", type=float, default=d.p_mean, help="P_mean of log_normal (-1.2)")
    g.add_argument(
        "--p-std", type=positive_float, default=d.p_std, help="P_std of log_normal (1.2)"
    )
    g.add_argument(
        "--t-min",
        type=float,
        default=d.t_min,
        help="truncate the sampler's law to [t-min, t-max], in its space (u, or sigma)",
    )
    g.add_argument("--t-max", type=float, default=d.t_max, help="see --t-min")


def add_perturbation_arguments(p, d) -> None:
    g = p.add_argument_group("input perturbations")
    g.add_argument(
        "--input-perturbation",
        type=float,
        default=d.input_perturbation,
        help="gamma of input perturbation: the input's noise is e + gamma xi, the target "
        "keeps e (Ning et al. 2023; diffusers' --input_perturbation, 0.1) (default: 0)",
    )
    g.add_argument(
        "--time-offset",
        type=float,
        default=d.time_offset,
        help="strength s of balanced time-dependent offset noise (Kutsuna 2024; ddpm, "
        "isotropic noise) (default: 0). Plain offset noise: --noise offset",
    )


def add_parser(subparsers) -> None:
    from ..noise import without_arguments
    from ..train.config import TrainConfig
    from ..train.data import PHOTO_MAX_SIZE

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a small U-Net diffusion model (DDPM, flow, EDM or VP; or tokens: "
        "--process absorbing or uniform) with noisejump's forward process",
        description=(
            "Trains a small U-Net on RUN_DIR's data set with the exact O(1) jump for the "
            "noisy input (--process absorbing or uniform: the digits as tokens, the U-Net on "
            "one-hot tokens with logits out, MDLM's or D3PM's loss). Noise and timesteps are "
            "keyed by (seed, global sample index, step), so a resumed run and a run on any "
            "number of processes (torchrun, DDP) see the same draws. Rank 0 writes "
            "checkpoints (safetensors + JSON, atomic) every --checkpoint-every steps, then "
            "losses.json, loss.png, samples.png and summary.json. The defaults below are "
            "those of a new run: with --resume, every option not given keeps the run's saved "
            "value (--device included)."
        ),
        epilog=(
            "examples:\n"
            "  noisejump train runs/digits\n"
            "  noisejump train runs/digits --resume\n"
            "  noisejump train runs/tokens --process absorbing\n"
            "  noisejump train runs/pink --noise pink --prediction v --weighting min_snr\n"
            "  noisejump train runs/sd3 --process flow --timestep-sampler logit_normal "
            "--shift 3 --prediction flow_velocity\n"
            "  noisejump train runs/edm --process edm --timestep-sampler log_normal "
            "--weighting edm --prediction sample\n"
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
    add_objective_arguments(p, d)
    p.add_argument(
        "--noise",
        choices=without_arguments(),
        default=d.noise,
        help=f"noise family (default: {d.noise})",
    )
    add_perturbation_arguments(p, d)
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
        help=f"samples in samples.png at the end (DDIM; ancestral for tokens), 0 for none, "
        f"at most {MAX_SAMPLES} "
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


def config_from_args(args):
    """The TrainConfig the parsed options describe (every field the parser has)."""
    from ..train.config import TrainConfig

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    for key in ("channel_mult", "attention_resolutions"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    if "device" in values:
        values["device"] = str(values["device"])
    return TrainConfig(**values)


def run(args) -> int:
    from ..train.errors import TrainingStopped
    from ..train.loop import train

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    _fill_unset(args)
    config = config_from_args(args)
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
