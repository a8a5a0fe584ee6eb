"""The shared training machinery: base optimisation settings, strict weight loading, and one checkpointed loop.

:func:`fit` runs AdamW (no weight decay on biases and 1-D parameters) under a per-step learning-rate schedule
(the authors' ALBEF-style one, :func:`~gbhet_lib.rna.schedule.albef_lr`, in every trainer here), seeded shuffling,
and writes an atomic checkpoint (``last.pt``) after every epoch holding the modules, the optimiser, every
random-number state, the epoch, the history and the config. Calling it again on the same ``checkpoint_dir`` resumes
after the last finished epoch and gives bit-identical weights to an uninterrupted run (on the CPU; on CUDA as far as
its kernels are deterministic). The RNA trainers (:mod:`gbhet_lib.rna.train`), the WSI triplet trainer
(:mod:`gbhet_lib.wsi.train`) and the fusion trainer (:mod:`gbhet_lib.fusion.train`) all use it.

Under ``torchrun`` (an initialised :mod:`torch.distributed` process group) the same loop is data-parallel: every
rank draws the same epoch order, global batch b is split into ``world_size`` near-equal parts and each rank steps on
its own (``batch_size`` is per process, as in the authors' DDP runs), the step function is expected to go through a
``DistributedDataParallel`` wrapper (gradients all-reduced), the logged means are over the whole global batch, and
rank 0 writes the checkpoint, which holds every rank's random-number state so that a resume is exact there too.

Imports only torch, numpy, pandas and tqdm (plus this package's stdlib-only helpers): it runs on the GPU machine.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .config import ConfigError
from .io import atomic_path, write_table_atomic

CHECKPOINT = "last.pt"
HISTORY = "history.tsv"

StepFn = Callable[[Tensor], "dict[str, Tensor] | None"]
Schedule = Callable[..., float]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the trainers; defaults are the authors' RNA ones (``scripts/pretrain_rna.py``).

    Attributes:
        epochs, batch_size: 20 and 32.
        lr, warmup_lr, min_lr, warmup_epochs: the schedule of :func:`~gbhet_lib.rna.schedule.albef_lr`.
        weight_decay: AdamW decay, not applied to biases and 1-D parameters.
        seed: seeds model initialisation, shuffling, masking, dropout (torch, numpy and ``random`` too).
        device: ``cpu``, ``cuda`` or ``cuda:<n>``.
        amp_bf16: bf16 autocast for the forward pass (CUDA only); losses are computed in float32.
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.02
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5
    warmup_epochs: int = 6
    seed: int = 42
    device: str = "cpu"
    amp_bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            require(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be at least 1")
        require(self.warmup_epochs >= 0 and self.seed >= 0, "warmup_epochs and seed must be non-negative")
        require(self.lr > 0 and self.warmup_lr > 0 and self.min_lr >= 0 and self.weight_decay >= 0,
                "lr and warmup_lr must be positive, min_lr and weight_decay non-negative")
        require(self.device == "cpu" or self.device.split(":")[0] == "cuda",
                f"device={self.device!r} must be 'cpu', 'cuda' or 'cuda:<n>'")
        require(not self.amp_bf16 or self.device != "cpu", "amp_bf16=True needs a CUDA device; set amp_bf16=False")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible values."""
        return dataclasses.asdict(self)


def require(condition: bool, message: str) -> None:
    """Raise :class:`~gbhet_lib.config.ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a device; a clear error when it is CUDA and torch sees no GPU."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={str(name)!r} but torch sees no CUDA GPU; use device='cpu'")
    return device


def bf16_autocast(enabled: bool, device: torch.device) -> torch.autocast:
    """bf16 autocast on ``device`` when ``enabled``."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch (every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------- checkpoints
