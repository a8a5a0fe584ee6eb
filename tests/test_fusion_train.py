"""Fusion training: variants, exact resume, frozen encoders, learning on pairs that carry signal, torchrun DDP,
and the GPU-machine import contract of ``gbhet train-fusion``. Tiny models on the CPU, random initialisation."""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fusion_tiny import TINY_FUSION, tiny_encoders, tiny_pairs

from gbhet_lib.config import ConfigError
from gbhet_lib.fusion import train as fusion_train
from gbhet_lib.fusion.train import FusionConfig, load_fusion_model, train_fusion, variant_config
from gbhet_lib.rna.losses import Temperature
from gbhet_lib.training import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
TIMING = ["train_seconds", "pairs_per_s"]


def test_variants_are_the_published_runs() -> None:
    best, frozen, chromosome = (variant_config(v) for v in ("best", "frozen", "chromosome"))
    assert (best.c_itc, best.c_itm, best.c_rec, best.freeze_encoders) == (1, 1, 0, False)
    assert (frozen.c_rec, frozen.freeze_encoders, frozen.frozen_mode) == (1, True, "eval")
    assert (chromosome.c_rec, chromosome.freeze_encoders) == (1, False)
    assert fusion_train.variant_tokens("chromosome") == "chromosome" and fusion_train.variant_tokens("best") == "ppi"
    paper = FusionConfig()
    assert (paper.epochs, paper.batch_size, paper.lr, paper.weight_decay, paper.temperature, paper.seed) == \
        (10, 64, 1e-4, 0.02, 0.005, 42)
    assert (paper.symmetric, paper.multi_positive, paper.itm_negatives, paper.learnable_temperature) == \
        (False, False, "roll", False)
    with pytest.raises(ValueError, match="variant='nope'"):
        variant_config("nope")
    with pytest.raises(ConfigError, match="itm_negatives"):
        FusionConfig(itm_negatives="random")
    with pytest.raises(ConfigError, match="not all zero"):
        FusionConfig(c_itc=0, c_itm=0, c_rec=0)


def test_interrupted_run_resumes_bit_identically(tmp_path: Path, kill_training_at) -> None:
    # every random source live: dropout, similarity-drawn negatives, lineage-balanced draws, a learned τ
    config = variant_config("chromosome", **TINY_FUSION, itm_negatives="similarity", learnable_temperature=True,
                            temperature=0.05, lineage_balanced=True, multi_positive=True, symmetric=True)
    data = tiny_pairs()
    train, val = data.subset(np.arange(0, len(data), 2)), data.subset(np.arange(1, len(data), 2))
    image_encoder, rna_encoder = tiny_encoders()
    whole = train_fusion(config, train, image_encoder, rna_encoder, tmp_path / "whole", val, progress=False)

    revive = kill_training_at(fusion_train, epoch=2, batch=1)  # half-way through the last epoch
    with pytest.raises(KeyboardInterrupt):
        train_fusion(config, train, image_encoder, rna_encoder, tmp_path / "resumed", val, progress=False)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt", fusion_train.CHECKPOINT_FORMAT, "fusion")["epoch"] == 1
    revive()
    resumed = train_fusion(config, train, image_encoder, rna_encoder, tmp_path / "resumed", val, progress=False)

    a, _ = load_fusion_model(tmp_path / "whole" / "last.pt")
    b, _ = load_fusion_model(tmp_path / "resumed" / "last.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    pd.testing.assert_frame_equal(whole.drop(columns=TIMING), resumed.drop(columns=TIMING))
    assert whole["train_temperature"].iloc[-1] != pytest.approx(0.05)  # τ was learned


def test_frozen_encoders_do_not_change_and_the_paper_mode_lets_batchnorm_drift(tmp_path: Path) -> None:
    data = tiny_pairs()
    image_encoder, rna_encoder = tiny_encoders()
    for mode, drifts in (("eval", False), ("train", True)):
        config = variant_config("frozen", **{**TINY_FUSION, "epochs": 1}, frozen_mode=mode)
        train_fusion(config, data, image_encoder, rna_encoder, tmp_path / mode, progress=False)
        model, _ = load_fusion_model(tmp_path / mode / "last.pt")
        weights = [k for k in rna_encoder.state_dict() if "running" not in k and "num_batches" not in k]
        before, after = rna_encoder.state_dict(), model.rna_encoder.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in weights), mode
        image_before, image_after = image_encoder.state_dict(), model.image_encoder.state_dict()
        assert all(torch.equal(image_before[k], image_after[k]) for k in image_before
                   if mode == "eval" or ("running" not in k and "num_batches" not in k)), mode
        stats = [k for k in before if "running_mean" in k]
        assert any(not torch.equal(before[k], after[k]) for k in stats) == drifts, mode


