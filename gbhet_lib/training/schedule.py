"""The authors' ALBEF-style learning-rate schedule (reference spec §3.4), as a pure function.

Their trainers drive a timm-style cosine scheduler (warm-up as a prefix, one cycle) in an unusual way:

* **Epoch 0** holds the whole warm-up. With ``step = floor(n_batches / warmup_epochs)``, *after* the optimiser step
  of each batch index i that is a multiple of ``step`` and ≤ ``warmup_epochs · step``, the scheduler is set to
  warm-up position j = i // step, i.e. lr = warmup_lr + j · (lr − warmup_lr) / warmup_epochs (j = warmup_epochs
  gives the peak). The optimiser starts at ``warmup_lr``.
* **Epoch e ≥ 1**: at its start the scheduler is set to e + warmup_epochs, i.e. cosine position e of ``epochs``:
  lr = min_lr + ½ (lr − min_lr)(1 + cos(π e / epochs)). The last epoch is ``epochs − 1``, so ``min_lr`` is never
  reached; from ``epochs`` on the scheduler returns ``min_lr``.

:func:`albef_lr` returns the learning rate that the optimiser step of batch ``batch_idx`` of ``epoch`` uses, so a
trainer can set it before every step and resume anywhere. :func:`~gbhet_lib.training.loop.fit` multiplies it by a
parameter group's ``lr_scale`` (e.g. a learnable temperature's own rate), so such a group follows the same shape.
Imports nothing outside the standard library.
"""
from __future__ import annotations

import math
from typing import Callable

#: ``schedule(epoch, batch_idx, n_batches, lr, warmup_lr, min_lr, epochs, warmup_epochs) -> lr`` of one step
Schedule = Callable[..., float]


def albef_lr(epoch: int, batch_idx: int, n_batches: int, lr: float = 1e-4, warmup_lr: float = 1e-5,
             min_lr: float = 1e-5, epochs: int = 20, warmup_epochs: int = 6) -> float:
    """Learning rate used by the optimiser step of batch ``batch_idx`` (0-based, < ``n_batches``) of ``epoch``.

    Where the authors' code would divide by zero (``n_batches < warmup_epochs``), the warm-up position advances
    every batch instead (step 1); ``warmup_epochs = 0`` means no warm-up (epoch 0 starts at the peak).
    """
    if epoch < 0 or n_batches < 1 or not 0 <= batch_idx < n_batches:
        raise ValueError(f"need epoch ≥ 0 and 0 ≤ batch_idx < n_batches; got epoch={epoch}, "
                         f"batch_idx={batch_idx}, n_batches={n_batches}")
    if epochs < 1 or warmup_epochs < 0:
        raise ValueError(f"need epochs ≥ 1 and warmup_epochs ≥ 0; got {epochs} and {warmup_epochs}")
    if epoch > 0 or warmup_epochs == 0:
        return _cosine(epoch, lr, min_lr, epochs)
    step = max(1, n_batches // warmup_epochs)
    # the scheduler is stepped after the optimiser, so batch i runs with the value set after batch i − 1
    position = min(max(batch_idx - 1, 0) // step, warmup_epochs)
    if position == warmup_epochs:
        return _cosine(0, lr, min_lr, epochs)
    return warmup_lr + position * (lr - warmup_lr) / warmup_epochs


def _cosine(position: int, lr: float, min_lr: float, epochs: int) -> float:
    """Cosine decay from ``lr`` (position 0) towards ``min_lr``; ``min_lr`` from position ``epochs`` on."""
    if position >= epochs:
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * position / epochs))


def constant_lr(epoch: int, batch_idx: int, n_batches: int, lr: float = 1e-4, *rest: float) -> float:
    """A constant learning rate ``lr`` at every step (HE2RNA's Adam at 3e-4); the other arguments are those of
    :data:`Schedule`, accepted so that :func:`~gbhet_lib.training.loop.fit` can call it like :func:`albef_lr`."""
    if epoch < 0 or n_batches < 1 or not 0 <= batch_idx < n_batches:
        raise ValueError(f"need epoch ≥ 0 and 0 ≤ batch_idx < n_batches; got epoch={epoch}, "
                         f"batch_idx={batch_idx}, n_batches={n_batches}")
    return lr
