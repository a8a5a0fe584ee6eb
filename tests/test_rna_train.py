"""RNA encoder training: token data, pre-training, exact resume, strict loading, evaluation, survival head.

Tiny models on synthetic token data, on the CPU (random initialisation; no pretrained weights).
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gbhet_lib.rna.train as rna_train
from gbhet_lib.config import ConfigError
from gbhet_lib.rna.model import ClusterTokenTransformer, SurvivalHead
from gbhet_lib.rna.train import PretrainConfig, SurvivalConfig, TokenData, embed, evaluate_pretraining, load_model, \
    load_weights, predict_survival, pretrain, read_checkpoint, train_survival

TINY = PretrainConfig(epochs=3, batch_size=16, dim=16, heads=2, proj_dim=8, seed=3)


def _expression(n: int = 96, seed: int = 0) -> pd.DataFrame:
    """Samples × 24 genes driven by 2 latent factors, plus noise."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 24)) + 0.3 * rng.normal(size=(n, 24))
    return pd.DataFrame(values, index=[f"s{i}" for i in range(n)], columns=[f"g{j}" for j in range(24)])


TOKENS = {"a": [f"g{j}" for j in range(0, 8)], "b": [f"g{j}" for j in range(8, 18)],
          "c": [f"g{j}" for j in range(18, 24)]}


@pytest.fixture(scope="module")
def data() -> TokenData:
    return TokenData.from_frame(_expression(), TOKENS)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------------- token data
def test_token_data_from_frame(data: TokenData) -> None:
    assert data.token_sizes == [8, 10, 6] and len(data) == 96 and data.token_names == ("a", "b", "c")
    first = data.tensors()[1]
    assert first.dtype == torch.float32
    np.testing.assert_array_equal(first.numpy(), _expression()[TOKENS["b"]].to_numpy(np.float32))
    assert data.subset([1, 2]).samples == ("s1", "s2")


def test_missing_genes_are_named() -> None:
    with pytest.raises(KeyError, match=r"token 'b': 2 gene\(s\) not in the expression columns.*'x1', 'x2'"):
        TokenData.from_frame(_expression(), {"a": ["g0"], "b": ["g1", "x1", "x2"]})


