"""The DDPM training loop (Ho et al. 2020, Algorithm 1), keyed, resumable and DDP-ready.

One optimiser step on the global batch of B samples (B / W per rank):

    g      global sample indices step * B + position (data.py)
    x0     the images the data order assigns to g
    t, w   timesteps and importance weights from keyed uniforms (timesteps.py)
    x_t, e process.q_sample(x0, t, seed=seed, keys=(g, step)): the exact O(1) jump with
           counter-based noise keyed by sample and step (``noisejump.rng.training_keys``;
           Philox stream 0 for the noise, stream 1 for the timestep uniforms)
    loss   mean_b  w_b lambda(t_b) |f(x_t, t)_b - target_b|^2 / d   (objective.py)

With DDP each rank averages over its B / W samples and DDP averages the gradients over
ranks: the gradient of the global mean. Every random choice is a function of the key, so
1 process and W processes see the same samples, timesteps and noise, and a resumed run is
the uninterrupted run (same losses on CPU).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from ..objective import TimestepSampler, keyed_uniform, loss_weights, target
from ..rng import training_keys
from . import checkpoint, data, distributed
from .config import TrainConfig, check_resume_config
from .progress import LOSS_WINDOW, Progress


def train(config: TrainConfig, run_dir, *, resume: bool = False, progress: bool = True) -> dict:
    """Train (or ``resume``) the run in ``run_dir``; return the summary (rank 0 writes it).

    Files written by rank 0: ``checkpoints/step-*`` (checkpoint.py), ``losses.json``,
    ``summary.json``, ``loss.png`` and ``samples.png`` (``config.final_samples`` DDIM
    samples of the EMA weights).
    """
    config.validate()
    run_dir = Path(run_dir)
    device = torch.device(config.device)
    world = distributed.setup(device)
    device = distributed.local_device(device, world)
    try:
        return _train(config, run_dir, resume, progress, world, device)
    finally:
        distributed.teardown(world)


def _train(config, run_dir, resume, progress, world, device) -> dict:
    restored = _restore_point(run_dir, resume)
    if config.batch_size % world.size:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of processes "
            f"{world.size}"
        )
    images = data.load_images(config.data, config.image_size)
    process = config.build_process()
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG stays untouched
        torch.manual_seed(config.seed)  # the initial weights; every other draw is keyed
        model = config.build_model(tuple(images.shape[1:])).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    sampler = TimestepSampler(config.timestep_sampler, process.num_steps)
    losses: list[float] = []
    start, seconds_before = 0, 0.0
    if restored is not None:
        tensors, state = checkpoint.load(restored)
        check_resume_config(state["config"], config, restored)
        model.load_state_dict(tensors["model"])
        ema.load_state_dict(tensors["ema"])
        optimizer.load_state_dict(
            checkpoint.optimizer_state(tensors["optimizer"], state["optimizer"])
        )
        sampler.load_state_dict(tensors["sampler"])
        losses, start, seconds_before = state["losses"], state["step"], state["train_seconds"]
    network = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    order = data.DataOrder(len(images), config.seed)
    meter = Progress(config.steps, start, config.batch_size, enabled=progress and world.is_main)
    ema_decay = 0.5 ** (config.batch_size / (config.ema_halflife_ksamples * 1000))
    autocast = device.type == "cuda" and config.bf16
    started = time.perf_counter()
    for step in range(start, config.steps):
        step_start = time.perf_counter()
        indices = data.global_indices(step, config.batch_size, world.rank, world.size)
        x0 = images[order.image_indices(indices)].to(device)
        keys = training_keys(indices, step)
        t, w = sampler.sample(
            keyed_uniform(config.seed, keys),
            indices - step * config.batch_size,
            config.batch_size,
        )
        t = t.to(device)
        x_t, noise = process.q_sample(x0, t, seed=config.seed, keys=keys.to(device))
        goal = target(process, x0, noise, t, config.prediction)
        weight = (
            w
            * loss_weights(
                process.schedule, t, config.weighting, config.snr_gamma, config.prediction
            )
        ).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        noise_seconds = time.perf_counter() - step_start
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            output = network(x_t, t)
        per_sample = (output.float() - goal).pow(2).flatten(1).mean(1)
        loss = (weight * per_sample).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        _ema_update(ema, model, min(ema_decay, (step + 1) / (step + 10)))
        loss = loss.detach()
        if world.distributed:
            torch.distributed.all_reduce(loss)
            loss /= world.size
        if sampler.name == "importance":
            sampler.update(
                distributed.all_gather(t, world).cpu(),
                distributed.all_gather(per_sample.detach(), world).cpu(),
            )
        losses.append(float(loss))
        meter.update(step + 1, losses[-1], time.perf_counter() - step_start, noise_seconds)
        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.steps:
            seconds = seconds_before + time.perf_counter() - started
            if world.is_main:
                _save(
                    run_dir,
                    done,
                    config,
                    images.shape,
                    model,
                    ema,
                    optimizer,
                    sampler,
                    losses,
                    seconds,
                )
            distributed.barrier(world)
    train_seconds = time.perf_counter() - started
    meter.close()
    summary = {
        "steps": config.steps,
        "resumed_from": start if restored is not None else None,
        "train_seconds": round(train_seconds, 2),
        "samples_per_second": round(
            (config.steps - start) * config.batch_size / max(train_seconds, 1e-9), 1
        ),
        "noise_share": round(meter.noise_share, 4),
        "final_loss_last_step": losses[-1] if losses else None,
        f"final_loss_mean_last_{LOSS_WINDOW}": _mean(losses[-LOSS_WINDOW:]),
        "processes": world.size,
        "device": str(device),
    }
    if world.is_main:
        summary.update(_finish(run_dir, config, process, ema, images.shape, losses, device))
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _restore_point(run_dir: Path, resume: bool) -> Path | None:
    if resume:
        found = checkpoint.latest(run_dir)
        if found is None:
            raise ValueError(f"--resume: no complete checkpoint in {str(run_dir)!r}")
        return found
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ValueError(
            f"run folder {str(run_dir)!r} is not empty; pass --resume to continue that run, "
            "or choose a new folder"
        )
    return None


def _save(run_dir, step, config, image_shape, model, ema, optimizer, sampler, losses, seconds):
    optimizer_tensors, optimizer_json = checkpoint.optimizer_tensors(optimizer)
    tensors = {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer_tensors,
        "sampler": sampler.state_dict(),
    }
    state = {
        "step": step,
        "config": config.to_json(),
        "image_shape": list(image_shape[1:]),
        "losses": losses,
        "train_seconds": seconds,
        "optimizer": optimizer_json,
        # Every random draw is keyed by (seed, global sample index, step): with the step
        # this is the whole RNG and data-order state.
        "rng": {"seed": config.seed, "keyed_by": ["seed", "global_sample_index", "step"]},
        "data_order": {"seed": config.seed, "samples_seen": step * config.batch_size},
    }
    checkpoint.save(run_dir, step, tensors, state, keep=config.keep_checkpoints)


def _ema_update(ema, model, decay: float) -> None:
    """ema <- decay ema + (1 - decay) model, parameters and buffers."""
    with torch.no_grad():
        ema_params = list(ema.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - decay)


def _finish(run_dir, config, process, ema, image_shape, losses, device) -> dict:
    from . import pictures
    from .sampling import sample, sampler_steps

    written: dict[str, object] = {"losses": str(run_dir / "losses.json")}
    (run_dir / "losses.json").write_text(json.dumps(losses))
    pictures.plot_losses(losses, run_dir / "loss.png")
    written["loss_png"] = str(run_dir / "loss.png")
    if config.final_samples:
        start = time.perf_counter()
        shape = (config.final_samples, *image_shape[1:])
        images = sample(
            ema,
            process,
            shape,
            sampler="ddim",
            prediction=config.prediction,
            seed=config.seed,
            device=device,
        )
        steps = sampler_steps("ddim", process.num_steps)
        caption = pictures.sample_caption(config.steps, "ddim", steps, config.seed, "ema")
        pictures.save_grid(images, run_dir / "samples.png", caption=caption)
        written["samples_png"] = str(run_dir / "samples.png")
        written["sampling_seconds"] = round(time.perf_counter() - start, 2)
    return written


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None
