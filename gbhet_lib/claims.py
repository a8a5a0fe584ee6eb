"""Claims: what a chapter says about the planted truth, with the value that supports it and whether it holds.

A sentence of the book that states a result is backed by one :class:`Claim` in the chapter's metrics (``"claims"``:
a list of :meth:`Claim.to_dict`). A claim names its measured ``value``, the ``null`` (chance level, or what a
predictor that ignores the signal reaches), the bound it must meet (``at_least`` and/or ``at_most``) and,
when there is one, the interval over the independent units (patients, slides). ``holds`` is computed here from the
value and the bounds, never written by hand; ``make claims`` re-checks every claim of a finished run
(:func:`recheck`) and fails on any that does not hold.

Example::

    check("rna.folded_ari", "Folding to the paper's K = 7 keeps each planted module as its own token",
          value=0.93, at_least=0.8, null=0.0, null_name="random token labels")
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

CLAIMS_KEY = "claims"


@dataclass(frozen=True)
class Claim:
    """One checked statement.

    Attributes:
        id: ``<chapter stage>.<name>`` (e.g. ``wsi.probe_visible.hypoxia``), unique within a run.
        statement: the sentence the book may say when the claim holds.
        value: the measured value (NaN when it could not be measured: the claim then does not hold).
        at_least, at_most: the bound(s) the value must meet (inclusive); at least one is set.
        null: the chance level or the value of a predictor that ignores the signal (None when there is none).
        null_name: what ``null`` is ("chance", "random encoder", "image-blind predictor", ...).
        interval: a (low, high) interval of ``value`` over the independent units, when measured.
        interval_at_least: when set, the interval's low end must also be at least this (e.g. above chance).
        units: what the interval resamples (``patients``, ``slides``), or what ``value`` counts.
        holds: whether the value (and interval) meet the bounds; computed, not given.
    """

    id: str
    statement: str
    value: float
    at_least: float | None = None
    at_most: float | None = None
    null: float | None = None
    null_name: str = ""
    interval: tuple[float, float] | None = None
    interval_at_least: float | None = None
    units: str = ""
    holds: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.at_least is None and self.at_most is None and self.interval_at_least is None:
            raise ValueError(f"claim {self.id!r} needs a bound: at_least, at_most or interval_at_least")
        if "." not in self.id:
            raise ValueError(f"claim id {self.id!r} must be '<stage>.<name>', e.g. 'wsi.probe_visible.hypoxia'")
        object.__setattr__(self, "value", float(self.value))
        if self.interval is not None:
            object.__setattr__(self, "interval", (float(self.interval[0]), float(self.interval[1])))
        object.__setattr__(self, "holds", evaluate(self))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None; the interval a list)."""
        out = asdict(self)
        out["value"] = None if math.isnan(self.value) else self.value
        out["interval"] = list(self.interval) if self.interval is not None else None
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Claim:
        """Rebuild a claim from :meth:`to_dict` output; ``holds`` is recomputed (a stored one is ignored)."""
        known = {k: v for k, v in values.items() if k != "holds"}
        known["value"] = math.nan if known.get("value") is None else known["value"]
        if known.get("interval") is not None:
            known["interval"] = tuple(known["interval"])
        return cls(**known)

    @property
    def bound(self) -> str:
        """The bound in words, e.g. ``≥ 0.5`` or ``0.2 ≤ · ≤ 0.8``."""
        parts = []
        if self.at_least is not None:
            parts.append(f"≥ {self.at_least:g}")
        if self.at_most is not None:
            parts.append(f"≤ {self.at_most:g}")
        if self.interval_at_least is not None:
            parts.append(f"interval low ≥ {self.interval_at_least:g}")
        return ", ".join(parts)


def evaluate(claim: Claim) -> bool:
    """Whether the claim's value and interval meet its bounds (NaN never does)."""
    if math.isnan(claim.value):
        return False
    if claim.at_least is not None and not claim.value >= claim.at_least:
        return False
    if claim.at_most is not None and not claim.value <= claim.at_most:
        return False
    if claim.interval_at_least is not None:
        if claim.interval is None or not claim.interval[0] >= claim.interval_at_least:
            return False
    return True


def check(id: str, statement: str, value: float, *, at_least: float | None = None, at_most: float | None = None,
          null: float | None = None, null_name: str = "", interval: Sequence[float] | None = None,
          interval_at_least: float | None = None, units: str = "") -> Claim:
    """Make a :class:`Claim` (keyword bounds; see its attributes)."""
    return Claim(id=id, statement=statement, value=float(value), at_least=at_least, at_most=at_most,
                 null=None if null is None else float(null), null_name=null_name,
                 interval=None if interval is None else (float(interval[0]), float(interval[1])),
                 interval_at_least=interval_at_least, units=units)


def as_metrics(claims: Iterable[Claim]) -> list[dict[str, Any]]:
    """The claims as the list stored under a chapter's ``metrics["claims"]``; ids must be unique."""
    claims = list(claims)
    ids = [c.id for c in claims]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"claim ids repeated: {repeated}")
    return [c.to_dict() for c in claims]


def claims_table(claims: Iterable[Claim] | Sequence[Mapping[str, Any]]) -> Any:
    """A pandas table of claims for a chapter (one row per claim: statement, value, bound, null, interval, holds)."""
    import pandas as pd

    rows = []
    for c in claims:
        c = c if isinstance(c, Claim) else Claim.from_dict(c)
        rows.append({"claim": c.id, "statement": c.statement, "value": c.value, "bound": c.bound,
                     "null": c.null, "null is": c.null_name,
                     "interval": None if c.interval is None else f"[{c.interval[0]:.3g}, {c.interval[1]:.3g}]"
                     + (f" over {c.units}" if c.units else ""),
                     "holds": c.holds})
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame(
        columns=["statement", "value", "bound", "null", "null is", "interval", "holds"])


def _stored_claims(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Metrics file stem → the claims as stored, for every ``<run_dir>/metrics/*.json`` that holds some."""
    from .io import read_json

    folder = Path(run_dir) / "metrics"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: run the study first (make study RUN_DIR={run_dir})")
    stored = {path.stem: read_json(path) for path in sorted(folder.glob("*.json"))}
    return {stem: metrics[CLAIMS_KEY] for stem, metrics in stored.items()
            if isinstance(metrics, dict) and CLAIMS_KEY in metrics}


def _rebuild(stem: str, stored: Sequence[Mapping[str, Any]]) -> list[Claim]:
    try:
        return [Claim.from_dict(c) for c in stored]
    except (TypeError, ValueError) as error:
        raise ValueError(f"metrics/{stem}.json: a claim under '{CLAIMS_KEY}' is malformed ({error})") from error


def read_run_claims(run_dir: str | Path) -> dict[str, list[Claim]]:
    """Every chapter's claims in ``<run_dir>/metrics/*.json``: metrics file stem → claims (recomputed)."""
    return {stem: _rebuild(stem, stored) for stem, stored in _stored_claims(run_dir).items()}


def recheck(run_dir: str | Path) -> list[tuple[str, Claim, bool]]:
    """(metrics file, claim, stored ``holds`` agrees with the recomputed one) for every claim of a run."""
    rows = []
    for stem, stored in _stored_claims(run_dir).items():
        rows.extend((stem, claim, raw.get("holds") == claim.holds)
                    for raw, claim in zip(stored, _rebuild(stem, stored)))
    return rows
