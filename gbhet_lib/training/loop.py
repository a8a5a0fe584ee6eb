"""The one checkpointed training loop (:func:`fit`), what it trains (:class:`Run`) and its optimiser
(:func:`build_optimizer`).

:func:`fit` runs AdamW (no weight decay on biases and 1-D parameters) under a per-step learning-rate schedule
(the authors' ALBEF-style one, :func:`~gbhet_lib.training.schedule.albef_lr`, in every trainer here), seeded
shuffling, and writes an atomic checkpoint (``last.pt``, :mod:`gbhet_lib.training.checkpoint`) after every epoch;
an optional ``stop`` rule (:mod:`gbhet_lib.training.early_stopping`) ends it early, in a way a resume remembers.
Calling it again on the same ``checkpoint_dir`` resumes after the last finished epoch and gives bit-identical
weights to an uninterrupted run (on the CPU; on CUDA as far as its kernels are deterministic). A module may learn
at its own rate: ``Run.lr_scale`` multiplies the scheduled learning rate of its parameters (e.g. the fusion
trainer's learnable temperature). The RNA trainers (:mod:`gbhet_lib.rna.train`), the WSI triplet trainer
(:mod:`gbhet_lib.wsi.train`), the fusion trainer (:mod:`gbhet_lib.fusion.train`) and the expression trainer
(:mod:`gbhet_lib.training.expression`) all use it.

A loss that becomes NaN or infinite stops the training with
:class:`~gbhet_lib.training.finite.NonFiniteLossError`, which names the run's kind, the epoch and the step; the
checkpoint of the last finished epoch stays as it was (the bad epoch is never saved, and :func:`save
<gbhet_lib.training.checkpoint.save>` refuses non-finite weights), so a rerun with a fixed setting starts from it
only if the settings allow a resume (a changed ``lr`` does not: use another ``checkpoint_dir``).

Under ``torchrun`` (an initialised :mod:`torch.distributed` process group) the same loop is data-parallel: every
rank draws the same epoch order, global batch b is split into ``world_size`` near-equal parts and each rank steps on
its own (``batch_size`` is per process, as in the authors' DDP runs), the step function is expected to go through a
``DistributedDataParallel`` wrapper (gradients all-reduced), the logged means are over the whole global batch, and
rank 0 writes the checkpoint, which holds every rank's random-number state so that a resume is exact there too.

Imports only torch, numpy, pandas and tqdm (plus this package's stdlib-only helpers): it runs on the GPU machine.
"""
from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .checkpoint import CHECKPOINT, resume, save
from .config import TrainConfig, require
from .device import resolve_device
from .distributed import distributed
from .finite import LossWatch
from .schedule import Schedule

StepFn = Callable[[Tensor], "dict[str, Tensor] | None"]


@dataclass
class Run:
    """What :func:`fit` trains and checkpoints.

    ``fmt``/``what`` tag the checkpoint (see :func:`~gbhet_lib.training.checkpoint.read_checkpoint`); ``modules``
    are saved by name (``model`` is, by convention, the one a loader rebuilds from ``model_spec``); ``generators``
    are random generators the step function draws from (the loop adds its shuffling one); ``lr_scale`` maps a
    module name to a multiplier (> 0) on the scheduled learning rate of its parameters (default 1: the schedule
    itself), so that module follows the same warm-up and cosine shape at its own scale.
    """

    fmt: str
    what: str
    kind: str
    config: TrainConfig
    model_spec: dict[str, Any]
    modules: dict[str, nn.Module]
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    lr_scale: dict[str, float] = field(default_factory=dict)


