"""Checkpoints: strict weight loading, reading a tagged checkpoint, saving a run after an epoch and resuming it
exactly (modules, optimiser, every random-number state of every rank, epoch, history).

A checkpoint (``last.pt``, written atomically) is a dict: ``format``, ``kind``, ``config``, ``model_spec``,
``world_size``, ``epoch`` (the last finished one), ``history`` (one dict per epoch), ``modules`` (state dicts by
name), ``optimizer``, ``rng`` (rank 0's states) and ``rng_ranks`` (every rank's). ``history.tsv`` beside it holds
the history as a table. :func:`save` never replaces a checkpoint with non-finite weights (it raises
:class:`~gbhet_lib.training.finite.NonFiniteLossError` instead). Imports torch, numpy and pandas.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..io import atomic_path, write_table_atomic
from .distributed import distributed
from .finite import check_finite_weights

if TYPE_CHECKING:
    from .loop import Run

CHECKPOINT = "last.pt"
HISTORY = "history.tsv"


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


# --------------------------------------------------------------------------------------- random-number state
def rng_state(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    """Every random-number state of this process: torch (CPU, and ``device`` when CUDA), numpy, ``random`` and
    the named ``generators``; tensors and plain values only (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
            "generators": {k: g.get_state() for k, g in generators.items()}}


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator],
                  device: torch.device) -> None:
    """Restore what :func:`rng_state` recorded (the named ``generators`` in place)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    for k, g in generators.items():
        g.set_state(state["generators"][k])


# ------------------------------------------------------------------------------------------ save and resume
def resume(path: Path, run: Run, optimizer: torch.optim.Optimizer, generators: dict[str, torch.Generator],
           device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """Restore a run from its checkpoint; the first epoch still to do and the history so far.

    Refuses (ValueError naming the differences) a checkpoint of another kind, config, model spec or world size."""
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
    set_rng_state(state["rng_ranks"][rank] if "rng_ranks" in state else state["rng"], generators, device)
    return state["epoch"] + 1, list(state["history"])


def save(checkpoint_dir: Path, run: Run, optimizer: torch.optim.Optimizer,
         generators: dict[str, torch.Generator], device: torch.device, epoch: int,
         history: list[dict[str, Any]]) -> None:
    """Write ``last.pt`` and ``history.tsv`` after ``epoch`` (rank 0 writes; every rank's random state is in it).

    Raises:
        NonFiniteLossError: a weight of ``run.modules`` is NaN or infinite (checked on every rank: they are equal
            under DDP); the checkpoint on disk, the last good one, is left as it is.
    """
    check_finite_weights(run.modules, run.kind, epoch, checkpoint_dir / CHECKPOINT)
    rank, world = distributed()
    rng = rng_state(generators, device)
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


def finished(folder: str | Path, epochs: int) -> bool:
    """Whether ``folder`` holds a checkpoint of all ``epochs`` (``last.pt``, and a history with a row per epoch):
    a training to reuse as it is, without resuming (and so without this process's rank layout)."""
    folder = Path(folder)
    history = folder / HISTORY
    return (folder / CHECKPOINT).exists() and history.exists() and \
        len(history.read_text().strip().splitlines()) - 1 >= epochs
