"""Seeding: every random source at once (:func:`seed_everything`), and per-purpose seeds derived from the study
seed (:func:`derive_seed`), so that ``gbhet run --seed 1`` changes every model's start and two purposes never
share a stream by accident. Imports torch and numpy.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

#: derived seeds are below 2**31: valid for torch, numpy (< 2**32 even after the trainers' small offsets) and random
SEED_BITS = 31


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch (every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derive_seed(study_seed: int, *names: str) -> int:
    """A stable seed in [0, 2**31) for one purpose of a study, e.g. ``derive_seed(0, "fusion", "best", "patch")``.

    The first 8 bytes of the SHA-256 of the study seed and the names (joined by a separator no name may contain),
    taken modulo 2**31: the same on every machine, Python version and process (unlike ``hash``), different for
    different study seeds or names. The trainers add small offsets (+ rank, + 1, + 2) to the seed they get, so
    derived seeds leave room below numpy's 2**32 limit.
    """
    if isinstance(study_seed, bool) or not isinstance(study_seed, int) or study_seed < 0:
        raise ValueError(f"study_seed={study_seed!r} must be a non-negative integer")
    if not names or not all(isinstance(n, str) and n and "\x1f" not in n for n in names):
        raise ValueError(f"names={names!r} must be one or more non-empty strings (without the \\x1f separator)")
    digest = hashlib.sha256("\x1f".join([str(study_seed), *names]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (1 << SEED_BITS)