def test_training_on_pairs_with_signal_beats_chance(tmp_path: Path) -> None:
    """Each lineage's patches share a tint: with same-lineage positives the ITC falls well below log(B)."""
    config = variant_config("best", **{**TINY_FUSION, "epochs": 30, "warmup_epochs": 1}, multi_positive=True,
                            symmetric=True, temperature=0.1)
    data = tiny_pairs()
    image_encoder, rna_encoder = tiny_encoders()
    history = train_fusion(config, data.subset(np.arange(0, len(data), 2)), image_encoder, rna_encoder,
                           tmp_path, data.subset(np.arange(1, len(data), 2)), progress=False)
    last = history.iloc[-1]
    # chance: log(batch size), ≤ log 16 ≈ 2.77; floor with same-lineage positives ≈ log(16 / 6) ≈ 0.98
    assert last["val_itc_chance"] <= math.log(16) + 1e-9
    assert last["val_itc"] < last["val_itc_chance"] - 0.25, history[["train_itc", "val_itc"]]
    assert last["train_itm"] < history["train_itm"].iloc[0]


def _untrained(config: FusionConfig) -> fusion_train.FusionTrainable:
    image_encoder, rna_encoder = tiny_encoders()
    torch.manual_seed(0)
    return fusion_train.FusionTrainable(fusion_train.build_model(config, image_encoder, rna_encoder),
                                        Temperature(config.temperature))


def test_evaluate_fusion_scores_itm_with_other_lineage_negatives_and_reports_the_paper_itc() -> None:
    paper = variant_config("frozen", **TINY_FUSION)
    fixes = dataclasses.replace(paper, symmetric=True, multi_positive=True, temperature=0.05)
    parts = _untrained(paper).train()
    data = tiny_pairs()
    metrics = fusion_train.evaluate_fusion(parts, data, paper)
    assert parts.training  # the mode is restored
    assert metrics == fusion_train.evaluate_fusion(parts, data, paper)  # the same numbers at every call
    assert set(metrics) == {"loss", "itc", "itc_paper", "itc_chance", "itm", "itm_accuracy", "itm_chance",
                            "itm_accuracy_chance", "itm_negatives_per_pair", "itm_pairs_without_negatives",
                            "itm_rolled_true_match_fraction", "reconstruction"}
    assert metrics["itc_paper"] == metrics["itc"]  # the paper's run: one definition
    assert metrics["loss"] == pytest.approx(metrics["itc"] + metrics["itm"] + metrics["reconstruction"])
    # 72 pairs in batches of 16: 4 × 16 + 8; every batch holds several lineages
    assert metrics["itc_chance"] == pytest.approx((64 * math.log(16) + 8 * math.log(8)) / 72)
    assert metrics["itm_negatives_per_pair"] == 2 and metrics["itm_pairs_without_negatives"] == 0
    assert metrics["itm_accuracy_chance"] == pytest.approx(2 / 3) and metrics["itm_chance"] == math.log(2)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(paper.seed + 2)).numpy()
    lineage = data.patch_lineage[order]
    same = sum(int((lineage[i:i + 16] == np.roll(lineage[i:i + 16], 1)).sum()) for i in range(0, 72, 16))
    assert metrics["itm_rolled_true_match_fraction"] == pytest.approx(same / 72)
    assert 0 < same  # 6 lineages in batches of 16: rolled negatives would hold true matches

    parts.temperature = Temperature(0.05)  # the fixes' τ, for the paper's ITC beside the fixes' ITC
    with_fixes = fusion_train.evaluate_fusion(parts, data, fixes)
    assert with_fixes["itc_paper"] == pytest.approx(fusion_train.evaluate_fusion(parts, data, dataclasses.replace(
        paper, temperature=0.05))["itc"])
    assert with_fixes["itc"] != pytest.approx(with_fixes["itc_paper"])
    assert with_fixes["itc_chance"] == metrics["itc_chance"]


def test_evaluate_fusion_itm_chance_levels_hold_for_a_head_that_always_says_no_match() -> None:
    config = variant_config("best", **TINY_FUSION)
    parts = _untrained(config)
    with torch.no_grad():
        parts.fusion.itm_head.weight.zero_()
        parts.fusion.itm_head.bias.copy_(torch.tensor([1.0, 0.0]))  # "no match" for every pair
    metrics = fusion_train.evaluate_fusion(parts, tiny_pairs(), config)
    assert metrics["itm_accuracy"] == pytest.approx(metrics["itm_accuracy_chance"]) == pytest.approx(2 / 3)
    with torch.no_grad():
        parts.fusion.itm_head.bias.zero_()  # cannot tell
    assert fusion_train.evaluate_fusion(parts, tiny_pairs(), config)["itm"] == pytest.approx(math.log(2))


