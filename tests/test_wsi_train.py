"""Hardest-negative triplet loss (spec §4.2), split policies, triplet training and its exact resume."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gbhet_lib.wsi.train as wsi_train
from gbhet_lib.config import ConfigError
from gbhet_lib.wsi.encoder import PatchEncoder, demo_encoder, load_encoder
from gbhet_lib.wsi.train import PatchArrays, TripletConfig, evaluate_triplet, knn_accuracy, split_patches, \
    train_triplet
from gbhet_lib.wsi.triplet import hardest_negative_triplet_loss, mine_triplets, squared_distances

M = 1e-4


# --------------------------------------------------------------------------------------------------- triplet
def test_triplet_hand_example() -> None:
    """Points on a line; labels 0 0 1 1 1. Squared distances by hand:

    pair (0,1): d=0.01; 0's nearest negative is 2 (d=1): 0.01 − 1 + m < 0, dropped.
    pair (2,3): d=4; 2's nearest negative is 1 (d=0.81, not 0 at d=1): 4 − 0.81 + m = 3.19 + m, kept.
    pair (2,4): d=1; again negative 1: 1 − 0.81 + m = 0.19 + m, kept.
    pair (3,4): d=1; 3's nearest negative is 1 (d=8.41): 1 − 8.41 + m < 0, dropped.
    """
    x = torch.tensor([[0.0], [0.1], [1.0], [3.0], [2.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert mine_triplets(squared_distances(x.detach()), labels, M).tolist() == [[2, 3, 1], [2, 4, 1]]
    loss, n = hardest_negative_triplet_loss(x, labels, M)
    assert n == 2 and loss.item() == pytest.approx((3.19 + M + 0.19 + M) / 2, rel=1e-6)
    loss.backward()
    assert x.grad[0].item() == 0 and x.grad[1].item() != 0  # only the chosen negative gets a gradient


def test_fallback_triplet_when_none_qualifies() -> None:
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1]], requires_grad=True)
    labels = torch.tensor([3, 3, 7, 7])
    # the last pair (2, 3) of the last label (7), with that label's first negative (0)
    assert mine_triplets(squared_distances(x.detach()), labels, M).tolist() == [[2, 3, 0]]
    loss, n = hardest_negative_triplet_loss(x, labels, M)
    assert n == 1 and loss.item() == 0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_no_triplet_possible_gives_zero() -> None:
    x = torch.randn(4, 8, requires_grad=True)
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])):  # no pairs / no negatives
        loss, n = hardest_negative_triplet_loss(x, labels)
        assert n == 0 and loss.item() == 0 and loss.requires_grad
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        hardest_negative_triplet_loss(x, torch.zeros(3, dtype=torch.long))


def test_vectorised_miner_matches_the_authors_loop() -> None:
    """The authors' per-pair loop (numpy argmax of d(a,p) − d(a,n) + m over the negatives)."""
    rng = np.random.default_rng(0)
    x = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(24, 4))).float(), dim=1)
    labels = torch.from_numpy(rng.integers(0, 4, 24))
    d = squared_distances(x).numpy()
    lab = labels.numpy()
    expected = []
    for label in sorted(set(lab.tolist())):
        members, negatives = np.flatnonzero(lab == label), np.flatnonzero(lab != label)
        for i, a in enumerate(members):
            for p in members[i + 1:]:
                values = d[a, p] - d[a, negatives] + 0.1
                if values.max() > 0:
                    expected.append([a, p, negatives[values.argmax()]])
    got = mine_triplets(squared_distances(x), labels, 0.1).tolist()
    assert sorted(got) == sorted(np.array(expected).tolist())


# ----------------------------------------------------------------------------------------------------- split
def test_split_policies() -> None:
    slides = np.repeat([f"s{i}" for i in range(10)], 20)
    lineages = np.repeat([f"L{i}" for i in range(5)], 40)  # two slides per lineage
    for policy, groups in (("patch", None), ("slide", slides), ("lineage", lineages)):
        train, val = split_patches(slides, lineages, policy, val_fraction=0.2, seed=3)
        assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(200))
        if groups is not None:
            assert not set(groups[train]) & set(groups[val])
            assert len(set(groups[val])) == round(0.2 * len(set(groups)))
    train, val = split_patches(slides, lineages, "patch", val_fraction=0.1, seed=3)
    assert len(val) == 20 and set(slides[val]) & set(slides[train])  # the paper's: same slides on both sides
    assert np.array_equal(split_patches(slides, lineages, "lineage", seed=1)[1],
                          split_patches(slides, lineages, "lineage", seed=1)[1])
    with pytest.raises(ValueError, match="at least two slides"):
        split_patches(["a"] * 5, range(5), "slide")
    with pytest.raises(ValueError, match="must be one of"):
        split_patches(slides, lineages, "tumour")
    with pytest.raises(ValueError, match="needs one patient id per item"):
        split_patches(slides, lineages, "patient")


def test_knn_accuracy_and_chance() -> None:
    features = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    assert knn_accuracy(features, np.array([0, 0, 1, 1]), chunk=3) == (1.0, pytest.approx(1 / 3))
    assert knn_accuracy(features, np.array([0, 1, 0, 1]))[0] == 0.0


