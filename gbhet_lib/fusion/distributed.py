"""The differentiable all-gather of the fusion losses (ITC negatives from every rank under ``torchrun``).

The ``torchrun`` set-up (:func:`launched_by_torchrun`, :func:`rank_device`, :func:`process_group`,
:func:`distributed`) lives in :mod:`gbhet_lib.training.distributed` and is re-exported here for existing callers.
Imports only torch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from ..training.distributed import distributed, launched_by_torchrun, process_group, rank_device

__all__ = ["distributed", "gather", "gather_with_grad", "launched_by_torchrun", "process_group", "rank_device"]


def _sizes(x: Tensor) -> list[int]:
    """The first dimension of ``x`` on every rank."""
    _, world = distributed()
    mine = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine)
    return [int(s) for s in sizes]


class _AllGather(torch.autograd.Function):
    """All-gather of equal-sized (B, …) parts whose backward sums the gradient over ranks and returns this
    rank's rows: each rank's loss reaches every rank's embeddings."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        rank, world = distributed()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``x`` (B_r, …) from every rank in rank order, (Σ B_r, …), and the row where this rank's part
    starts. Gradients flow back to each rank's rows (summed over every rank's loss); ranks may
    hold different B_r (rows are padded for the exchange and the padding dropped). In one process: ``(x, 0)``."""
    rank, world = distributed()
    if world == 1:
        return x, 0
    sizes = _sizes(x)
    padded = torch.nn.functional.pad(x, (0, 0) * (x.ndim - 1) + (0, max(sizes) - x.shape[0]))
    gathered = _AllGather.apply(padded).split(max(sizes))
    return torch.cat([part[:n] for part, n in zip(gathered, sizes)]), sum(sizes[:rank])


def gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` (B_r, …) from every rank in rank order without gradient (e.g. labels)."""
    _, world = distributed()
    if world == 1:
        return x
    sizes = _sizes(x)
    padded = torch.nn.functional.pad(x, (0, 0) * (x.ndim - 1) + (0, max(sizes) - x.shape[0]))
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])