def build_optimizer(modules: Mapping[str, nn.Module], config: TrainConfig, device: torch.device,
                    lr_scale: Mapping[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``modules``; biases and 1-D (and 0-D) parameters get no weight decay
    (the authors' rule).

    One parameter group per (learning-rate scale, decay) combination: first the two groups at scale 1 (no decay,
    then decay; always present, as before scales existed), then one group per other scale and decay that has
    parameters. Each group records its ``lr_scale`` (module name → multiplier from ``lr_scale``; default 1), which
    :func:`fit` applies to the scheduled learning rate. On CUDA the fused implementation is used (one kernel for
    all parameters; the same update rule).
    """
    scales = {name: float(s) for name, s in (lr_scale or {}).items()}
    unknown = sorted(set(scales) - set(modules))
    require(not unknown, f"lr_scale names {unknown}, which are not modules of the run ({sorted(modules)})")
    require(all(s > 0 and math.isfinite(s) for s in scales.values()), f"lr_scale={scales} must be positive")
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {(1.0, False): [], (1.0, True): []}
    for module_name, module in modules.items():
        scale = scales.get(module_name, 1.0)
        for name, p in module.named_parameters():
            if p.requires_grad:
                decays = not (p.ndim <= 1 or name.endswith(".bias"))
                groups.setdefault((scale, decays), []).append(p)
    return torch.optim.AdamW([{"params": params, "weight_decay": config.weight_decay if decays else 0.0,
                               "lr": config.warmup_lr * scale, "lr_scale": scale}
                              for (scale, decays), params in groups.items() if params or scale == 1.0],
                             lr=config.warmup_lr, fused=device.type == "cuda")


def fit(run: Run, n_samples: int, step: StepFn, evaluate: Callable[[], dict[str, float]] | None,
        checkpoint_dir: str | Path, progress: bool, schedule: Schedule,
        epoch_order: Callable[[torch.Generator], Tensor] | None = None,
        epoch_end: Callable[[], dict[str, float]] | None = None,
        stop: Callable[[pd.DataFrame], bool] | None = None) -> pd.DataFrame:
    """Train ``run`` for its epochs, resuming from ``checkpoint_dir`` when it holds a checkpoint of this run.

    ``step(rows)`` gets a batch of sample rows (a 1-D int64 CPU tensor) and returns named scalar losses
    (``loss`` is optimised) or None to skip the batch. ``evaluate()`` returns validation metrics after each epoch.
    ``schedule(epoch, batch_idx, n_batches, lr, warmup_lr, min_lr, epochs, warmup_epochs)`` gives the learning
    rate of each step (:func:`~gbhet_lib.training.schedule.albef_lr`); a parameter group uses it times its
    ``lr_scale`` (:attr:`Run.lr_scale`). ``epoch_order(generator)`` gives an epoch's sample order (default: a
    random permutation of the ``n_samples`` rows; e.g. a balanced draw with replacement). ``epoch_end()`` returns
    values read after the epoch's last optimiser step (e.g. a learned temperature), recorded as they are named.

    ``stop(history)`` (early stopping, e.g. :func:`~gbhet_lib.training.early_stopping.patience_stop` or
    :class:`~gbhet_lib.training.early_stopping.KeepBest`) is called after each epoch's checkpoint is saved, and
    once on resume with the history read back; training ends when it returns True. Whenever it is called, the
    modules hold the weights of the history's last epoch (so it may save them, as ``KeepBest`` does). A resumed run
    whose history already satisfies it trains no further epoch. Under ``torchrun`` every rank calls it with the
    same history, so it must depend only on values equal on every rank (losses, ``val_`` metrics, not
    ``train_seconds``).

    Raises:
        NonFiniteLossError: a step's loss is NaN or infinite (see the module docstring); ``last.pt`` is left as the
            last finished epoch wrote it.

    Returns:
        The history, one row per epoch: ``epoch``, ``lr`` (the schedule's, scale 1, of the epoch's last step),
        ``train_<name>`` (means over samples of every value ``step`` returns), ``train_samples`` (rows stepped on,
        all ranks), ``skipped_batches``, ``train_seconds``, the values of ``epoch_end`` and ``val_<name>``.
    """
    cfg, device = run.config, resolve_device(run.config.device)
    rank, world = distributed()
    checkpoint_dir = Path(checkpoint_dir)
    generators = {**run.generators, "shuffle": torch.Generator().manual_seed(cfg.seed)}
    optimizer = build_optimizer(run.modules, cfg, device, run.lr_scale)
    epoch_order = epoch_order or (lambda generator: torch.randperm(n_samples, generator=generator))
    start, history = 0, []
    if (checkpoint_dir / CHECKPOINT).exists():
        start, history = resume(checkpoint_dir / CHECKPOINT, run, optimizer, generators, device)
        if stop is not None and history and stop(pd.DataFrame(history)):
            return pd.DataFrame(history)
    global_batch = cfg.batch_size * world
    n_batches = math.ceil(n_samples / global_batch)
    bar = tqdm(range(start, cfg.epochs), desc=run.kind, disable=not progress or rank > 0, initial=start,
               total=cfg.epochs)
    for epoch in bar:
        for module in run.modules.values():
            module.train()
        began = _time.perf_counter()
        order = epoch_order(generators["shuffle"])  # stays on the CPU: no device sync to read batch rows
        sums: dict[str, Tensor] = {}
        rows = skipped = 0
        watch = LossWatch(run.kind, epoch, device, world, checkpoint_dir / CHECKPOINT)
        for b in range(n_batches):
            lr = schedule(epoch, b, n_batches, cfg.lr, cfg.warmup_lr, cfg.min_lr, cfg.epochs, cfg.warmup_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            batch = order[b * global_batch:(b + 1) * global_batch]
            if world > 1:
                if len(batch) < world:  # some rank would get nothing: every rank skips the same batch
                    skipped += 1
                    continue
                batch = torch.tensor_split(batch, world)[rank]
            losses = step(batch)
            if losses is None:
                skipped += 1
                continue
            watch.observe(losses["loss"], b)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            rows += len(batch)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v.detach() * len(batch)
        watch.check()  # every rank, before the epoch's checkpoint is written
        if world > 1:
            sums, rows = _all_ranks_sums(sums, rows, device)
        means = {f"train_{k}": float(v) / rows for k, v in sums.items()}  # float() waits for the GPU
        row = {"epoch": epoch, "lr": lr, **means, "train_samples": rows, "skipped_batches": skipped,
               "train_seconds": _time.perf_counter() - began}
        if epoch_end is not None:
            row.update(epoch_end())
        if evaluate is not None:
            row.update({f"val_{k}": v for k, v in _on_rank_zero(evaluate, rank, world).items()})
        history.append(row)
        save(checkpoint_dir, run, optimizer, generators, device, epoch, history)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "val_loss")})
        if stop is not None and stop(pd.DataFrame(history)):
            bar.close()
            break
    return pd.DataFrame(history)


def _all_ranks_sums(sums: dict[str, Tensor], rows: int, device: torch.device) -> tuple[dict[str, Tensor], int]:
    """Sum per-rank loss sums and row counts over all ranks (every rank returns the totals)."""
    keys = sorted(sums)
    packed = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=device) for k in keys]
                         + [torch.tensor(float(rows), dtype=torch.float64, device=device)])
    torch.distributed.all_reduce(packed)
    return dict(zip(keys, packed[:-1])), int(packed[-1])


def _on_rank_zero(evaluate: Callable[[], dict[str, float]], rank: int, world: int) -> dict[str, float]:
    """Run ``evaluate`` on rank 0 only (not once per rank, as the authors' code did) and share its result."""
    if world == 1:
        return evaluate()
    result = [evaluate() if rank == 0 else None]
    torch.distributed.broadcast_object_list(result, src=0)
    return result[0]