# -------------------------------------------------------------------------------------------------- training
def _lineage_patches(n: int, seed: int) -> PatchArrays:
    """Two lineages: slightly reddish vs slightly bluish 32 px patches (±6 of 255) under noise (SD 40), each with a
    bright square somewhere; easy enough for two epochs, hard enough that triplets stay active."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None] == 0, [[136, 90, 124]], [[124, 90, 136]])
    images = base[:, None, None, :] + rng.normal(0, 40, (n, 32, 32, 3))
    for image in images:
        y, x = rng.integers(0, 24, 2)
        image[y:y + 8, x:x + 8] += 60
    return PatchArrays(np.clip(images, 0, 255).astype(np.uint8), labels)


TINY = TripletConfig(epochs=2, batch_size=16, lr=1e-3, warmup_epochs=0, margin=0.2, seed=5)


def _encoder() -> PatchEncoder:
    return demo_encoder(img_size=32, proj_dim=16)


def test_training_separates_lineages(tmp_path: Path) -> None:
    train, val = _lineage_patches(64, seed=0), _lineage_patches(32, seed=1)
    history = train_triplet(_encoder, train, val, TINY, tmp_path, progress=False)
    assert list(history["epoch"]) == [0, 1]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert (history["train_triplets"] > 1).all()  # mined triplets, not the fallback
    assert (history["val_knn_accuracy"] > history["val_knn_chance"]).all()
    assert history["val_knn_chance"].iloc[0] == pytest.approx(2 * 16 * 15 / (32 * 31))
    assert (tmp_path / "history.tsv").is_file()
    encoder = load_encoder(tmp_path / "last.pt")
    assert encoder.init_source.startswith("checkpoint:") and not encoder.training
    assert evaluate_triplet(encoder, val, TINY)["loss"] == pytest.approx(history["val_loss"].iloc[-1], rel=1e-5)


def test_interrupted_run_resumes_bit_identically(tmp_path: Path, kill_training_at) -> None:
    config = dataclasses.replace(TINY, augment=True)  # shuffling and augmentation draws both live
    train = _lineage_patches(48, seed=0)
    as_dataset = [train[i] for i in range(len(train))]  # the generic Dataset path
    whole = train_triplet(_encoder, train, None, config, tmp_path / "whole", progress=False)

    revive = kill_training_at(wsi_train, epoch=1, batch=1)
    with pytest.raises(KeyboardInterrupt):
        train_triplet(_encoder, as_dataset, None, config, tmp_path / "resumed", progress=False)
    revive()
    resumed = train_triplet(_encoder, as_dataset, None, config, tmp_path / "resumed", progress=False)

    a, b = (load_encoder(tmp_path / d / "last.pt").state_dict() for d in ("whole", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timing = ["train_seconds"]
    pd.testing.assert_frame_equal(whole.drop(columns=timing), resumed.drop(columns=timing))
    with pytest.raises(ValueError, match=r"another run \(config"):
        train_triplet(_encoder, train, None, dataclasses.replace(config, margin=0.3), tmp_path / "whole",
                      progress=False)


def test_config_and_data_errors() -> None:
    assert (TripletConfig().epochs, TripletConfig().batch_size, TripletConfig().margin) == (25, 64, 1e-4)
    with pytest.raises(ConfigError, match="margin"):
        TripletConfig(margin=-1)
    with pytest.raises(ConfigError, match="amp_bf16"):
        TripletConfig(amp_bf16=True)
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        PatchArrays(np.zeros((2, 8, 8, 3)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="2 integers"):
        PatchArrays(np.zeros((2, 8, 8, 3), dtype=np.uint8), np.zeros(3, dtype=int))


def test_wsi_modules_need_only_the_gpu_machine_stack() -> None:
    """The GPU machine has torch, timm, h5py, numpy, pandas: no openslide, scanpy, scikit-learn, …"""
    heavy = ["scanpy", "anndata", "openslide", "networkx", "sklearn", "lifelines", "matplotlib", "tifffile"]
    code = ("import sys, gbhet_lib.wsi.train, gbhet_lib.wsi.features, gbhet_lib.wsi.encoder, "
            f"gbhet_lib.wsi.triplet; print(sorted(set({heavy!r}) & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_semihard_mining_picks_the_closest_negative_beyond_the_positive() -> None:
    from gbhet_lib.wsi.triplet import mine_triplets

    # anchor 0, positive 1 at distance 1; negatives at 0.5 (harder than the positive), 1.5 and 1.8
    d = torch.tensor([[0.0, 1.0, 0.5, 1.5, 1.8],
                      [1.0, 0.0, 2.0, 2.0, 2.0],
                      [0.5, 2.0, 0.0, 2.0, 2.0],
                      [1.5, 2.0, 2.0, 0.0, 2.0],
                      [1.8, 2.0, 2.0, 2.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2, 3])
    assert mine_triplets(d, labels, margin=1.0, mining="hardest").tolist() == [[0, 1, 2]]
    assert mine_triplets(d, labels, margin=1.0, mining="semihard").tolist() == [[0, 1, 3]]
    with pytest.raises(ValueError, match="mining='soft'"):
        mine_triplets(d, labels, mining="soft")
