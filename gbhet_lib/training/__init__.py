"""The shared training machinery, one job per module:

* :mod:`~gbhet_lib.training.loop`: :func:`fit` (the one checkpointed loop), :class:`Run`, :func:`build_optimizer`;
* :mod:`~gbhet_lib.training.checkpoint`: :func:`read_checkpoint`, :func:`load_weights`, save/resume, RNG state;
* :mod:`~gbhet_lib.training.schedule`: :func:`albef_lr`, the authors' ALBEF-style learning-rate schedule, and
  :func:`constant_lr`;
* :mod:`~gbhet_lib.training.early_stopping`: :func:`patience_stop`, :class:`KeepBest` (``best.pt``),
  :func:`best_epoch` (``fit``'s ``stop`` rules);
* :mod:`~gbhet_lib.training.distributed`: :func:`distributed`, :func:`launched_by_torchrun`,
  :func:`rank_device`, :func:`process_group` (``torchrun`` set-up);
* :mod:`~gbhet_lib.training.device`: :func:`resolve_device`, :func:`device_name`, :func:`use_bf16`,
  :func:`bf16_autocast` (the one place where device and precision are decided);
* :mod:`~gbhet_lib.training.seeds`: :func:`seed_everything`, :func:`derive_seed` (seeds from the study seed);
* :mod:`~gbhet_lib.training.config`: :class:`TrainConfig`, :func:`require`.

Not imported here: :mod:`~gbhet_lib.training.expression` (the expression models' cross-validated trainer) and
:mod:`~gbhet_lib.training.ridge_baseline` (scikit-learn).

Imports only torch, numpy, pandas and tqdm (plus this package's stdlib-only helpers): it runs on the GPU machine.
"""
from __future__ import annotations

from .checkpoint import CHECKPOINT, HISTORY, finished, load_weights, read_checkpoint
from .config import TrainConfig, require
from .device import bf16_autocast, cuda_available, device_name, resolve_device, use_bf16
from .distributed import distributed, launched_by_torchrun, process_group, rank_device, single_process
from .early_stopping import BEST, KeepBest, best_epoch, patience_stop
from .loop import Run, StepFn, build_optimizer, fit
from .schedule import Schedule, albef_lr, constant_lr
from .seeds import derive_seed, seed_everything

__all__ = ["BEST", "CHECKPOINT", "HISTORY", "KeepBest", "Run", "Schedule", "StepFn", "TrainConfig", "albef_lr",
           "best_epoch", "bf16_autocast", "build_optimizer", "constant_lr", "cuda_available", "derive_seed",
           "device_name", "distributed", "finished", "fit", "launched_by_torchrun", "load_weights",
           "patience_stop", "process_group", "rank_device", "read_checkpoint", "require", "resolve_device",
           "seed_everything", "single_process", "use_bf16"]
