"""Claims: computed `holds`, bounds, intervals, the run re-check that `make claims` runs."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from gbhet_lib.claims import Claim, as_metrics, check, claims_table, read_run_claims, recheck


def test_holds_is_computed_from_the_value_and_bounds() -> None:
    assert check("x.at_least", "s", 0.6, at_least=0.5).holds
    assert not check("x.at_least", "s", 0.4, at_least=0.5).holds
    assert check("x.at_most", "s", 0.05, at_most=0.1).holds
    assert not check("x.at_most", "s", 0.2, at_most=0.1).holds
    assert not check("x.both", "s", 0.9, at_least=0.2, at_most=0.8).holds
    assert not check("x.nan", "s", math.nan, at_least=0.0).holds


def test_interval_bound_needs_an_interval_whose_low_end_clears_it() -> None:
    assert check("x.ci", "s", 0.7, at_least=0.6, interval=(0.55, 0.8), interval_at_least=0.5).holds
    assert not check("x.ci", "s", 0.7, at_least=0.6, interval=(0.45, 0.8), interval_at_least=0.5).holds
    assert not check("x.ci", "s", 0.7, at_least=0.6, interval_at_least=0.5).holds


def test_a_claim_without_a_bound_or_with_a_bad_id_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a bound"):
        check("x.none", "s", 1.0)
    with pytest.raises(ValueError, match="'<stage>.<name>'"):
        check("nodot", "s", 1.0, at_least=0)


def test_round_trip_recomputes_holds_and_repeated_ids_are_refused() -> None:
    claim = check("x.y", "s", 0.3, at_least=0.5, null=0.1, null_name="chance", interval=(0.2, 0.4), units="patients")
    stored = claim.to_dict() | {"holds": True}  # a hand-edited 'holds' is ignored on reading
    assert Claim.from_dict(stored).holds is False
    assert json.loads(json.dumps(as_metrics([claim])))[0]["interval"] == [0.2, 0.4]
    with pytest.raises(ValueError, match="repeated"):
        as_metrics([claim, claim])
    table = claims_table([claim])
    assert table.loc["x.y", "holds"] == False and "over patients" in table.loc["x.y", "interval"]  # noqa: E712


def _run_with(tmp_path: Path, claims: list[Claim], tamper: bool = False) -> Path:
    (tmp_path / "metrics").mkdir(parents=True)
    stored = as_metrics(claims)
    if tamper:
        stored[0]["holds"] = not stored[0]["holds"]
    for stem in ("01_data", "rna", "wsi", "fusion", "retrieval", "interpret", "expression", "radiogenomics"):
        (tmp_path / "metrics" / f"{stem}.json").write_text(json.dumps({"claims": stored if stem == "wsi" else
                                                                      as_metrics([check(f"{stem}.ok", "s", 1, at_least=0)])}))
    return tmp_path


def test_recheck_flags_a_stored_holds_that_disagrees(tmp_path: Path) -> None:
    run = _run_with(tmp_path, [check("wsi.a", "s", 0.2, at_least=0.5)], tamper=True)
    rows = {claim.id: agrees for _, claim, agrees in recheck(run)}
    assert rows["wsi.a"] is False and rows["rna.ok"] is True
    assert set(read_run_claims(run)) == {"01_data", "rna", "wsi", "fusion", "retrieval", "interpret", "expression",
                                         "radiogenomics"}


@pytest.mark.parametrize("value, passes", [(0.7, True), (0.3, False)])
def test_make_claims_runner_fails_on_a_claim_that_does_not_hold(tmp_path: Path, value: float, passes: bool) -> None:
    run = _run_with(tmp_path, [check("wsi.probe", "the probe works", value, at_least=0.5)])
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "pytest", "claims", "--run-dir", str(run), "-q", "-p",
                             "no:cacheprovider"], cwd=root, capture_output=True, text=True, timeout=120)
    assert (result.returncode == 0) is passes, result.stdout[-2000:]
    if not passes:
        assert "wsi.probe does not hold" in result.stdout and "needs ≥ 0.5; measured 0.3" in result.stdout