def test_evaluate_fusion_counts_pairs_of_single_lineage_batches_without_negatives() -> None:
    config = variant_config("best", **TINY_FUSION)
    parts = _untrained(config)
    data = tiny_pairs()
    one_lineage = data.subset(np.flatnonzero(data.patch_lineage == 2))  # 12 pairs: batches of one lineage
    metrics = fusion_train.evaluate_fusion(parts, one_lineage, config)
    assert metrics["itm_negatives_per_pair"] == 0 and metrics["itm_pairs_without_negatives"] == 12
    assert metrics["itm_accuracy_chance"] == 0 and metrics["itm_rolled_true_match_fraction"] == 1
    with pytest.raises(ValueError, match="at least 2"):
        fusion_train.evaluate_fusion(parts, data.subset([0]), config)


def test_checkpoint_records_extra_and_refuses_other_settings(tmp_path: Path) -> None:
    config = variant_config("best", **{**TINY_FUSION, "epochs": 1})
    data = tiny_pairs()
    image_encoder, rna_encoder = tiny_encoders()
    train_fusion(config, data, image_encoder, rna_encoder, tmp_path, extra={"policy": "lineage"}, progress=False)
    assert load_fusion_model(tmp_path / "last.pt")[1] == {"policy": "lineage"}
    with pytest.raises(ValueError, match="another run"):
        train_fusion(dataclasses.replace(config, lr=1e-2), data, image_encoder, rna_encoder, tmp_path,
                     extra={"policy": "lineage"}, progress=False)
    with pytest.raises(ValueError, match="tokens of sizes"):
        other = tiny_encoders()[1].__class__([4, 8], dim=16, heads=4)
        train_fusion(config, data, image_encoder, other, tmp_path / "x", progress=False)


def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    """2 × 8 under torchrun (gloo, ITC negatives gathered) against 1 × 16: the same loss curve. The frozen
    variant has no BatchNorm or dropout randomness, so only the rolled ITM negatives differ (they roll within
    each rank's part of the batch)."""
    worker = REPO / "tests" / "fusion_ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(worker), str(tmp_path / "one"), "16"], check=True, env=env,
                   capture_output=True, timeout=300)
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                               "--standalone", str(worker), str(tmp_path / "two"), "8"], env=env,
                              capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    one, two = (pd.read_csv(tmp_path / d / "history.csv") for d in ("one", "two"))
    assert len(one) == len(two) == TINY_FUSION["epochs"]
    assert (one["train_samples"] == two["train_samples"]).all()
    np.testing.assert_allclose(two["train_itc"], one["train_itc"], rtol=1e-4)
    np.testing.assert_allclose(two["train_reconstruction"], one["train_reconstruction"], rtol=1e-4)
    np.testing.assert_allclose(two["train_itm"], one["train_itm"], atol=0.02)
    assert one["train_loss"].iloc[-1] < one["train_loss"].iloc[0] - 1  # the curve moves far more than the gap
    assert read_checkpoint(tmp_path / "two" / "checkpoint" / "last.pt", fusion_train.CHECKPOINT_FORMAT,
                           "fusion")["world_size"] == 2


def test_train_fusion_cli_needs_only_the_gpu_machine_stack() -> None:
    """The GPU machine has torch, timm, h5py, numpy, pandas (no anndata, openslide, papermill, plotting, YAML)."""
    blocked = ["anndata", "scanpy", "openslide", "papermill", "matplotlib", "seaborn", "networkx", "lifelines",
               "sklearn", "statsmodels", "yaml", "umap", "pooch", "requests", "rdata", "tifffile"]
    code = ("import sys\n"
            f"sys.modules.update(dict.fromkeys({blocked!r}))  # as if not installed\n"
            "import gbhet_lib.fusion.stage, gbhet_lib.fusion.train, gbhet_lib.fusion.report\n"
            "from gbhet_lib.cli import main\n"
            "try:\n    main(['train-fusion', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--variant" in done.stdout and "torchrun" in done.stdout


@pytest.mark.requires_gpu("bf16 autocast path")  # skips without CUDA; fails with GBHET_REQUIRE_GPU=1
def test_bf16_training_on_the_gpu_tracks_fp32(tmp_path: Path) -> None:
    data = tiny_pairs()
    image_encoder, rna_encoder = tiny_encoders()
    histories = {}
    for bf16 in (False, True):
        config = variant_config("frozen", **TINY_FUSION, device="cuda", amp_bf16=bf16)
        histories[bf16] = train_fusion(config, data, image_encoder, rna_encoder, tmp_path / str(bf16),
                                       progress=False)
    np.testing.assert_allclose(histories[True]["train_itc"], histories[False]["train_itc"], rtol=0.05)
    assert (histories[True]["pairs_per_s"] > 0).all()