def load_weights(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load ``state`` into ``module`` strictly; on any mismatch raise a ValueError naming the keys and ``source``."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} in {source} vs {tuple(own[k].shape)} in the model"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{label}: {items[:8]}{' …' if len(items) > 8 else ''}" for label, items in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if items]
        raise ValueError(f"weights from {source} do not fit {type(module).__name__} ({'; '.join(parts)}). Was "
                         "the checkpoint made for other inputs (gene tokens, image size) or another architecture?")
    module.load_state_dict(state, strict=True)


def read_checkpoint(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    """Read a checkpoint of format ``fmt`` (tensors on the CPU); ``what`` names the kind in the error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(f"{path} is not a gbhet {what} checkpoint (format {fmt})")
    return state


@dataclass
class Run:
    """What :func:`fit` trains and checkpoints.

    ``fmt``/``what`` tag the checkpoint (see :func:`read_checkpoint`); ``modules`` are saved by name (``model``
    is, by convention, the one a loader rebuilds from ``model_spec``); ``generators`` are random generators the
    step function draws from (the loop adds its shuffling one).
    """

    fmt: str
    what: str
    kind: str
    config: TrainConfig
    model_spec: dict[str, Any]
    modules: dict[str, nn.Module]
    generators: dict[str, torch.Generator] = field(default_factory=dict)


def _rng_state(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
            "generators": {k: g.get_state() for k, g in generators.items()}}


def _set_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator],
                   device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    for k, g in generators.items():
        g.set_state(state["generators"][k])


def distributed() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1) in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _optimizer(modules: Mapping[str, nn.Module], config: TrainConfig,
               device: torch.device) -> torch.optim.AdamW:
    """AdamW; biases and 1-D (and 0-D) parameters get no weight decay (the authors' rule).

    On CUDA the fused implementation is used (one kernel for all parameters; the same update rule)."""
    decay, no_decay = [], []
    for module in modules.values():
        for name, p in module.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                              {"params": decay, "weight_decay": config.weight_decay}], lr=config.warmup_lr,
                             fused=device.type == "cuda")


def _resume(path: Path, run: Run, optimizer: torch.optim.Optimizer, generators: dict[str, torch.Generator],
            device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """Restore a run from its checkpoint; the first epoch still to do and the history so far."""
    state = read_checkpoint(path, run.fmt, run.what)
    rank, world = distributed()
    expected = {"kind": run.kind, "config": run.config.to_dict(), "model_spec": run.model_spec,
                "world_size": world}
    state.setdefault("world_size", 1)
    differences = [f"{k}: {state.get(k)} in the checkpoint, {v} now" for k, v in expected.items() if state.get(k) != v]
    if differences:
        raise ValueError(f"{path} belongs to another run ({'; '.join(differences)}). Resuming needs the same "
                         "settings and inputs; use another checkpoint_dir to start afresh.")
    for name, module in run.modules.items():
        load_weights(module, state["modules"][name], str(path))
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng_ranks"][rank] if "rng_ranks" in state else state["rng"], generators, device)
    return state["epoch"] + 1, list(state["history"])


def _save(checkpoint_dir: Path, run: Run, optimizer: torch.optim.Optimizer,
          generators: dict[str, torch.Generator], device: torch.device, epoch: int,
          history: list[dict[str, Any]]) -> None:
    rank, world = distributed()
    rng = _rng_state(generators, device)
    rng_ranks = [rng]
    if world > 1:
        rng_ranks = [None] * world
        torch.distributed.all_gather_object(rng_ranks, rng)
    if rank == 0:
        state = {"format": run.fmt, "kind": run.kind, "config": run.config.to_dict(),
                 "model_spec": run.model_spec, "world_size": world, "epoch": epoch, "history": history,
                 "modules": {name: m.state_dict() for name, m in run.modules.items()},
                 "optimizer": optimizer.state_dict(), "rng": rng, "rng_ranks": rng_ranks}
        with atomic_path(checkpoint_dir / CHECKPOINT) as tmp:
            torch.save(state, tmp)
        write_table_atomic(checkpoint_dir / HISTORY, pd.DataFrame(history), index=False)
    if world > 1:
        torch.distributed.barrier()


# ------------------------------------------------------------------------------------------------------ loop
def fit(run: Run, n_samples: int, step: StepFn, evaluate: Callable[[], dict[str, float]] | None,
        checkpoint_dir: str | Path, progress: bool, schedule: Schedule,
        epoch_order: Callable[[torch.Generator], Tensor] | None = None) -> pd.DataFrame:
    """Train ``run`` for its epochs, resuming from ``checkpoint_dir`` when it holds a checkpoint of this run.

    ``step(rows)`` gets a batch of sample rows (a 1-D int64 CPU tensor) and returns named scalar losses
    (``loss`` is optimised) or None to skip the batch. ``evaluate()`` returns validation metrics after each epoch.
    ``schedule(epoch, batch_idx, n_batches, lr, warmup_lr, min_lr, epochs, warmup_epochs)`` gives the learning
    rate of each step (:func:`~gbhet_lib.rna.schedule.albef_lr`). ``epoch_order(generator)`` gives an epoch's
    sample order (default: a random permutation of the ``n_samples`` rows; e.g. a balanced draw with replacement).

    Returns:
        The history, one row per epoch: ``epoch``, ``lr`` (of the epoch's last step), ``train_<name>`` (means over
        samples of every value ``step`` returns), ``train_samples`` (rows stepped on, all ranks),
        ``skipped_batches``, ``train_seconds``, and ``val_<name>``.
    """
    cfg, device = run.config, resolve_device(run.config.device)
    rank, world = distributed()
    checkpoint_dir = Path(checkpoint_dir)
    generators = {**run.generators, "shuffle": torch.Generator().manual_seed(cfg.seed)}
    optimizer = _optimizer(run.modules, cfg, device)
    epoch_order = epoch_order or (lambda generator: torch.randperm(n_samples, generator=generator))
    start, history = 0, []
    if (checkpoint_dir / CHECKPOINT).exists():
        start, history = _resume(checkpoint_dir / CHECKPOINT, run, optimizer, generators, device)
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
        for b in range(n_batches):
            lr = schedule(epoch, b, n_batches, cfg.lr, cfg.warmup_lr, cfg.min_lr, cfg.epochs, cfg.warmup_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
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
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            rows += len(batch)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0) + v.detach() * len(batch)
        if world > 1:
            sums, rows = _all_ranks_sums(sums, rows, device)
        means = {f"train_{k}": float(v) / rows for k, v in sums.items()}  # float() waits for the GPU
        row = {"epoch": epoch, "lr": lr, **means, "train_samples": rows, "skipped_batches": skipped,
               "train_seconds": _time.perf_counter() - began}
        if evaluate is not None:
            row.update({f"val_{k}": v for k, v in _on_rank_zero(evaluate, rank, world).items()})
        history.append(row)
        _save(checkpoint_dir, run, optimizer, generators, device, epoch, history)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "val_loss")})
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
