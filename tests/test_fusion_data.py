"""Fusion pairing data (spec §5.4): patches paired with their lineage's RNA, exclusions counted, patch stores read,
batches, lineage-balanced epochs, and the patient-held-out split."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gbhet_lib.fusion.data import PairBatches, PairedPatches, lineage_balanced_order, pair_patches, \
    read_patch_stores, resize_patches
from gbhet_lib.rna.train import TokenData
from gbhet_lib.wsi.train import split_patches

LINEAGES = ["SR1A", "SR1B", "SR2A"]
PATIENT = {"SR1A": "P1", "SR1B": "P1", "SR2A": "P2"}
# slide → lineage; slide "s9" has none, slide "s4" has a lineage without RNA
SLIDE_LINEAGE = {"s1": "SR1A", "s2": "SR1B", "s3": "SR2A", "s4": "SR3A"}
PATCH_SLIDE = ["s1", "s4", "s2", "s9", "s1", "s3", "s4", "s9", "s3", "s2"]


def _rna() -> TokenData:
    values = np.arange(3 * 5, dtype=np.float32).reshape(3, 5) + 100 * np.arange(3)[:, None]
    return TokenData(values, [[0, 1], [2, 3, 4]], samples=LINEAGES)


def _images(n: int, size: int = 8) -> np.ndarray:
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, 3)).copy()


def _pairs() -> PairedPatches:
    keys = [f"{s}:{i}" for i, s in enumerate(PATCH_SLIDE)]
    return pair_patches(_images(len(PATCH_SLIDE)), PATCH_SLIDE, keys, SLIDE_LINEAGE, PATIENT, _rna())


# ---------------------------------------------------------------------------------------------------- pairing
def test_pair_patches_excludes_and_counts_unpaired_patches() -> None:
    pairs = _pairs()
    kept = [0, 2, 4, 5, 8, 9]  # s4 (lineage without RNA) and s9 (no lineage) dropped, order kept
    assert len(pairs) == 6
    assert pairs.excluded == {"patches_without_rna": 4, "lineages_without_rna": ["SR3A"],
                              "slides_without_lineage": ["s9"]}
    assert pairs.images[:, 0, 0, 0].tolist() == kept
    assert pairs.patch_slide.tolist() == [PATCH_SLIDE[i] for i in kept]
    assert pairs.patch_key.tolist() == [f"{PATCH_SLIDE[i]}:{i}" for i in kept]
    assert pairs.patch_lineage.tolist() == [0, 1, 0, 2, 2, 1]
    assert pairs.patch_lineage.dtype == np.int64
    assert pairs.patch_lineage_id.tolist() == ["SR1A", "SR1B", "SR1A", "SR2A", "SR2A", "SR1B"]
    assert pairs.lineage_ids == tuple(LINEAGES)
    assert pairs.patch_patient.tolist() == ["P1", "P1", "P1", "P2", "P2", "P1"]


def test_pair_patches_names_a_lineage_without_patient() -> None:
    patients = {"SR1A": "P1", "SR2A": "P2"}
    with pytest.raises(KeyError, match="SR1B"):
        pair_patches(_images(len(PATCH_SLIDE)), PATCH_SLIDE, PATCH_SLIDE, SLIDE_LINEAGE, patients, _rna())


def test_pair_patches_with_everything_paired_excludes_nothing() -> None:
    slides = ["s1", "s2", "s3"]
    pairs = pair_patches(_images(3), slides, ["a", "b", "c"], SLIDE_LINEAGE, PATIENT, _rna())
    assert len(pairs) == 3
    assert pairs.excluded == {"patches_without_rna": 0, "lineages_without_rna": [], "slides_without_lineage": []}


def test_subset_counts_and_patients() -> None:
    pairs = _pairs()
    assert pairs.counts() == {"pairs": 6, "slides": 3, "lineages": 3, "patients": 2}
    part = pairs.subset([3, 0])
    assert part.images[:, 0, 0, 0].tolist() == [5, 0]
    assert part.patch_lineage.tolist() == [2, 0] and part.patch_slide.tolist() == ["s3", "s1"]
    assert part.patch_key.tolist() == ["s3:5", "s1:0"]
    assert part.patch_patient.tolist() == ["P2", "P1"]
    assert part.rna is pairs.rna and len(part.lineage_patient) == 3  # the RNA table is kept whole
    assert part.excluded == pairs.excluded and part.excluded is not pairs.excluded
    assert part.counts() == {"pairs": 2, "slides": 2, "lineages": 2, "patients": 2}
    assert pairs.subset([1, 5]).counts() == {"pairs": 2, "slides": 1, "lineages": 1, "patients": 1}


def test_paired_patches_validates_its_arrays() -> None:
    pairs = _pairs()
    with pytest.raises(ValueError, match="uint8"):
        PairedPatches(pairs.images.astype(np.float32), pairs.patch_lineage, pairs.patch_slide, pairs.patch_key,
                      pairs.rna, pairs.lineage_patient)
    with pytest.raises(ValueError, match="patch_key has 5 entries for 6"):
        PairedPatches(pairs.images, pairs.patch_lineage, pairs.patch_slide, pairs.patch_key[:5], pairs.rna,
                      pairs.lineage_patient)
    with pytest.raises(ValueError, match="index the rows of rna"):
        PairedPatches(pairs.images, pairs.patch_lineage + 1, pairs.patch_slide, pairs.patch_key, pairs.rna,
                      pairs.lineage_patient)


# ---------------------------------------------------------------------------------------------------- patches
def test_resize_patches_shape_dtype_and_constant_images() -> None:
    images = np.full((5, 12, 12, 3), 7, dtype=np.uint8)
    images[2] = 200
    out = resize_patches(images, 5, batch=2)  # three chunks
    assert out.shape == (5, 5, 5, 3) and out.dtype == np.uint8
    assert (out[[0, 1, 3, 4]] == 7).all() and (out[2] == 200).all()
    assert resize_patches(images, 12) is images
    up = resize_patches(np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8), 9)
    assert up.shape == (2, 9, 9, 3) and up.dtype == np.uint8


def _write_store(path: Path, slide: str, patches: np.ndarray) -> Path:
    with h5py.File(path, "w") as store:
        store.create_dataset("patches", data=patches)
        store.attrs["slide_name"] = slide
    return path


def test_read_patch_stores_keys_and_resizing(tmp_path: Path) -> None:
    a = _write_store(tmp_path / "a.h5", "slideA", _images(3, size=6))
    b = _write_store(tmp_path / "b.h5", "slideB", _images(2, size=6) + 50)
    images, slides, keys = read_patch_stores([a, str(b)])
    assert images.shape == (5, 6, 6, 3) and images.dtype == np.uint8
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2, 50, 51]
    assert slides.tolist() == ["slideA"] * 3 + ["slideB"] * 2
    assert keys.tolist() == ["slideA:0", "slideA:1", "slideA:2", "slideB:0", "slideB:1"]
    small, _, small_keys = read_patch_stores([a, b], size=4)
    assert small.shape == (5, 4, 4, 3) and small_keys.tolist() == keys.tolist()
    assert small[:, 0, 0, 0].tolist() == [0, 1, 2, 50, 51]  # constant patches stay constant
    with pytest.raises(ValueError, match="no patch stores"):
        read_patch_stores([])


# ---------------------------------------------------------------------------------------------------- batches
def test_pair_batches_give_each_patch_its_lineage_rna() -> None:
    pairs = _pairs()
    batches = PairBatches(pairs, torch.device("cpu"))
    rows = torch.tensor([3, 0, 5, 1])
    images, rna, lineage = batches.batch(rows)
    assert images.dtype == torch.uint8 and images[:, 0, 0, 0].tolist() == [5, 0, 9, 2]
    assert lineage.tolist() == [2, 0, 1, 1]
    values = pairs.rna.values
    assert len(rna) == 2 and [tuple(t.shape) for t in rna] == [(4, 2), (4, 3)]
    np.testing.assert_array_equal(rna[0].numpy(), values[[2, 0, 1, 1]][:, [0, 1]])
    np.testing.assert_array_equal(rna[1].numpy(), values[[2, 0, 1, 1]][:, [2, 3, 4]])
    assert rna[1][0].tolist() == [212.0, 213.0, 214.0]  # lineage SR2A, by hand


def test_lineage_balanced_order_equalises_lineages() -> None:
    lineage = np.array([0] * 200 + [1] * 20 + [2] * 20)
    order = lineage_balanced_order(lineage, n=6000)
    drawn = order(torch.Generator().manual_seed(0))
    assert drawn.shape == (6000,) and drawn.dtype == torch.int64
    freq = np.bincount(lineage[drawn.numpy()], minlength=3) / 6000
    assert np.abs(freq - 1 / 3).max() < 0.03, freq  # sd ≈ 0.006; unbalanced would give 0.83 for lineage 0
    within = np.bincount(drawn.numpy()[lineage[drawn.numpy()] == 1] - 200, minlength=20)
    assert len(within) == 20 and within.min() > 0  # every patch of a small lineage is drawn
    assert len(lineage_balanced_order(lineage)(torch.Generator().manual_seed(0))) == len(lineage)


def test_lineage_balanced_order_is_reproducible_per_seed() -> None:
    order = lineage_balanced_order(np.array([0, 0, 0, 0, 1, 2, 2]), n=50)
    first = order(torch.Generator().manual_seed(11))
    assert torch.equal(first, order(torch.Generator().manual_seed(11)))
    assert not torch.equal(first, order(torch.Generator().manual_seed(12)))
    assert int(first.min()) >= 0 and int(first.max()) < 7


# ------------------------------------------------------------------------------------------------------ split
def test_patient_split_holds_patients_out_whole() -> None:
    n = 60
    patients = np.array([f"P{i % 6}" for i in range(n)])
    lineages = np.array([f"{p}L{i % 2}" for i, p in enumerate(patients)])
    slides = np.array([f"{l}S{i % 3}" for i, l in enumerate(lineages)])
    for seed in range(5):
        train, val = split_patches(slides, lineages, "patient", val_fraction=0.34, seed=seed, patient_ids=patients)
        assert len(val) and len(train)
        assert not set(patients[train]) & set(patients[val])
        assert sorted(np.concatenate([train, val]).tolist()) == list(range(n))
        assert len(set(patients[val])) == 2  # round(0.34 · 6) patients held out
    again = split_patches(slides, lineages, "patient", val_fraction=0.34, seed=3, patient_ids=patients)
    assert np.array_equal(again[1], split_patches(slides, lineages, "patient", 0.34, 3, patients)[1])


def test_patient_split_needs_patient_ids() -> None:
    slides, lineages = ["a", "b", "c"], ["x", "y", "z"]
    with pytest.raises(ValueError, match="patient_ids"):
        split_patches(slides, lineages, "patient")
    with pytest.raises(ValueError, match="patient_ids"):
        split_patches(slides, lineages, "patient", patient_ids=["P1", "P2"])
    with pytest.raises(ValueError, match="two patients"):
        split_patches(slides, lineages, "patient", patient_ids=["P1", "P1", "P1"])
