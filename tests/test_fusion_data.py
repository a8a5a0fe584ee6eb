"""Fusion pairing data (spec §5.4): patches paired with their lineage's RNA, exclusions counted, patch stores read,
batches, lineage-balanced epochs, the patient-held-out split, and patches streamed from the stores beyond a memory
budget (the same bytes, batches and training history as in memory)."""
from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from fusion_tiny import TINY_FUSION, tiny_encoders, tiny_pairs

from gbhet_lib.fusion.data import PairBatches, PairedPatches, PatchStoreImages, StreamedPatches, \
    lineage_balanced_order, pair_patches, read_patch_stores, resize_patches
from gbhet_lib.fusion.train import train_fusion, variant_config
from gbhet_lib.rna.train import TokenData
from gbhet_lib.wsi.train import PatchArrays, split_patches

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


# ------------------------------------------------------------------------------------------ streamed patches
def _chunked_store(path: Path, slide: str, patches: np.ndarray) -> Path:
    """A store laid out as :func:`gbhet_lib.wsi.patch_store.build_patch_store` writes it (one patch per chunk)."""
    with h5py.File(path, "w") as store:
        store.create_dataset("patches", data=patches, chunks=(1, *patches.shape[1:]), compression="lzf")
        store.attrs["slide_name"] = slide
    return path


def _random_stores(tmp_path: Path, counts: tuple[int, ...] = (7, 1, 12), side: int = 12) -> list[Path]:
    rng = np.random.default_rng(5)
    return [_chunked_store(tmp_path / f"s{k}.h5", f"s{k}", rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8))
            for k, n in enumerate(counts)]


@pytest.mark.parametrize("size", [5, None])
def test_streamed_patches_are_the_bytes_of_the_in_memory_path(tmp_path: Path, size: int | None) -> None:
    stores = _random_stores(tmp_path)
    memory, slides, keys = read_patch_stores(stores, size)
    streamed, slides_s, keys_s = read_patch_stores(stores, size, memory_budget_bytes=memory.nbytes - 1)
    assert isinstance(memory, np.ndarray) and isinstance(streamed, PatchStoreImages)
    assert isinstance(read_patch_stores(stores, size, memory_budget_bytes=memory.nbytes)[0], np.ndarray)
    assert (len(streamed), streamed.shape, streamed.dtype, streamed.ndim) == (20, memory.shape, np.uint8, 4)
    assert slides_s.tolist() == slides.tolist() and keys_s.tolist() == keys.tolist()
    rows = np.array([19, 0, 7, 3, 3, 12, 8, 1])  # unsorted, repeated, across the three stores
    np.testing.assert_array_equal(streamed[rows], memory[rows])
    np.testing.assert_array_equal(streamed[4], memory[4])
    np.testing.assert_array_equal(streamed[2:9:3], memory[2:9:3])
    np.testing.assert_array_equal(streamed[memory[:, 0, 0, 0] > 128], memory[memory[:, 0, 0, 0] > 128])
    np.testing.assert_array_equal(streamed.select(rows)[[1, 0]], memory[rows][[1, 0]])
    assert streamed[np.zeros(0, dtype=np.int64)].shape == (0, *memory.shape[1:])
    with pytest.raises(IndexError, match="integer or boolean"):
        streamed[np.array([0.5])]


def test_streamed_pairs_give_identical_batches_subsets_and_triplet_data(tmp_path: Path) -> None:
    stores = _random_stores(tmp_path, counts=(6, 4, 5, 3))
    lineage_of = {"s0": "SR1A", "s1": "SR1B", "s2": "SR9Z", "s3": "SR2A"}  # s2's lineage has no RNA
    paired = {}
    for budget in (None, 0):
        images, slides, keys = read_patch_stores(stores, 8, memory_budget_bytes=budget)
        paired[budget] = pair_patches(images, slides, keys, lineage_of, PATIENT, _rna())
    memory, streamed = paired[None], paired[0]
    assert isinstance(streamed.images, PatchStoreImages) and len(streamed) == len(memory) == 13
    assert streamed.excluded == memory.excluded and streamed.excluded["patches_without_rna"] == 5
    rows = torch.tensor([12, 0, 5, 5, 9, 3])
    for a, b in zip(PairBatches(memory, torch.device("cpu")).batch(rows),
                    PairBatches(streamed, torch.device("cpu")).batch(rows)):
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert x.dtype == y.dtype and torch.equal(x, y)
    part = streamed.subset([11, 2, 7])
    assert isinstance(part.images, PatchStoreImages)
    np.testing.assert_array_equal(part.images[[0, 1, 2]], memory.subset([11, 2, 7]).images)
    triplet, reference = streamed.triplet_data([1, 8, 12]), memory.triplet_data([1, 8, 12])
    assert isinstance(triplet, StreamedPatches) and isinstance(reference, PatchArrays)
    assert len(triplet) == 3 and triplet.labels.tolist() == reference.labels.tolist()
    for i in range(3):
        image, label = triplet[i]
        np.testing.assert_array_equal(image, reference[i][0])
        assert label == reference[i][1] and isinstance(label, int)