def test_bad_values_are_named() -> None:
    frame = _expression(8)
    frame.iloc[3, 2] = np.nan
    with pytest.raises(ValueError, match="sample 's3', gene 'g2'"):
        TokenData.from_frame(frame, TOKENS)
    frame = _expression(8).astype(object)  # numbers stored as objects are fine, text is not
    frame.iloc[2, 5] = "high"
    with pytest.raises(ValueError, match=r"1 gene column\(s\) hold non-numeric values, e.g. \['g5'\]"):
        TokenData.from_frame(frame, TOKENS)
    with pytest.raises(ValueError, match="column indices"):
        TokenData(np.zeros((4, 3)), [[0, 3]])


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="amp_bf16"):
        PretrainConfig(amp_bf16=True)
    with pytest.raises(ConfigError, match="reconstruction"):
        PretrainConfig(reconstruction="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="loss"):
        SurvivalConfig(loss="l1")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- pre-training
def test_pretraining_loss_decreases(data: TokenData, tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, epochs=8, lr=3e-3, warmup_epochs=0, dropout=0.1, reconstruction="mean",
                                 symmetric=True)
    history = pretrain(config, data.subset(range(80)), data.subset(range(80, 96)), tmp_path, progress=False)
    assert list(history["epoch"]) == list(range(8))
    assert history["train_loss"].iloc[-1] < 0.7 * history["train_loss"].iloc[0]
    assert history["train_reconstruction"].iloc[-1] < 0.7 * history["train_reconstruction"].iloc[0]
    last = history.iloc[-1]
    assert last["val_reconstruction"] < last["val_baseline_reconstruction"]  # better than predicting gene means
    assert last["val_contrastive"] < last["val_contrastive_chance"]
    assert (tmp_path / "history.tsv").exists()
    model = load_model(tmp_path / "last.pt")
    assert isinstance(model, ClusterTokenTransformer) and not model.training
    assert embed(model, data, batch_size=40).shape == (96, 16)
    projection = embed(model, data, output="projection")
    np.testing.assert_allclose(np.linalg.norm(projection, axis=1), 1, rtol=1e-5)
    token_outputs = embed(model, data, batch_size=40, output="tokens")  # K = 3 outputs of 16, token order
    assert token_outputs.shape == (96, 3 * 16)
    with torch.no_grad():
        out = model(data.tensors())
    np.testing.assert_allclose(token_outputs[:, 16:32], out.tokens[:, 2].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'cls', 'projection' or 'tokens'"):
        embed(model, data, output="mean")  # type: ignore[arg-type]


def test_interrupted_run_resumes_bit_identically(data: TokenData, tmp_path: Path, kill_training_at) -> None:
    config = dataclasses.replace(TINY, learnable_temperature=True, temperature=0.05)  # τ, dropout, masks all live
    train, val = data.subset(range(80)), data.subset(range(80, 96))
    whole = pretrain(config, train, val, tmp_path / "whole", progress=False)

    revive = kill_training_at(rna_train, epoch=2, batch=2)  # half-way through the last epoch
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, train, val, tmp_path / "resumed", progress=False)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    revive()
    resumed = pretrain(config, train, val, tmp_path / "resumed", progress=False)

    assert _same_weights(load_model(tmp_path / "whole" / "last.pt"), load_model(tmp_path / "resumed" / "last.pt"))
    a, b = (read_checkpoint(tmp_path / d / "last.pt")["modules"]["temperature"] for d in ("whole", "resumed"))
    assert torch.equal(a["log_tau"], b["log_tau"]) and a["log_tau"] != np.log(0.05)  # τ was learned, same τ
    timing = ["train_seconds"]
    pd.testing.assert_frame_equal(whole.drop(columns=timing), resumed.drop(columns=timing))
    # a finished run is not trained again
    again = pretrain(config, train, val, tmp_path / "resumed", progress=False)
    pd.testing.assert_frame_equal(again.drop(columns=timing), whole.drop(columns=timing))


def test_resume_refuses_another_config(data: TokenData, tmp_path: Path) -> None:
    pretrain(dataclasses.replace(TINY, epochs=1), data, None, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"another run \(config"):
        pretrain(dataclasses.replace(TINY, epochs=1, lr=1e-3), data, None, tmp_path, progress=False)


def test_strict_loading_names_what_does_not_fit(data: TokenData, tmp_path: Path) -> None:
    pretrain(dataclasses.replace(TINY, epochs=1), data, None, tmp_path, progress=False)
    state = read_checkpoint(tmp_path / "last.pt")["modules"]["model"]
    other_tokens = ClusterTokenTransformer([8, 10, 7], dim=16, heads=2, proj_dim=8)
    with pytest.raises(ValueError, match=r"shape mismatch: \['embedder.2.0.weight \(16, 6\) in ck.pt vs \(16, 7\)"):
        load_weights(other_tokens, state, "ck.pt")
    fitting = ClusterTokenTransformer([8, 10, 6], dim=16, heads=2, proj_dim=8)
    with pytest.raises(ValueError, match=r"missing: \['proj_head.bias'\]"):
        load_weights(fitting, {k: v for k, v in state.items() if k != "proj_head.bias"}, "ck.pt")
    with pytest.raises(ValueError, match=r"unexpected: \['extra'\]"):
        load_weights(fitting, {**state, "extra": torch.zeros(1)}, "ck.pt")
    load_weights(fitting, state, "ck.pt")
    assert _same_weights(fitting, load_model(tmp_path / "last.pt"))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a gbhet RNA checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_evaluation_reports_losses_and_a_mean_baseline(data: TokenData) -> None:
    torch.manual_seed(0)
    model = ClusterTokenTransformer(data.token_sizes, dim=16, heads=2, proj_dim=8).train()
    metrics = evaluate_pretraining(model, data, data, TINY, batch_size=len(data))
    assert model.training  # mode restored
    # predicting each gene's mean: per token the summed population variances of its genes, then the mean
    variances = data.values.var(axis=0)
    expected = np.mean([variances[idx].sum() for idx in data.token_index])
    assert metrics["baseline_reconstruction"] == pytest.approx(expected, rel=1e-5)
    assert metrics["contrastive_chance"] == pytest.approx(np.log(96))
    assert metrics["loss"] == pytest.approx(metrics["reconstruction"] + metrics["contrastive"], rel=1e-6)
    assert metrics == evaluate_pretraining(model, data, data, TINY, batch_size=len(data))  # fixed masks
    with pytest.raises(ValueError, match="other tokens"):
        evaluate_pretraining(model, TokenData(data.values, data.token_index[:2]), data, TINY)


# ------------------------------------------------------------------------------------------------- survival
def _survival_targets(data: TokenData, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Times driven by the first token's mean (high = short; log-hazard ratio 2 per SD), 25 % censored."""
    rng = np.random.default_rng(seed)
    score = data.values[:, data.token_index[0]].mean(axis=1)
    time = rng.exponential(np.exp(-2 * score / score.std()))
    return time, (rng.random(len(data)) > 0.25).astype(int)


def test_frozen_survival_head_leaves_the_encoder_untouched(data: TokenData, tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = ClusterTokenTransformer(data.token_sizes, dim=16, heads=2, proj_dim=8)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    time, event = _survival_targets(data)
    config = SurvivalConfig(epochs=2, batch_size=16, lr=1e-2, freeze_encoder=True, hidden_dim=8)
    train_survival(config, data, time, event, encoder, tmp_path, progress=False)
    trained = load_model(tmp_path / "last.pt")
    assert isinstance(trained, SurvivalHead)
    after = trained.encoder.state_dict()  # weights and BatchNorm running statistics alike
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert int(after["embedder.0.2.num_batches_tracked"]) == 0
    assert all(p.requires_grad for p in encoder.parameters())  # the argument was copied, not frozen
    head = SurvivalHead(ClusterTokenTransformer(data.token_sizes, dim=16, heads=2, proj_dim=8), hidden_dim=8)
    assert not all(torch.equal(a, b) for a, b in zip(trained.head.parameters(), head.parameters()))


def test_cox_training_learns_the_risk(data: TokenData, tmp_path: Path) -> None:
    time, event = _survival_targets(data)
    encoder = ClusterTokenTransformer(data.token_sizes, dim=16, heads=2, proj_dim=8, dropout=0.1)
    config = SurvivalConfig(epochs=10, batch_size=32, lr=1e-2, warmup_epochs=0, hidden_dim=8)
    history = train_survival(config, data, time, event, encoder, tmp_path, progress=False)
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    risk = predict_survival(load_model(tmp_path / "last.pt"), data)
    true_score = data.values[:, data.token_index[0]].mean(axis=1)
    assert np.corrcoef(risk, true_score)[0, 1] > 0.5


def test_survival_options_and_bad_targets(data: TokenData, tmp_path: Path) -> None:
    time, event = _survival_targets(data)
    encoder = ClusterTokenTransformer(data.token_sizes, dim=16, heads=2, proj_dim=8)
    mse = SurvivalConfig(epochs=1, batch_size=16, loss="mse", hidden_dim=8)
    rows = range(81)  # the last batch holds one sample: BatchNorm cannot train on it, so it is skipped
    history = train_survival(mse, data.subset(rows), time[:81], event[:81], encoder, tmp_path / "mse", progress=False)
    assert list(history["epoch"]) == [0] and history["skipped_batches"].iloc[0] == 1
    rare = np.zeros(len(data), dtype=int)
    rare[0] = 1  # one event: every other batch has none and is skipped
    cox = SurvivalConfig(epochs=1, batch_size=16, hidden_dim=8)
    history = train_survival(cox, data, time, rare, encoder, tmp_path / "cox", progress=False)
    assert history["skipped_batches"].iloc[0] == 5
    with pytest.raises(ValueError, match="one value per sample"):
        train_survival(cox, data, time[:-1], event, encoder, tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="1 \\(observed\\) or 0"):
        train_survival(cox, data, time, event * 2, encoder, tmp_path / "bad", progress=False)


@pytest.mark.requires_gpu("bf16 autocast path")  # skips without CUDA; fails with GBHET_REQUIRE_GPU=1
def test_bf16_pretraining_on_cuda(data: TokenData, tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, device="cuda", amp_bf16=True)
    history = pretrain(config, data, data, tmp_path, progress=False)
    assert np.isfinite(history["train_loss"]).all()
    assert embed(load_model(tmp_path / "last.pt", "cuda"), data, device="cuda").shape == (96, 16)


def test_training_modules_need_only_torch_numpy_pandas() -> None:
    """The GPU machine has no scanpy, anndata, openslide, networkx or scikit-learn."""
    heavy = ["scanpy", "anndata", "openslide", "networkx", "sklearn", "lifelines", "scipy", "h5py", "matplotlib"]
    code = ("import sys, gbhet_lib.rna.train, gbhet_lib.rna.losses, gbhet_lib.training.schedule; "
            f"print(sorted(set({heavy!r}) & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
