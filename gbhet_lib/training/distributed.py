"""``torchrun`` set-up: whether this process was launched by it, its rank's device, the process group.

The authors' trainer could only run under DDP (spec §10.3); here one process is the default and DDP is used only
when ``torchrun`` set ``WORLD_SIZE`` > 1. NCCL on CUDA, gloo on the CPU. The differentiable all-gather that the
fusion losses need lives in :mod:`gbhet_lib.fusion.distributed`. Imports only torch.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist

from .device import device_name

_ALONE = False  # set by single_process(): this rank works alone although a process group exists


def distributed() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1) in a single process (or inside
    :func:`single_process`)."""
    if not _ALONE and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def single_process() -> Iterator[None]:
    """Inside, :func:`distributed` reports one process, so :func:`~gbhet_lib.training.fit` trains and checkpoints
    on this rank alone: for work one rank does while the others wait (rank 0 training the patch encoder that every
    rank then reads), which would otherwise split its batches with ranks that are not stepping."""
    global _ALONE
    before, _ALONE = _ALONE, True
    try:
        yield
    finally:
        _ALONE = before


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (``torchrun --nproc_per_node`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: str) -> str:
    """The device of this rank: ``device`` as :func:`~gbhet_lib.training.device.device_name` reads it
    (``auto`` → ``cuda`` or ``cpu``), and for ``cuda`` under torchrun ``cuda:<LOCAL_RANK>``."""
    name = device_name(device)
    if name == "cuda" and launched_by_torchrun():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return name


@contextmanager
def process_group(device: str) -> Iterator[tuple[int, int]]:
    """Initialise the process group when launched by torchrun (and destroy it after); yields (rank, world).

    In a single process nothing is initialised and (0, 1) is yielded, so callers need no special case.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield distributed()
        return
    backend = "nccl" if device_name(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    try:
        yield distributed()
    finally:
        dist.destroy_process_group()