def test_streamed_patches_reopen_their_stores_in_other_processes(tmp_path: Path) -> None:
    stores = _random_stores(tmp_path)
    memory, _, _ = read_patch_stores(stores, 6)
    streamed = read_patch_stores(stores, 6, memory_budget_bytes=0)[0]
    streamed[[0, 10]]  # opens handles in this process
    copy = pickle.loads(pickle.dumps(streamed.dataset(np.arange(20))))  # paths travel, handles do not
    assert not copy.images.files._handles
    np.testing.assert_array_equal(copy.images[[3, 19]], memory[[3, 19]])
    loader = torch.utils.data.DataLoader(streamed.dataset(np.arange(20)), batch_size=5, num_workers=2,
                                         multiprocessing_context="fork")
    images = torch.cat([batch[0] for batch in loader])  # forked workers reopen the files
    np.testing.assert_array_equal(images.numpy(), memory)


def test_training_one_epoch_streamed_gives_the_in_memory_history(tmp_path: Path) -> None:
    data = tiny_pairs()
    stores = [_chunked_store(tmp_path / f"{slide}.h5", slide, data.images[data.patch_slide == slide])
              for slide in dict.fromkeys(data.patch_slide)]
    lineage_of = dict(zip(data.patch_slide, data.patch_lineage_id))
    patient_of = dict(zip(data.patch_lineage_id, data.patch_patient))
    config = variant_config("best", **{**TINY_FUSION, "epochs": 1})
    histories = []
    for budget in (None, 0):
        pairs = pair_patches(*read_patch_stores(stores, 32, memory_budget_bytes=budget), lineage_of, patient_of,
                             data.rna)
        assert isinstance(pairs.images, np.ndarray) == (budget is None)
        train, val = pairs.subset(np.arange(0, len(pairs), 2)), pairs.subset(np.arange(1, len(pairs), 2))
        histories.append(train_fusion(config, train, *tiny_encoders(), tmp_path / str(budget), val,
                                      progress=False).drop(columns=["train_seconds", "pairs_per_s"]))
    pd.testing.assert_frame_equal(*histories)


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
    with pytest.raises(ValueError, match="needs one patient id per item"):
        split_patches(slides, lineages, "patient")
    with pytest.raises(ValueError, match="one id per item"):
        split_patches(slides, lineages, "patient", patient_ids=["P1", "P2"])
    with pytest.raises(ValueError, match="two patients"):
        split_patches(slides, lineages, "patient", patient_ids=["P1", "P1", "P1"])


def test_per_slide_sampling_caps_each_slide_reproducibly_and_counts_the_rest() -> None:
    pairs = _pairs()
    counts = pd.Series(pairs.patch_slide).value_counts()
    capped = pairs.per_slide(1, seed=3)
    assert pd.Series(capped.patch_slide).value_counts().max() == 1
    assert set(capped.patch_slide) == set(pairs.patch_slide)
    assert capped.excluded["patches_not_sampled"] == len(pairs) - len(counts)
    assert list(pairs.per_slide(1, seed=3).patch_key) == list(capped.patch_key)
    assert len(pairs.per_slide(int(counts.max()), seed=0)) == len(pairs)  # a cap above every slide keeps all
    with pytest.raises(ValueError, match="patches_per_slide=0"):
        pairs.per_slide(0)
