"""Stop a training whose loss or weights stop being finite, naming where, and keep the last good checkpoint.

* :func:`check_finite_loss`: one loss (a scalar tensor or a float) of one step, checked at once (a trainer that
  reads the loss on the host anyway, e.g. :mod:`gbhet_lib.radiogenomics.training`).
* :class:`LossWatch`: what :func:`~gbhet_lib.training.loop.fit` uses. On the CPU it checks every step before the
  backward pass; on a GPU it keeps each step's loss on the device (no host sync per step) and looks at them every
  ``every`` steps and at the end of the epoch, before the checkpoint is written; under ``torchrun`` only at the
  end of the epoch, all ranks together, so that no rank waits for one that stopped.
* :func:`check_finite_weights`: the modules' floating-point weights, checked before a checkpoint overwrites the
  last good one.

Imports only torch and :mod:`gbhet_lib.errors`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from ..errors import GbhetError

_FIX = ("lower the learning rate (lr), check the inputs for NaN or infinite values, or turn bf16 off "
        "(amp_bf16=False)")


class NonFiniteLossError(GbhetError, FloatingPointError):
    """A training's loss (or weights) became NaN or infinite; the message names the training, epoch and step.

    Attributes:
        where: the training, e.g. ``fusion`` or ``trait network``.
        epoch, step: where it happened (as the trainer counts them; ``step`` None for the weights after an epoch).
        value: the loss (NaN or ±inf; None for weights).
        checkpoint: the last good checkpoint, kept on disk (None when there is none).
    """

    def __init__(self, where: str, epoch: int, step: int | None, value: float | None,
                 checkpoint: Path | None = None, detail: str = "") -> None:
        self.where, self.epoch, self.step, self.value, self.checkpoint = where, epoch, step, value, checkpoint
        at = f"epoch {epoch} (as the history counts it)" + (f", step {step} of it (from 0)" if step is not None
                                                              else "")
        what = f"the loss became {value}" if value is not None else f"the weights became non-finite{detail}"
        kept = (f"; the last good checkpoint, {checkpoint}, is kept" if checkpoint is not None and checkpoint.exists()
                else "")
        super().__init__(f"{where} training stopped: {what} at {at}{kept}. To fix it, {_FIX}.")


def check_finite_loss(loss: Tensor | float, epoch: int, step: int, where: str,
                      checkpoint: Path | None = None) -> None:
    """Raise :class:`NonFiniteLossError` when ``loss`` (one step's) is NaN or infinite (a host sync for a tensor)."""
    value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(where, epoch, step, value, checkpoint)


class LossWatch:
    """Watches each step's loss of one epoch for NaN or inf (see the module docstring).

    Args:
        where: the training's name in the message.
        epoch: the epoch watched (as the trainer counts it).
        device: where the losses live; on the CPU each is checked at once.
        world: the number of processes; above 1 only :meth:`check` (at the epoch's end, on every rank) looks.
        checkpoint: the last good checkpoint, named in the message.
        every: on a GPU in one process, look every this many steps.
    """

    def __init__(self, where: str, epoch: int, device: torch.device, world: int = 1,
                 checkpoint: Path | None = None, every: int = 50) -> None:
        self.where, self.epoch, self.world, self.checkpoint, self.every = where, epoch, world, checkpoint, every
        self.immediate = device.type == "cpu" and world == 1
        self._pending: list[tuple[int, Tensor]] = []

    def observe(self, loss: Tensor, step: int) -> None:
        """Record ``loss`` of ``step``; raise now on the CPU (before the backward pass) when it is not finite."""
        if self.immediate:
            check_finite_loss(loss, self.epoch, step, self.where, self.checkpoint)
            return
        self._pending.append((step, loss.detach().reshape(())))
        if self.world == 1 and len(self._pending) >= self.every:
            self.check()

    def check(self) -> None:
        """Look at the losses recorded since the last look (one host sync; an all-reduce across ranks)."""
        if self.immediate:
            return
        steps = [s for s, _ in self._pending]
        first = _first_non_finite(torch.stack([v.float() for _, v in self._pending])) if steps else None
        bad = (steps[first], float(self._pending[first][1])) if first is not None else None
        self._pending.clear()
        if self.world > 1:
            bad = _first_over_ranks(bad)
        if bad is not None:
            raise NonFiniteLossError(self.where, self.epoch, bad[0], bad[1], self.checkpoint)


def _first_non_finite(values: Tensor) -> int | None:
    bad = (~torch.isfinite(values)).nonzero()
    return int(bad[0, 0]) if len(bad) else None


def _first_over_ranks(bad: tuple[int, float] | None) -> tuple[int, float] | None:
    """The earliest (step, value) any rank saw, on every rank (an all-gather of small objects)."""
    gathered: list[tuple[int, float] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, bad)
    found = [b for b in gathered if b is not None]
    return min(found) if found else None


def check_finite_weights(modules: Mapping[str, nn.Module], where: str, epoch: int,
                         checkpoint: Path | None = None) -> None:
    """Raise :class:`NonFiniteLossError` when a floating-point parameter or buffer of ``modules`` holds NaN or inf
    (one host sync), so that a checkpoint of broken weights never replaces the last good one."""
    for name, module in modules.items():
        tensors = [(key, t) for key, t in module.state_dict().items() if t.is_floating_point() and t.numel()]
        if not tensors:
            continue
        finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])
        if not bool(finite.all()):
            key = tensors[int((~finite).nonzero()[0, 0])][0]
            raise NonFiniteLossError(where, epoch, None, None, checkpoint, detail=f" ({name}.{key})")
