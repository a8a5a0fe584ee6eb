"""Every claim a chapter wrote into its metrics holds on this run (see :mod:`gbhet_lib.claims`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gbhet_lib.claims import Claim, read_run_claims

from .conftest import CHAPTER_METRICS


def test_the_run_has_claims_from_every_chapter(run_dir: Path) -> None:
    if not (run_dir / "metrics").is_dir():
        pytest.fail(f"{run_dir}/metrics does not exist: run the study first (make study RUN_DIR={run_dir})")
    found = read_run_claims(run_dir)
    missing = [stem for stem in CHAPTER_METRICS if not found.get(stem)]
    assert not missing, f"no claims in {[f'metrics/{m}.json' for m in missing]} of {run_dir}: rerun those chapters"


def test_claim_holds(claim_row: tuple[str, Claim, bool]) -> None:
    stem, claim, stored_agrees = claim_row
    interval = f", interval {claim.interval} over {claim.units}" if claim.interval else ""
    null = f", {claim.null_name} {claim.null:.4g}" if claim.null is not None else ""
    assert stored_agrees, f"metrics/{stem}.json: the stored 'holds' of {claim.id} disagrees with its value and bound"
    assert claim.holds, (f"metrics/{stem}.json: {claim.id} does not hold: {claim.statement!r} needs {claim.bound}; "
                         f"measured {claim.value:.4g}{interval}{null}")
