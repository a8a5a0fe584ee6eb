"""Held-out splits (gbhet_lib.evaluate.splits), the fusion stage's split files, and split-checked model loading."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gbhet_lib.evaluate.splits import SPLIT_FORMAT, SPLIT_POLICIES, SplitMismatch, draw_split, identical_splits, \
    make_split, patient_folds, read_split, run_split_path, split_rows, write_split


def _cohort(n_patients: int = 8, lineages_per_patient: int = 2, slides_per_lineage: int = 2,
            patches_per_slide: int = 5) -> dict[str, np.ndarray]:
    """Nested ids: patients ⊃ lineages ⊃ slides ⊃ patches (one id per patch)."""
    patient, lineage, slide = [], [], []
    for p in range(n_patients):
        for l in range(lineages_per_patient):
            for s in range(slides_per_lineage):
                patient += [f"P{p}"] * patches_per_slide
                lineage += [f"P{p}-L{l}"] * patches_per_slide
                slide += [f"P{p}-L{l}-S{s}"] * patches_per_slide
    return {"slide": np.array(slide), "lineage": np.array(lineage), "patient": np.array(patient)}


def _keys(units: dict[str, np.ndarray]) -> list[str]:
    return [f"{s}:{i}" for i, s in enumerate(units["slide"])]


# what each policy keeps on one side: the policy's unit and every unit nested in it
NESTED = {"slide": ("slide",), "lineage": ("lineage", "slide"), "patient": ("patient", "lineage", "slide")}


# ------------------------------------------------------------------------------------------------------ drawing
@pytest.mark.parametrize("policy", ["slide", "lineage", "patient"])
def test_group_policies_hold_their_units_out_whole_at_the_fraction(policy: str) -> None:
    units = _cohort()
    n_groups = len(set(units[policy]))
    for fraction in (0.1, 0.25, 0.5):
        train, held = draw_split(units, policy, fraction, seed=3)
        assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(len(units["slide"])))
        assert train.dtype == held.dtype == np.int64 and np.all(np.diff(train) > 0) and np.all(np.diff(held) > 0)
        for level in NESTED[policy]:
            assert not set(units[level][train]) & set(units[level][held]), (policy, level)
        assert len(set(units[policy][held])) == min(n_groups - 1, max(1, round(fraction * n_groups)))


def test_patch_policy_holds_out_the_fraction_of_patches_and_shares_slides() -> None:
    units = _cohort()
    n = len(units["slide"])
    train, held = draw_split(units, "patch", 0.25, seed=0)
    assert len(held) == round(0.25 * n) and len(train) == n - len(held)
    assert set(units["slide"][train]) & set(units["slide"][held])  # the paper's: same slides on both sides
    assert len(draw_split({"slide": units["slide"]}, "patch", 0.25, 0)[1]) == len(held)  # one column is enough


@pytest.mark.parametrize("policy", SPLIT_POLICIES)
def test_same_seed_same_split_another_seed_another(policy: str) -> None:
    units = _cohort()
    first = draw_split(units, policy, 0.25, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, draw_split(units, policy, 0.25, seed=5)))
    others = [draw_split(units, policy, 0.25, seed=s)[1] for s in range(6, 10)]
    assert any(not np.array_equal(first[1], other) for other in others)


def _old_split_patches(slides, lineages, policy, val_fraction, seed, patients=None):
    """The draw of gbhet_lib.wsi.train.split_patches before gbhet_lib.evaluate existed (verbatim logic)."""
    slides, lineages = np.asarray(slides).reshape(-1), np.asarray(lineages).reshape(-1)
    n = len(slides)
    rng = np.random.default_rng(seed)
    if policy == "patch":
        val = rng.choice(n, size=min(n - 1, max(1, round(val_fraction * n))), replace=False)
    else:
        groups = slides if policy == "slide" else lineages if policy == "lineage" else np.asarray(patients)
        unique = np.unique(groups)
        held = rng.choice(unique, size=min(len(unique) - 1, max(1, round(val_fraction * len(unique)))),
                          replace=False)
        val = np.flatnonzero(np.isin(groups, held))
    is_val = np.zeros(n, dtype=bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@pytest.mark.parametrize("policy", SPLIT_POLICIES)
def test_draw_split_draws_what_split_patches_drew_before(policy: str) -> None:
    from gbhet_lib.wsi.train import split_patches

    for shape, fraction, seed in (((8, 2, 2, 5), 0.25, 0), ((5, 3, 1, 7), 0.1, 42), ((3, 1, 3, 4), 0.5, 7)):
        units = _cohort(*shape)
        old = _old_split_patches(units["slide"], units["lineage"], policy, fraction, seed, units["patient"])
        new = draw_split(units, policy, fraction, seed)
        wrapper = split_patches(units["slide"], units["lineage"], policy, fraction, seed, units["patient"])
        for a, b, c in zip(old, new, wrapper):
            assert np.array_equal(a, b) and np.array_equal(a, c)


def test_draw_split_errors_name_the_parameter_and_the_fix() -> None:
    units = _cohort(n_patients=1, lineages_per_patient=1)
    with pytest.raises(ValueError, match="at least two patients.*policy='patch'"):
        draw_split(units, "patient", 0.25, 0)
    with pytest.raises(ValueError, match=r"held_out_fraction=1\.0 must be in \(0, 1\)"):
        draw_split(_cohort(), "slide", 1.0, 0)
    with pytest.raises(ValueError, match="one id per item, got lengths"):
        draw_split({"slide": ["a", "b", "c"], "lineage": ["x", "y"]}, "slide", 0.5, 0)
    with pytest.raises(ValueError, match="must be one of.*patient_folds"):
        draw_split(_cohort(), "tumour", 0.25, 0)
    with pytest.raises(ValueError, match=r"needs one patient id per item: pass units\['patient'\]"):
        draw_split({"slide": ["a", "b"], "lineage": ["x", "y"]}, "patient", 0.5, 0)


def test_wsi_train_reexports_the_evaluation_names() -> None:
    from gbhet_lib.evaluate import metrics, splits
    from gbhet_lib.wsi import train

    assert train.SPLIT_POLICIES is splits.SPLIT_POLICIES
    features = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    labels = np.arange(30) % 3
    assert train.knn_accuracy(features, labels, chunk=7) == metrics.knn_accuracy(features, labels)


# ---------------------------------------------------------------------------------------------------- K folds
def test_patient_folds_hold_every_patient_out_once_and_never_on_both_sides() -> None:
    units = _cohort(n_patients=7)
    patients = units["patient"]
    folds = patient_folds(patients, 3, seed=1)
    assert len(folds) == 3
    held_patients = [set(patients[held]) for _, held in folds]
    assert sorted(p for fold in held_patients for p in fold) == sorted(set(patients))  # each exactly once
    assert sorted(len(fold) for fold in held_patients) == [2, 2, 3]  # near-equal folds
    for train, held in folds:
        assert not set(patients[train]) & set(patients[held])
        assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(len(patients)))
    again = patient_folds(patients, 3, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, patient_folds(patients, 3, seed=2)))


def test_patient_folds_refuse_impossible_fold_counts() -> None:
    patients = _cohort(n_patients=4)["patient"]
    for n_folds in (1, 5):
        with pytest.raises(ValueError, match="between 2 and the number of patients"):
            patient_folds(patients, n_folds, 0)
    assert len(patient_folds(patients, 4, 0)) == 4  # leave-one-patient-out


# ---------------------------------------------------------------------------------------------------- records
def test_split_record_round_trip_and_one_split_per_file(tmp_path: Path) -> None:
    units = _cohort()
    keys = _keys(units)
    split = make_split("patient", keys, units, "patient", 0.25, seed=0)
    assert split["format"] == SPLIT_FORMAT and split["counts"] == {"train": len(split["train_keys"]),
                                                                   "held_out": len(split["held_out_keys"])}
    assert split["held_out_patients"] == sorted(set(units["patient"][draw_split(units, "patient", 0.25, 0)[1]]))
    path = run_split_path(tmp_path, "patient")
    assert path == tmp_path / "models" / "splits" / "patient.json"
    assert write_split(path, split) == split
    assert read_split(path) == split
    assert write_split(path, make_split("patient", keys, units, "patient", 0.25, seed=0)) == split  # same: kept
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*delete it to redraw, and retrain every model"):
        write_split(path, make_split("patient", keys, units, "patient", 0.25, seed=1))
    reordered = keys[::-1]
    train, held = split_rows(reordered, split)
    assert sorted(reordered[i] for i in held) == sorted(split["held_out_keys"])
    assert sorted(reordered[i] for i in train) == sorted(split["train_keys"])
    with pytest.raises(ValueError, match="split 'patient'.*1 items are not in it"):
        split_rows(keys + ["extra:0"], split)
    with pytest.raises(FileNotFoundError, match="no split file .*lineage.json"):
        read_split(run_split_path(tmp_path, "lineage"))


def test_a_tampered_split_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    units = _cohort()
    path = run_split_path(tmp_path, "slide")
    split = write_split(path, make_split("slide", _keys(units), units, "slide", 0.25, seed=0))
    edited = dict(split, held_out_keys=split["held_out_keys"][1:],
                  train_keys=split["train_keys"] + split["held_out_keys"][:1])  # move one patch, keep the digest
    path.write_text(json.dumps(edited))
    with pytest.raises(SplitMismatch, match=f"{re.escape(str(path))} was edited after it was written"):
        read_split(path)


def test_identical_splits_are_named_once() -> None:
    units = _cohort(n_patients=4, lineages_per_patient=3, slides_per_lineage=1)  # one slide per lineage
    keys = _keys(units)
    splits = {policy: make_split(policy, keys, units, policy, 0.5 if policy == "patient" else 0.25, seed=0)
              for policy in SPLIT_POLICIES}
    assert splits["slide"]["digest"] != splits["lineage"]["digest"]  # the policy is part of the digest…
    assert identical_splits(splits) == {"patch": "patch", "slide": "slide", "lineage": "slide",
                                        "patient": "patient"}  # …but they hold out the same patches
    two_per_lineage = _cohort(n_patients=4, lineages_per_patient=3, slides_per_lineage=2)
    other = {p: make_split(p, _keys(two_per_lineage), two_per_lineage, p, 0.25, 0) for p in ("slide", "lineage")}
    assert identical_splits(other) == {"slide": "slide", "lineage": "lineage"}


# ------------------------------------------------------------------------------------------- the fusion stage
def test_fusion_stage_writes_policy_and_cv_split_files(tmp_path: Path) -> None:
    from fusion_tiny import tiny_pairs

    from gbhet_lib.fusion import stage

    data = tiny_pairs()
    split = stage.write_split(tmp_path, data, "lineage", 0.25, seed=0)
    assert stage.split_path(tmp_path, "lineage") == tmp_path / "models" / "splits" / "lineage.json"
    assert stage.read_split(tmp_path, "lineage") == split
    train, held = stage.split_rows(data, split)
    assert np.array_equal(held, draw_split({"lineage": data.patch_lineage_id}, "lineage", 0.25, 0)[1])
    assert not set(data.patch_lineage_id[train]) & set(data.patch_lineage_id[held])
    with pytest.raises(ValueError, match="other settings or other pairs"):
        stage.write_split(tmp_path, data, "lineage", 0.25, seed=1)
    folds = stage.write_cv_splits(tmp_path, data, 3, seed=0)
    assert list(folds) == ["patient_cv-0of3", "patient_cv-1of3", "patient_cv-2of3"]
    assert sorted(p for s in folds.values() for p in s["held_out_patients"]) == sorted(set(data.patch_patient))
    assert stage.read_split(tmp_path, "patient_cv-1of3") == folds["patient_cv-1of3"]
    assert stage.write_cv_splits(tmp_path, data, 3, seed=0) == folds
    with pytest.raises(ValueError, match="patient_cv-0of3.json holds another split"):
        stage.write_cv_splits(tmp_path, data, 3, seed=1)


# ------------------------------------------------------------------------------------------ loading with a check
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    """A run directory with the ``patch`` split of the tiny pairs and a ``best`` model trained (1 epoch) on it."""
    from fusion_tiny import TINY_FUSION, tiny_encoders, tiny_pairs

    from gbhet_lib.fusion import stage
    from gbhet_lib.fusion.train import train_fusion, variant_config
    from gbhet_lib.io import write_json_atomic

    run_dir = tmp_path_factory.mktemp("run")
    data = tiny_pairs()
    split = stage.write_split(run_dir, data, "patch", 0.25, seed=0)
    train_rows, _ = stage.split_rows(data, split)
    folder = run_dir / "models" / "fusion" / "best-patch-test"
    train_fusion(variant_config("best", **{**TINY_FUSION, "epochs": 1}), data.subset(train_rows), *tiny_encoders(),
                 folder, extra={"split_digest": split["digest"]}, progress=False)
    record = {"name": "best", "variant": "best", "policy": "patch", "split_digest": split["digest"],
              "checkpoint": str((folder / "last.pt").relative_to(run_dir))}
    write_json_atomic(run_dir / "models" / "fusion" / "best-patch.json", record)
    return run_dir, data, split, record


def test_load_trained_returns_the_model_trained_on_the_split(trained_run) -> None:
    from gbhet_lib.evaluate.models import load_trained

    run_dir, _, split, record = trained_run
    model, loaded = load_trained(run_dir, "best", "patch")
    assert not model.training and loaded == record
    assert load_trained(run_dir, "best", split)[1] == record


def test_load_trained_refuses_a_redrawn_split(trained_run, tmp_path: Path) -> None:
    import shutil

    from gbhet_lib.evaluate.models import load_trained
    from gbhet_lib.fusion import stage
    from gbhet_lib.io import write_json_atomic

    run_dir, data, split, record = trained_run
    other_run = tmp_path / "run"
    shutil.copytree(run_dir, other_run)
    stage.split_path(other_run, "patch").unlink()
    redrawn = stage.write_split(other_run, data, "patch", 0.25, seed=1)
    split_file, run = re.escape(str(stage.split_path(other_run, "patch"))), re.escape(str(other_run))
    with pytest.raises(SplitMismatch, match=f"model 'best'.*split digest {split['digest']}.*{split_file} has digest "
                                            f"{redrawn['digest']}.*gbhet train-fusion --run-dir {run} "
                                            "--variant best --policy patch"):
        load_trained(other_run, "best", "patch")
    # the record claims the new split, the checkpoint still holds the old one
    write_json_atomic(other_run / "models" / "fusion" / "best-patch.json",
                      {**record, "split_digest": redrawn["digest"]})
    with pytest.raises(SplitMismatch, match=f"checkpoint of model 'best'.*records split digest {split['digest']}.*"
                                            f"{split_file} has digest {redrawn['digest']}"):
        load_trained(other_run, "best", "patch")


def test_load_trained_refuses_a_tampered_split_file(trained_run, tmp_path: Path) -> None:
    import shutil

    from gbhet_lib.evaluate.models import load_trained

    run_dir, _, split, _ = trained_run
    other_run = tmp_path / "run"
    shutil.copytree(run_dir, other_run)
    path = run_split_path(other_run, "patch")
    path.write_text(json.dumps(dict(split, train_keys=split["train_keys"][:-1],
                                    held_out_keys=split["held_out_keys"] + split["train_keys"][-1:])))
    with pytest.raises(SplitMismatch, match=f"{re.escape(str(path))} was edited"):
        load_trained(other_run, "best", "patch")
    with pytest.raises(SplitMismatch, match="given split record 'patch' was changed"):
        load_trained(run_dir, "best", dict(split, held_out_keys=split["held_out_keys"][:-1]))
