"""torchrun / DDP set-up: one process per device, gloo on CPU, NCCL on CUDA.

``torchrun --nproc_per_node=N -m noisejump train ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; without them training runs in one process and nothing here starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: torch.device) -> World:
    """Join the process group torchrun describes (if any); return this process's place."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank, size, local_rank)


def local_device(device: torch.device, world: World) -> torch.device:
    """cuda -> cuda:LOCAL_RANK under torchrun; anything else unchanged."""
    if device.type == "cuda" and device.index is None and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def all_gather(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate equal-size 1-D tensors of all ranks in rank order."""
    if not world.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
