"""The DDPM training loop (Ho et al. 2020, Algorithm 1), keyed, resumable and DDP-ready.

One optimiser step on the global batch of B samples (B / W per rank):

    g      global sample indices step * B + position (data.py)
    x0     the images the data order assigns to g
    t, w   timesteps and importance weights: the timestep sampler's keyed draws mapped to
           steps (``noisejump.objective.sample_time``)
    x_t, e process.q_sample(x0, t, seed=seed, keys=(g, step)): the exact O(1) jump with
           counter-based noise keyed by sample and step (``noisejump.rng.training_keys``;
           Philox stream 0 for the noise, stream 1 for the timestep uniforms); with an
           input perturbation, its keyed q_sample (the target keeps e, or the offset
           noise's ELBO target)
    loss   mean_b  w_b omega(t_b) |f(x_t, t)_b - target_b|^2 / d, omega the run's
           weighting (``train/objective.py``: process, sampler, shift, weighting)

With DDP each rank averages over its B / W samples and DDP averages the gradients over
ranks: the gradient of the global mean. Every random choice is a function of the key, so
1 process and W processes see the same samples, timesteps and noise, and a resumed run is
the uninterrupted run (same losses on CPU). Token runs (``--process absorbing`` or
``uniform``) take their step's loss from ``train/categorical.py``; the loop is the same.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..objective import TimeDependentOffset, loss_weights, sample_time, target
from ..rng import training_keys
from . import categorical as tokens
from . import checkpoint, data, distributed, faults, files, restore
from .config import TrainConfig
from .divergence import DivergenceWatch
from .errors import Diverged, Interrupted
from .lock import claim
from .objective import build_perturbation
from .progress import LOSS_WINDOW, Progress
from .signals import StopRequest


def train(
    config: TrainConfig,
    run_dir,
    *,
    resume: bool = False,
    progress: bool = True,
    allow_changed_data: bool = False,
) -> dict:
    """Train (or ``resume``) the run in ``run_dir``; return the summary (rank 0 writes it).

    Files written by rank 0: ``train.lock`` (lock.py), ``checkpoints/step-*``
    (checkpoint.py), ``losses.json``, ``summary.json``, ``loss.png`` and ``samples.png``
    (``config.final_samples`` samples of the EMA weights: DDIM, or ancestral for tokens).

    A run stops early, its newest checkpoint intact, with ``Interrupted`` (SIGINT or
    SIGTERM: the current step is finished and checkpointed), ``Diverged`` (a non-finite
    loss or non-finite weights: nothing more is written), ``RunFolderBusy`` (another
    process trains in ``run_dir``) or ``CheckpointWriteError`` (full disk, read-only
    folder). ``resume`` refuses a folder whose data changed unless
    ``allow_changed_data``.
    """
    config.validate()
    # The data folder as the run stores and compares it: resolved (one folder, one name).
    config = dataclasses.replace(config, data=data.canonical(config.data))
    run_dir = Path(run_dir)
    device = torch.device(config.device)
    world = distributed.setup(device)
    device = distributed.local_device(device, world)
    try:
        if config.batch_size % world.size:
            raise ValueError(
                f"batch_size {config.batch_size} must be divisible by the number of "
                f"processes {world.size}"
            )
        with StopRequest() as stop, claim(run_dir, resume, world.is_main):
            return _train(
                config, run_dir, resume, progress, allow_changed_data, world, device, stop
            )
    finally:
        distributed.teardown(world)


@dataclass
class _Totals:
    """What a run has done over all its sessions (stored in each checkpoint)."""

    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    step_seconds: float = 0.0
    noise_seconds: float = 0.0


def _train(config, run_dir, resume, progress, allow_changed_data, world, device, stop) -> dict:
    restored = restore.resume_point(run_dir, world) if resume else None
    fingerprint = data.fingerprint(config.data)
    if restored is not None:  # the config this session trains with (bf16 may be the saved)
        config = restore.check_resume(
            restored[2], config, restored[0], fingerprint, allow_changed_data
        )
    if config.process in tokens.PROCESSES:
        images = tokens.load_tokens(config.data)
    else:
        images = data.load_images(config.data, config.image_size)
    process = config.build_process()
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG stays untouched
        torch.manual_seed(config.seed)  # the initial weights; every other draw is keyed
        model = config.build_model(tuple(images.shape[1:])).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    sampler = config.build_timestep_sampler()
    weighting = config.build_weighting()
    perturbation = build_perturbation(config, process.schedule)
    totals, start, saved = _Totals(), 0, None
    if restored is not None:
        saved, tensors, state = restored
        restore.load_training_state(model, ema, optimizer, sampler, tensors, state, saved)
        start = state["step"]
        totals = _Totals(
            list(state["losses"]),
            state["train_seconds"],
            state.get("step_seconds", 0.0),
            state.get("noise_seconds", 0.0),
        )
    watch = DivergenceWatch()
    for step, value in enumerate(totals.losses, 1):
        watch.update(step, value)
    network = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    order = data.DataOrder(len(images), config.seed)
    meter = Progress(config.steps, start, config.batch_size, enabled=progress and world.is_main)
    ema_decay = 0.5 ** (config.batch_size / (config.ema_halflife_ksamples * 1000))
    autocast = device.type == "cuda" and config.bf16
    if config.process in tokens.PROCESSES:
        step_loss = tokens.step_loss(config, process, network, device, autocast)
    else:
        step_loss = _gaussian_loss(
            config, process, perturbation, weighting, network, device, autocast
        )
    # A token run's continuous t is float64 (its keep probability near t = 0); a Gaussian
    # run's is float32, the time that noised is the time the model sees; steps are int64.
    time_dtype = torch.float64 if config.process in tokens.PROCESSES else None
    seconds_before, started = totals.train_seconds, time.perf_counter()
    try:
        for step in range(start, config.steps):
            step_start = time.perf_counter()
            indices = data.global_indices(step, config.batch_size, world.rank, world.size)
            x0 = images[order.image_indices(indices)].to(device)
            keys = training_keys(indices, step)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
            t, w = sample_time(
                process,
                sampler,
                len(keys),
                seed=config.seed,
                keys=keys,
                positions=indices - step * config.batch_size,
                global_batch=config.batch_size,
                dtype=time_dtype,
            )
            t = t.to(device)
            loss, per_sample, noised = step_loss(x0, t, w, keys)
            noise_seconds = noised - step_start
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            _ema_update(ema, model, min(ema_decay, (step + 1) / (step + 10)))
            done = step + 1
            faults.in_step(done, world.rank)
            value, signum = _agree(loss.detach(), stop.signum, world)
            if sampler.stateful:
                sampler.update(
                    distributed.all_gather(t, world).cpu(),
                    distributed.all_gather(per_sample.detach(), world).cpu(),
                )
            step_seconds = time.perf_counter() - step_start
            totals.step_seconds += step_seconds
            totals.noise_seconds += noise_seconds
            watch.update(done, value)
            notes = [watch.flag] if watch.flag else []
            meter.update(done, value, step_seconds, noise_seconds, notes=notes)
            if not math.isfinite(value):
                what = f"the loss is {value}"
                _diverged(run_dir, world, totals, saved, done, what, watch.summary())
            totals.losses.append(value)
            if done % config.checkpoint_every == 0 or done == config.steps or signum:
                if not _finite(model, ema):
                    what, kind = "the weights are not finite", {"kind": "non-finite weights"}
                    _diverged(run_dir, world, totals, saved, done, what, {**kind, "step": done})
                totals.train_seconds = seconds_before + time.perf_counter() - started
                if world.is_main:
                    _save(
                        run_dir, done, config, images.shape, model, ema, optimizer, sampler,
                        totals, fingerprint,
                    )  # fmt: skip
                distributed.barrier(world)
                saved = checkpoint.step_dir(run_dir, done)  # every rank names it
            if signum:  # a checkpoint of step ``done`` was written just above
                last = done == config.steps
                raise Interrupted(signum, done, checkpoint.step_dir(run_dir, done), run_dir, last)
    finally:
        meter.close()
    # The last step's checkpoint is written: a signal now stops at once; --resume finishes.
    last = checkpoint.step_dir(run_dir, config.steps)
    with stop.at_once(lambda signum: Interrupted(signum, config.steps, last, run_dir, True)):
        totals.train_seconds = seconds_before + time.perf_counter() - started
        summary = {
            "status": "finished",
            "steps": config.steps,
            "resumed_from": start if restored is not None else None,
            **_rates(totals, config.batch_size),
            "divergence": watch.summary(),
            "processes": world.size,
            "device": str(device),
        }
        if world.is_main:
            finish = _finish(run_dir, config, process, ema, images.shape, totals.losses, device)
            summary.update(finish)
            _write_json(run_dir / "summary.json", summary)
    return summary


def _gaussian_loss(config, process, perturbation, weighting, network, device, autocast):
    """loss(x0, t, w, keys) -> (loss, per-sample losses, the time the noising finished)
    of one step of the Gaussian run (the module docstring's formula)."""

    def loss(x0, t, w, keys):
        x_t, noise = _noisy(process, perturbation, x0, t, config.seed, keys.to(device))
        goal = target(process, x0, noise, t, config.prediction)
        weight = (w * loss_weights(process.schedule, t, weighting, 0.0, config.prediction)).to(
            device
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        noised = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            output = network(x_t, t)
        per_sample = (output.float() - goal).pow(2).flatten(1).mean(1)
        return (weight * per_sample).mean(), per_sample, noised

    return loss


def _noisy(process, perturbation, x0, t, seed: int, keys) -> tuple[torch.Tensor, torch.Tensor]:
    """(the model's input, the noise its target is built from): q_sample's (x_t, e), or
    the perturbed input with e (input perturbation) or the offset noise's ELBO target."""
    if perturbation is None:
        return process.q_sample(x0, t, seed=seed, keys=keys)
    if isinstance(perturbation, TimeDependentOffset):
        x_t, _ = perturbation.q_sample(x0, t, seed=seed, keys=keys)
        return x_t, perturbation.target_noise(x0, t, seed=seed, keys=keys)
    return perturbation.q_sample(process, x0, t, seed=seed, keys=keys)


def _agree(loss: torch.Tensor, signum: int | None, world) -> tuple[float, int]:
    """(the mean loss over ranks, the signal any rank received or 0), from one
    collective: every rank stops at the same step."""
    local = torch.stack([loss.float(), torch.tensor(float(signum or 0), device=loss.device)])
    every = distributed.all_gather(local, world).view(world.size, 2)
    mean = every[0, 0] if world.size == 1 else every[:, 0].sum() / world.size
    return float(mean), int(every[:, 1].max())


def _finite(*models: torch.nn.Module) -> bool:
    values = [p.detach() for m in models for p in m.parameters()]
    return bool(torch.stack([v.isfinite().all() for v in values]).all())


def _rates(totals: _Totals, batch_size: int) -> dict:
    """Speed and loss over the whole run (every session); None where nothing was timed."""
    seconds, steps = totals.train_seconds, len(totals.losses)
    return {
        "train_seconds": round(seconds, 2),
        "samples_per_second": round(steps * batch_size / seconds, 1) if seconds > 0 else None,
        "noise_share": (
            round(totals.noise_seconds / totals.step_seconds, 4) if totals.step_seconds else None
        ),
        "final_loss_last_step": totals.losses[-1] if totals.losses else None,
        f"final_loss_mean_last_{LOSS_WINDOW}": _mean(totals.losses[-LOSS_WINDOW:]),
    }


def _diverged(run_dir, world, totals, saved, step: int, what: str, divergence):
    """Stop a run whose loss or weights are not finite at ``step``: rank 0 writes the
    finite losses and a summary saying so; no checkpoint is written or pruned."""
    if world.is_main:
        _write_json(run_dir / "losses.json", totals.losses)
        summary = {
            "status": "diverged",
            "steps": len(totals.losses),
            "divergence": divergence,
            "last_checkpoint": str(saved) if saved else None,
            **_rates(totals, 1),
        }
        summary.pop("samples_per_second")
        _write_json(run_dir / "summary.json", summary)
    kept = f"the last checkpoint, {saved}, is finite and kept" if saved else "no checkpoint yet"
    raise Diverged(
        f"training diverged: {what} at step {step}; nothing after it was written and {kept}. "
        "Start a new run folder with a lower --lr, a longer --warmup-steps or a smaller "
        "--grad-clip"
    )


def _write_json(path: Path, value) -> None:
    try:
        files.replace(path, files.strict_json(value))
    except OSError as error:
        raise OSError(
            error.errno,
            f"could not write {path} ({error.strerror or error}); the checkpoints are intact",
        ) from error


def _save(run_dir, step, config, image_shape, model, ema, optimizer, sampler, totals, fingerprint):
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
        "losses": totals.losses,
        "train_seconds": totals.train_seconds,
        "step_seconds": totals.step_seconds,
        "noise_seconds": totals.noise_seconds,
        "optimizer": optimizer_json,
        # Every random draw is keyed by (seed, global sample index, step): with the step
        # this is the whole RNG and data-order state.
        "rng": {"seed": config.seed, "keyed_by": ["seed", "global_sample_index", "step"]},
        "data_order": {"seed": config.seed, "samples_seen": step * config.batch_size},
        "data_fingerprint": fingerprint,
    }
    return checkpoint.save(run_dir, step, tensors, state, keep=config.keep_checkpoints)


def _ema_update(ema, model, decay: float) -> None:
    """ema <- decay ema + (1 - decay) model, parameters and buffers."""
    with torch.no_grad():
        ema_params = list(ema.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - decay)


def _finish(run_dir, config, process, ema, image_shape, losses, device) -> dict:
    from . import pictures
    from .sampling import default_sampler, process_steps, sample, sampler_steps

    written: dict[str, object] = {"losses": str(run_dir / "losses.json")}
    _write_json(run_dir / "losses.json", losses)
    pictures.plot_losses(losses, run_dir / "loss.png")
    written["loss_png"] = str(run_dir / "loss.png")
    if config.final_samples:
        start = time.perf_counter()
        shape = (config.final_samples, *image_shape[1:])
        sampler = default_sampler(process)
        images = sample(
            ema,
            process,
            shape,
            sampler=sampler,
            prediction=config.prediction,
            seed=config.seed,
            device=device,
        )
        steps = sampler_steps(sampler, process_steps(process))
        caption = pictures.sample_caption(config.steps, sampler, steps, config.seed, "ema")
        pictures.save_grid(images, run_dir / "samples.png", caption=caption)
        written["samples_png"] = str(run_dir / "samples.png")
        written["sampling_seconds"] = round(time.perf_counter() - start, 2)
    return written


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None
