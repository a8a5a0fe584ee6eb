"""Chapter 8's real-data validation (gbhet_lib.radiogenomics.subtypes): the subtype network's probes recover what
drives the subtypes on planted data, the chance levels, and the two real expression sets from the mirror."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from data_mirror import mirror_root

from gbhet_lib.radiogenomics import stage, subtypes
from gbhet_lib.radiogenomics.subtypes import SUBTYPES, SubtypeData

FAST = subtypes.subtype_settings({"hidden": (32, 16, 8), "epochs": 40, "patience": 10}, n_folds=3, n_boot=200)


def planted(n_per_class: int = 30, markers: int = 12, background: int = 120, seed: int = 0,
            drive: str = "markers") -> SubtypeData:
    """Four subtypes; each subtype raises its own ``markers`` genes (``drive="markers"``) or a block of background
    genes instead (``drive="background"``: the Verhaak genes carry nothing)."""
    rng = np.random.default_rng(seed)
    marker_sets = {s: [f"{s[:2]}{j}" for j in range(markers)] for s in SUBTYPES}
    others = [f"bg{j}" for j in range(background)]
    genes = [g for m in marker_sets.values() for g in m] + others
    y = np.repeat(np.arange(len(SUBTYPES)), n_per_class)
    x = pd.DataFrame(rng.normal(size=(len(y), len(genes))), columns=genes)
    for c, s in enumerate(SUBTYPES):
        block = marker_sets[s] if drive == "markers" else others[c * markers:(c + 1) * markers]
        x.loc[y == c, block] += 2.0
    return SubtypeData("planted", x, pd.Series(np.array(SUBTYPES)[y]), marker_sets,
                       [g for m in marker_sets.values() for g in m], f"planted ({drive})")


def test_probes_recover_the_planted_marker_sets_and_rank_their_genes_first() -> None:
    data = planted()
    probes = subtypes.probe_subtype_network(data, FAST, seed=0)
    assert probes["best_set"] == {s: s for s in SUBTYPES} and probes["masking_recovery"] == 1.0
    share = probes["verhaak_share"]
    assert share["base_rate"] == pytest.approx(48 / 168)
    assert share["top_20"] >= 0.9  # the 48 marker genes outrank the 120 background genes
    assert all(v["top_20"] >= 0.5 and v["base_rate"] == pytest.approx(12 / 168)
               for v in probes["own_marker_share"].values())
    assert set(probes["masking"]["set"]) == set(SUBTYPES) | {"all_verhaak", "random_120"}


def test_when_other_genes_drive_the_subtypes_the_probes_do_not_point_at_the_markers() -> None:
    data = planted(drive="background")
    probes = subtypes.probe_subtype_network(data, FAST, seed=0)
    assert probes["masking_recovery"] <= 0.25  # the random background set wins (or a marker set by chance)
    assert probes["verhaak_share"]["top_20"] <= 0.25  # base rate 0.29
    cv = subtypes.cross_validated_subtypes(data, FAST, seed=0)
    assert cv["accuracy_ci"][0] > cv["majority"] == pytest.approx(0.25) and cv["n_folds"] == 3


def test_cross_validation_is_at_chance_when_the_labels_carry_nothing() -> None:
    data = planted()
    shuffled = pd.Series(np.random.default_rng(1).permutation(data.subtype.to_numpy()))
    cv = subtypes.cross_validated_subtypes(SubtypeData("null", data.x, shuffled, data.marker_sets,
                                                       data.verhaak_genes, "shuffled"), FAST, seed=0)
    assert cv["accuracy_ci"][0] < 0.25 < cv["accuracy_ci"][1] + 0.1 and 0.3 < cv["macro_auc"] < 0.7
    two_jobs = subtypes.cross_validated_subtypes(SubtypeData("null", data.x, shuffled, data.marker_sets,
                                                             data.verhaak_genes, "shuffled"), FAST, seed=0, n_jobs=2)
    assert two_jobs["accuracy"] == cv["accuracy"]  # one torch thread per fold, whatever n_jobs is


def test_leave_one_out_auc_of_a_prevalence_predictor_is_zero_and_enrichment_p_is_hypergeometric() -> None:
    labels = pd.DataFrame({"a": [1, 0, 1, 0, 0, 1, 0], "b": [1] * 7, "c": [0, 1, np.nan, 0, 0, 0, 1]})
    loo = subtypes.loo_prevalence_auc(labels)
    assert loo["a"] == 0.0 and np.isnan(loo["b"]) and loo["c"] == 0.0
    assert subtypes.enrichment_p(0.32, 50, 106 / 1500, 1500) == pytest.approx(hypergeom(1500, 106, 50).sf(15))
    assert subtypes.enrichment_p(0.06, 50, 106 / 1500, 1500) > 0.5  # 3 of 50 is what a blind ranking gives


def test_claims_are_worded_by_what_was_measured() -> None:
    data = planted()
    results = {"planted": {"cv": subtypes.cross_validated_subtypes(data, FAST, seed=0),
                           "probes": subtypes.probe_subtype_network(data, FAST, seed=0)}}
    claims = {c.id: c for c in subtypes.subtype_claims(results, {"planted": data})}
    assert claims["radiogenomics.subtypes.planted.masking_recovers"].holds
    assert claims["radiogenomics.subtypes.planted.cv_above_majority"].holds
    top50 = [i for i in claims if "verhaak_share_top50" in i]
    assert len(top50) == 1 and claims[top50[0]].holds
    share = results["planted"]["probes"]["verhaak_share"]["top_50"]
    assert top50[0].endswith(".at_least_5x") == (share >= 5 * data.base_rate)
    metrics = subtypes.subtype_metrics(results, {"planted": data}, FAST, pd.DataFrame(), pd.Series(dtype=float))
    assert metrics["planted"]["masking_recovery"] == 1.0 and "subtype_masking_recovery" not in metrics


def test_real_data_is_run_when_asked_or_when_a_mirror_or_real_profile_is_there(tmp_path) -> None:
    assert stage.wants_real_data("auto", "demo", None)[0] is False
    assert "real_data=True" in stage.wants_real_data("auto", "demo", None)[1]
    assert stage.wants_real_data("auto", "demo", tmp_path)[0] and stage.wants_real_data("auto", "reference", None)[0]
    assert stage.wants_real_data(True, "demo", None)[0] and not stage.wants_real_data(False, "reference", tmp_path)[0]
    with pytest.raises(ValueError, match="real_data='yes' must be 'auto', True or False"):
        stage.wants_real_data("yes", "demo", None)


def test_the_two_real_expression_sets_from_the_mirror() -> None:
    datasets, drg = subtypes.subtype_datasets(mirror=mirror_root())
    clanc, wide = datasets["clanc840"], datasets["wide"]
    assert clanc.x.shape == (173, 840) and clanc.base_rate == 1.0
    assert clanc.subtype.value_counts().to_dict() == {"Mesenchymal": 56, "Proneural": 53, "Classical": 38,
                                                       "Neural": 26}
    assert {s: len(m) for s, m in clanc.marker_sets.items()} == {"Proneural": 178, "Neural": 129,
                                                                 "Classical": 162, "Mesenchymal": 216}
    assert wide.x.shape == (78, 1500) and len(wide.verhaak_genes) == 106
    assert wide.base_rate == pytest.approx(106 / 1500) and wide.x.notna().all().all()
    assert set(wide.subtype) == set(SUBTYPES) and (wide.labels >= 0).all()
    sets = subtypes.masking_sets(wide, 200)
    assert len(sets["random_200"]) == 200 and not set(sets["random_200"]) & set(wide.verhaak_genes)
    assert "all_verhaak" not in subtypes.masking_sets(clanc, 200)  # every gene: no masking at all
    assert len(subtypes.masking_sets(clanc, 200)["random_155"]) == 155  # the unassigned ClaNC genes
    vasari = subtypes.vasari_illustration(drg)
    assert len(vasari) == 7 and vasari["subtype"].notna().all() and "enhancing" in vasari.columns
