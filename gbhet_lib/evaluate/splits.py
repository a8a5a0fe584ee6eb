"""Held-out splits: drawn one way for every chapter, written once, read back with a digest check.

A split divides N items (patches, pairs) into training and held-out rows. The ids that define the independent
units are passed by name in ``units`` (``"slide"``, ``"lineage"``, ``"patient"`` → one id per item):

- ``patch``: a random ``held_out_fraction`` of the items; the same slides, lineages and patients are on both sides
  (the paper's validation; it measures memorisation of seen tissue, not generalisation);
- ``slide`` / ``lineage`` / ``patient``: a random ``held_out_fraction`` of the slides, lineages or patients (at
  least one, never all) held out whole;
- ``patient_cv``: patient-level K-fold cross-validation (:func:`patient_folds`), every patient held out once.

A split record (:func:`make_split`, format :data:`SPLIT_FORMAT`) is a plain JSON dict holding the item keys of both
sides and a digest of them. It is written once per run (:func:`write_split`, under :func:`run_split_path`), every
later step reads it (:func:`read_split`), and each trained model records its digest, so an evaluation can check it
scores a model on the split it was trained for (:func:`gbhet_lib.evaluate.models.load_trained`).

Imports only numpy and the standard library (and :mod:`gbhet_lib.io`): it runs on the GPU machine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from ..errors import GbhetError
from ..io import read_json, write_json_atomic

SplitPolicy = Literal["patch", "slide", "lineage", "patient"]
SPLIT_POLICIES: tuple[str, ...] = ("patch", "slide", "lineage", "patient")
CV_POLICY = "patient_cv"
SPLIT_FORMAT = "gbhet.split/1"


class SplitMismatch(GbhetError, ValueError):
    """A split file or a trained model does not match the split it claims (edited file, redrawn split)."""


# ---------------------------------------------------------------------------------------------------- drawing
def _columns(units: Mapping[str, Sequence[Any] | np.ndarray | None]) -> tuple[dict[str, np.ndarray], int]:
    """The given id columns as 1-D arrays, and their common length N (≥ 2)."""
    columns = {name: np.asarray(ids).reshape(-1) for name, ids in units.items() if ids is not None}
    if not columns:
        raise ValueError("units is empty: pass one id per item under 'slide', 'lineage' or 'patient'")
    lengths = {name: len(ids) for name, ids in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"units must hold one id per item, got lengths {lengths}")
    n = next(iter(lengths.values()))
    if n < 2:
        raise ValueError(f"a split needs at least 2 items, got {n}")
    return columns, n


def _held_count(fraction: float, n: int) -> int:
    """How many of n units to hold out: round(fraction · n), at least one, never all (Python's rounding)."""
    return min(n - 1, max(1, round(fraction * n)))


def _complement(n: int, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 (train, held-out) rows of N items given the held-out rows."""
    is_held = np.zeros(n, dtype=bool)
    is_held[held] = True
    return np.flatnonzero(~is_held).astype(np.int64), np.flatnonzero(is_held).astype(np.int64)


def draw_split(units: Mapping[str, Sequence[Any] | np.ndarray | None], policy: str, held_out_fraction: float,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the ``policy`` split of N items: sorted int64 (train_rows, held_out_rows).

    Args:
        units: ``"slide"``, ``"lineage"``, ``"patient"`` → (N,) ids, one per item. Only the policy's own column is
            required (any one column gives N for ``patch``); all given columns must have length N.
        policy: one of :data:`SPLIT_POLICIES`.
        held_out_fraction: in (0, 1): of the items (``patch``) or of the unique slides / lineages / patients.
        seed: the ``numpy.random.default_rng`` seed; the same inputs and seed always draw the same split (the
            draw is that of ``gbhet_lib.wsi.train.split_patches`` before this module existed).
    """
    if policy not in SPLIT_POLICIES:
        raise ValueError(f"policy={policy!r} must be one of {SPLIT_POLICIES} (for K-fold cross-validation over "
                         "patients use patient_folds)")
    columns, n = _columns(units)
    if policy != "patch" and policy not in columns:
        raise ValueError(f"policy={policy!r} needs one {policy} id per item: pass units[{policy!r}] "
                         f"(given: {sorted(columns)})")
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction={held_out_fraction} must be in (0, 1), e.g. 0.25")
    rng = np.random.default_rng(seed)
    if policy == "patch":
        return _complement(n, rng.choice(n, size=_held_count(held_out_fraction, n), replace=False))
    groups = columns[policy]
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError(f"policy={policy!r} needs at least two {policy}s, got {len(unique)}: hold out by a finer "
                         "unit (e.g. policy='patch') or add data")
    held = rng.choice(unique, size=_held_count(held_out_fraction, len(unique)), replace=False)
    return _complement(n, np.flatnonzero(np.isin(groups, held)))


def patient_folds(patient_ids: Sequence[Any] | np.ndarray, n_folds: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-level K-fold cross-validation of N items: K sorted int64 (train_rows, held_out_rows).

    The unique patients are shuffled (``default_rng(seed).permutation``) and dealt into ``n_folds`` folds of
    near-equal size (``np.array_split``); fold k holds out every item of its patients. Every patient is held out
    exactly once and is never on both sides of a fold.
    """
    patients = np.asarray(patient_ids).reshape(-1)
    unique = np.unique(patients)
    if not 2 <= n_folds <= len(unique):
        raise ValueError(f"n_folds={n_folds} must be between 2 and the number of patients ({len(unique)}): each "
                         "fold holds out at least one patient")
    order = np.random.default_rng(seed).permutation(unique)
    return [_complement(len(patients), np.flatnonzero(np.isin(patients, fold)))
            for fold in np.array_split(order, n_folds)]


def cv_split_name(fold: int, n_folds: int) -> str:
    """The name of fold ``fold`` (0-based) of a patient-level K-fold, e.g. ``patient_cv-0of5``."""
    return f"{CV_POLICY}-{fold}of{n_folds}"


# ---------------------------------------------------------------------------------------------------- records
def split_digest(split: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``[policy, fold, train_keys, held_out_keys]`` (JSON)."""
    text = json.dumps([split["policy"], split.get("fold"), list(split["train_keys"]), list(split["held_out_keys"])])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _held_ids(units: Mapping[str, Any], name: str, rows: np.ndarray) -> list[str]:
    ids = units.get(name)
    return [] if ids is None else sorted({str(v) for v in np.asarray(ids).reshape(-1)[rows]})


def make_split(name: str, keys: Sequence[Any], units: Mapping[str, Sequence[Any] | np.ndarray | None],
               policy: str, held_out_fraction: float | None, seed: int, fold: int | None = None,
               n_folds: int | None = None,
               rows: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """The split record (:data:`SPLIT_FORMAT`, a JSON-compatible dict) of N items.

    Args:
        name: the split's name (its file name under :func:`run_split_path`), e.g. ``patient`` or ``patient_cv-0of5``.
        keys: (N,) unique item keys (turned into strings), e.g. ``"<slide>:<row in its patch store>"``.
        units: as :func:`draw_split`; the held-out slides, lineages and patients are listed from it.
        policy: one of :data:`SPLIT_POLICIES` or ``patient_cv`` (then ``fold`` and ``n_folds`` are required).
        held_out_fraction, seed: the draw's settings (``held_out_fraction`` is None for ``patient_cv``).
        rows: (train_rows, held_out_rows) already drawn; default: :func:`draw_split`, or fold ``fold`` of
            :func:`patient_folds` for ``patient_cv``.

    Returns:
        ``format``, ``name``, ``policy``, ``fold``, ``n_folds``, ``held_out_fraction``, ``seed``, ``train_keys``,
        ``held_out_keys`` (in row order), ``held_out_slides``, ``held_out_lineages``, ``held_out_patients``
        (sorted; empty when ``units`` lacks them), ``counts`` (``train``, ``held_out``), ``digest``
        (:func:`split_digest`).
    """
    keys = [str(k) for k in keys]
    if len(set(keys)) != len(keys):
        raise ValueError(f"split {name!r}: the item keys must be unique ({len(keys) - len(set(keys))} duplicates)")
    if policy == CV_POLICY:
        if fold is None or n_folds is None or not 0 <= fold < n_folds:
            raise ValueError(f"split {name!r}: policy='patient_cv' needs fold in [0, n_folds), got fold={fold}, "
                             f"n_folds={n_folds}")
        if rows is None:
            rows = patient_folds(units["patient"], n_folds, seed)[fold]
    elif policy not in SPLIT_POLICIES:
        raise ValueError(f"policy={policy!r} must be one of {SPLIT_POLICIES + (CV_POLICY,)}")
    elif rows is None:
        rows = draw_split(units, policy, held_out_fraction, seed)  # type: ignore[arg-type]
    train, held = (np.sort(np.asarray(r, dtype=np.int64)) for r in rows)
    if not np.array_equal(np.sort(np.concatenate([train, held])), np.arange(len(keys))):
        raise ValueError(f"split {name!r}: the rows must divide the {len(keys)} items into two disjoint sides")
    split = {"format": SPLIT_FORMAT, "name": name, "policy": policy, "fold": fold, "n_folds": n_folds,
             "held_out_fraction": held_out_fraction, "seed": seed,
             "train_keys": [keys[i] for i in train], "held_out_keys": [keys[i] for i in held],
             "held_out_slides": _held_ids(units, "slide", held), "held_out_lineages": _held_ids(units, "lineage", held),
             "held_out_patients": _held_ids(units, "patient", held),
             "counts": {"train": int(len(train)), "held_out": int(len(held))}}
    split["digest"] = split_digest(split)
    return split


def run_split_path(run_dir: str | Path, name: str) -> Path:
    """``<run_dir>/models/splits/<name>.json``: the one folder of every chapter's splits."""
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ValueError(f"split name {name!r} must be a plain file-name part (no spaces or slashes)")
    from ..rundir import RunDir

    return RunDir.of(run_dir).split_path(name)


def write_split(path: str | Path, split: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``split`` to ``path`` atomically, once: an existing file with the same digest is kept and returned;
    one with another digest is an error (a split is never silently redrawn under trained models)."""
    path = Path(path)
    if split.get("digest") != split_digest(split):
        raise SplitMismatch(f"split {split.get('name')!r}: its digest {split.get('digest')} does not match its keys "
                            f"({split_digest(split)}); build it with make_split")
    if path.exists():
        existing = read_split(path)
        if existing["digest"] != split["digest"]:
            raise ValueError(f"{path} holds another split (digest {existing['digest']}, this one {split['digest']}): "
                             "delete it to redraw, and retrain every model that used it")
        return existing
    write_json_atomic(path, dict(split))
    return dict(split)


def read_split(path: str | Path) -> dict[str, Any]:
    """The split record written at ``path`` by :func:`write_split`; its format and digest are checked."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no split file {path}: gbhet_lib.evaluate.splits.write_split writes it (the fusion "
                                "chapter draws its splits with gbhet_lib.fusion.stage.write_split / write_cv_splits)")
    split = read_json(path)
    if split.get("format") != SPLIT_FORMAT:
        raise SplitMismatch(f"{path} is not a {SPLIT_FORMAT} split file (format {split.get('format')!r}): delete it "
                            "to redraw, and retrain every model that used it")
    if split.get("digest") != split_digest(split):
        raise SplitMismatch(f"{path} was edited after it was written: its digest {split.get('digest')} no longer "
                            f"matches its keys ({split_digest(split)}); delete it to redraw, and retrain every model "
                            "that used it")
    return split


def split_rows(keys: Sequence[Any], split: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 (train_rows, held_out_rows) of the items ``keys`` in ``split``; an error naming the split when
    the keys are not exactly the split's."""
    row = {str(k): i for i, k in enumerate(keys)}
    wanted = list(split["train_keys"]) + list(split["held_out_keys"])
    missing = [k for k in wanted if k not in row]
    extra = sorted(set(row) - set(wanted))
    if missing or extra or len(row) != len(keys):
        raise ValueError(f"split {split.get('name', split['policy'])!r} (digest {split.get('digest')}) does not "
                         f"cover these items: {len(missing)} of its keys are missing (e.g. {missing[:3]}), "
                         f"{len(extra)} items are not in it (e.g. {extra[:3]}), {len(keys) - len(row)} duplicate "
                         "keys: the items changed since it was drawn; redraw it and retrain")
    return (np.array(sorted(row[k] for k in split["train_keys"]), dtype=np.int64),
            np.array(sorted(row[k] for k in split["held_out_keys"]), dtype=np.int64))


def identical_splits(splits: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each split name → the first name (in ``splits``' order) whose split has the same training and held-out keys
    (itself when none before it does): policies that draw the same split are trained once and reported as such."""
    first: dict[tuple[frozenset[str], frozenset[str]], str] = {}
    out = {}
    for name, split in splits.items():
        sides = (frozenset(split["train_keys"]), frozenset(split["held_out_keys"]))
        out[name] = first.setdefault(sides, name)
    return out
