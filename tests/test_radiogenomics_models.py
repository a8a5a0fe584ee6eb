"""Chapter 8 models (Smedley et al. 2020): networks, training, comparators, cross-validation and AUC intervals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from gbhet_lib.config import ConfigError
from gbhet_lib.mri.traits import TRAITS
from gbhet_lib.radiogenomics import comparators, crossval
from gbhet_lib.radiogenomics.comparators import comparator_grids, comparator_scores, fit_comparator
from gbhet_lib.radiogenomics.crossval import (auc_difference_ci, auc_with_ci, cross_validated_comparator,
                                              cross_validated_network, fold_aucs, stratified_folds)
from gbhet_lib.radiogenomics.networks import (PAPER_TRAIT_SETTINGS, AutoencoderConfig, ClassifierConfig,
                                              GeneAutoencoder, TraitNet)
from gbhet_lib.radiogenomics.training import fit_autoencoder, fit_classifier, predict_logits, reconstruction_r2

G = 200
HIDDEN = (64, 32, 16)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models are overhead-bound: extra torch/BLAS threads only contend for the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def _cohort(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, G) expression with a shared 20-factor structure (so an autoencoder has something to learn)."""
    loadings = np.random.default_rng(1).standard_normal((20, G)) * 0.5
    return (rng.standard_normal((n, 20)) @ loadings + rng.standard_normal((n, G))).astype(np.float32)


@pytest.fixture(scope="module")
def planted():
    """160 imaging patients whose label is a noisy 10-gene score, and 150 autoencoder patients (no labels)."""
    rng = np.random.default_rng(0)
    x_ae, x = _cohort(rng, 150), _cohort(rng, 160)
    score = ((x - x.mean(0)) / x.std(0))[:, :10].sum(1)
    y = (score + rng.standard_normal(160) * 0.3 * np.sqrt(10) > np.median(score)).astype(np.int64)
    scaler = StandardScaler().fit(x_ae)
    ae, history = fit_autoencoder(scaler.transform(x_ae), AutoencoderConfig(hidden=HIDDEN, epochs=30, patience=10))
    return {"x": x, "y": y, "x_ae": x_ae, "scaler": scaler, "ae": ae, "ae_history": history}


def _small(n: int = 60, genes: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, genes)).astype(np.float32)
    y = (x[:, :3].sum(1) + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    return x, y


# ----------------------------------------------------------------------------------------------------- networks
def test_autoencoder_every_layer_is_linear_batchnorm_tanh():
    ae = GeneAutoencoder(30, (16, 8, 4))
    linears = ae.encoder_linears()
    assert [(m.in_features, m.out_features) for m in linears] == [(30, 16), (16, 8), (8, 4)]
    decoder = list(ae.decoder)
    assert [type(m) for m in decoder] == [nn.Linear, nn.BatchNorm1d, nn.Tanh] * 3
    assert (decoder[-3].in_features, decoder[-3].out_features) == (16, 30)  # reconstruction layer: BN → tanh too
    out = ae.eval()(torch.randn(5, 30) * 10)
    assert out.shape == (5, 30) and out.abs().max() < 1


def test_traitnet_shapes_and_paper_configs():
    x = torch.randn(7, 30)
    assert TraitNet(30, (16, 8, 4)).eval()(x).shape == (7,)
    assert TraitNet(30, (16, 8, 4), activation="sigmoid", n_classes=4).eval()(x).shape == (7, 4)
    assert set(PAPER_TRAIT_SETTINGS) == set(TRAITS)
    assert PAPER_TRAIT_SETTINGS["enhancing"] == (0.6, 0) and PAPER_TRAIT_SETTINGS["infiltrative"] == (0.0, 2)
    paper = ClassifierConfig.paper("ncet")
    assert (paper.hidden, paper.dropout, paper.frozen_layers, paper.epochs, paper.batch_size) == \
        ((4000, 2000, 1000), 0.0, 1, 500, 10)
    subtype = ClassifierConfig.subtype_paper()
    assert (subtype.hidden, subtype.activation, subtype.dropout, subtype.ae_init, subtype.n_classes) == \
        ((3000, 1500, 750), "sigmoid", 0.4, False, 4)
    assert AutoencoderConfig.paper().hidden == (4000, 2000, 1000)
    with pytest.raises(ValueError, match="no published settings"):
        ClassifierConfig.paper("multifocal")
    with pytest.raises(ConfigError, match="frozen_layers"):
        ClassifierConfig(frozen_layers=3)
    with pytest.raises(ConfigError, match="ae_init=True"):
        ClassifierConfig(ae_init=False, frozen_layers=1)


def test_from_autoencoder_copies_encoder_and_frozen_layers_never_change():
    x, y = _small()
    ae = GeneAutoencoder(30, (16, 8, 4))
    config = ClassifierConfig(hidden=(16, 8, 4), frozen_layers=2, epochs=5, patience=5)
    net = TraitNet.from_autoencoder(ae, config)
    for mine, theirs in zip(net.linears, ae.encoder_linears()):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    assert [layer.weight.requires_grad for layer in net.linears] == [False, False, True]
    model, history = fit_classifier(x[:40], y[:40], x[40:], y[40:], config, ae=ae)
    for i, theirs in enumerate(ae.encoder_linears()):
        same = torch.equal(model.linears[i].weight, theirs.weight)
        assert same == (i < 2), f"layer {i + 1}: frozen layers must keep the autoencoder's weights, the rest train"
    with pytest.raises(ValueError, match="hidden widths"):
        TraitNet.from_autoencoder(ae, ClassifierConfig(hidden=(16, 8)))
    with pytest.raises(ValueError, match="pass ae="):
        fit_classifier(x[:40], y[:40], x[40:], y[40:], config)


def test_dropout_acts_on_the_input_in_training_only():
    net = TraitNet(50, (16, 8, 4), dropout=0.5)
    x = torch.randn(20, 50, requires_grad=True)
    net.train()(x).sum().backward()
    dropped = (x.grad == 0).float().mean().item()  # a dropped input entry gets exactly zero gradient
    assert 0.35 < dropped < 0.65
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


# ----------------------------------------------------------------------------------------------------- training
def test_fit_classifier_restores_the_best_epoch():
    x, y = _small(80)
    config = ClassifierConfig(hidden=(16, 8, 4), ae_init=False, epochs=15, patience=15, min_delta=0.0)
    model, history = fit_classifier(x[:50], y[:50], x[50:], y[50:], config)
    assert list(history.columns) == ["epoch", "train_loss", "val_auc", "best_epoch"]
    best = int(history["best_epoch"].iloc[0])
    assert history["val_auc"].iloc[best - 1] == pytest.approx(history["val_auc"].max())
    logits = predict_logits(model, x[50:])
    assert logits.shape == (30,) and not model.training
    assert roc_auc_score(y[50:], logits) == pytest.approx(history["val_auc"].iloc[best - 1], abs=1e-9)


def test_multiclass_classifier():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 30)
    x = (rng.standard_normal((90, 20)) + np.eye(3, 20)[y] * 2.5).astype(np.float32)
    order = rng.permutation(90)
    train, val = order[:60], order[60:]
    config = ClassifierConfig(hidden=(16, 8, 4), activation="sigmoid", ae_init=False, n_classes=3, epochs=25,
                              patience=25)
    model, history = fit_classifier(x[train], y[train], x[val], y[val], config)
    assert {"val_auc", "val_accuracy"} <= set(history.columns)
    assert predict_logits(model, x[val]).shape == (30, 3)
    assert history["val_auc"].max() > 0.8


def test_fit_autoencoder_restores_best_r2(planted):
    x = planted["scaler"].transform(planted["x_ae"]).astype(np.float32)
    ae, history = planted["ae"], planted["ae_history"]
    assert list(history.columns) == ["epoch", "train_loss", "val_mae", "val_r2", "n_train", "n_val", "best_epoch"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_r2"].max() > history["val_r2"].iloc[0] + 0.05  # it learns the shared factors
    val_rows = np.random.default_rng(0).permutation(len(x))[:int(history["n_val"].iloc[0])]  # config.seed 0
    best = int(history["best_epoch"].iloc[0])
    assert reconstruction_r2(x[val_rows], predict_logits(ae, x[val_rows])) == \
        pytest.approx(history["val_r2"].iloc[best - 1], abs=1e-6)


# -------------------------------------------------------------------------------------------- cross-validation
def test_planted_signal_is_found_and_the_null_is_not(planted):
    x, y, ae, scaler = planted["x"], planted["y"], planted["ae"], planted["scaler"]
    folds = stratified_folds(y, n_folds=5)
    config = ClassifierConfig(hidden=HIDDEN, epochs=30, patience=10, batch_size=16)
    result = cross_validated_network(x, y, folds, ae, config, scaler=scaler, paper_selection=False)
    assert result["oof_logits"].shape == (160,) and np.isfinite(result["oof_logits"]).all()
    assert result["honest_auc"] > 0.75 and np.isnan(result["paper_auc"])
    logit = cross_validated_comparator("logit_l2", x, y, folds)
    assert fold_aucs(y, logit, folds).mean() > 0.75

    null = np.random.default_rng(7).permutation(y)
    result = cross_validated_network(x, null, folds, ae, config, scaler=scaler)
    assert abs(result["honest_auc"] - 0.5) < 0.15
    # The paper's number is the maximum over epochs of the held-out AUC: biased up on a label with no signal. At
    # these sizes the mean over 5 folds was positive on 10 of 10 shuffles (0.03 to 0.12).
    assert result["optimism"] > 0
    assert result["paper_auc"] == pytest.approx(result["fold_auc_paper"].mean())
    assert set(result["history"]["selection"]) == {"honest", "paper"}


def test_comparators_never_see_held_out_rows(monkeypatch):
    x, y = _small(60, 12)
    seen = []

    class Recording(comparators.GridSearchCV):
        def fit(self, X, y=None, **params):
            seen.append(np.array(X))
            return super().fit(X, y, **params)

    monkeypatch.setattr(comparators, "GridSearchCV", Recording)
    folds = stratified_folds(y, n_folds=4)
    scores = cross_validated_comparator("logit_l2", x, y, folds)
    assert len(seen) == 4 and np.isfinite(scores).all()
    for k, rows in enumerate(seen):
        assert np.array_equal(rows, x[folds != k].astype(np.float64))


def test_l1_logistic_really_is_l1():
    x, y = _small(100, 60)
    l1, _ = comparator_grids("demo")["logit_l1"]
    l2, _ = comparator_grids("demo")["logit_l2"]
    zeros_l1 = (l1.set_params(model__C=0.05).fit(x, y).named_steps["model"].coef_ == 0).mean()
    zeros_l2 = (l2.set_params(model__C=0.05).fit(x, y).named_steps["model"].coef_ == 0).mean()
    assert zeros_l1 > 0.5 and zeros_l2 == 0


def test_comparator_scores_rank_the_planted_signal():
    x, y = _small(80, 20)
    for name in ("rf", "svm"):
        estimator = fit_comparator(name, x[:60], y[:60])
        assert roc_auc_score(y[60:], comparator_scores(estimator, x[60:])) > 0.7, name
    assert len(comparator_grids("paper")["svm"][1]["model__C"]) == 2000
    with pytest.raises(ValueError, match="not a comparator"):
        fit_comparator("xgboost", x, y)


def test_stratified_folds():
    y = np.array([0] * 30 + [1] * 12)
    folds = stratified_folds(y, n_folds=10)
    assert np.array_equal(folds, stratified_folds(y, n_folds=10))
    assert all(set(y[folds == k]) == {0, 1} for k in range(10))
    with pytest.raises(ValueError, match=r"ncet: class\(es\) \{1: 5\}.*lower n_folds to at most 5"):
        stratified_folds(np.array([0] * 30 + [1] * 5), n_folds=10, name="ncet")


# --------------------------------------------------------------------------------------------------- intervals
def test_auc_intervals():
    rng = np.random.default_rng(0)

    def draw(n):
        y = np.repeat([0, 1], n // 2)
        return y, y + rng.standard_normal(n) * 1.5

    y, s = draw(40)
    auc, (lo, hi) = auc_with_ci(y, s, n_boot=500)
    assert auc == pytest.approx(roc_auc_score(y, s)) and lo < auc < hi
    y_big, s_big = draw(400)
    auc_big, (lo_big, hi_big) = auc_with_ci(y_big, s_big, n_boot=500)
    assert lo_big < auc_big < hi_big and hi_big - lo_big < (hi - lo) / 2

    diff, (dlo, dhi) = auc_difference_ci(y_big, s_big, rng.standard_normal(400), n_boot=500)
    assert dlo > 0 and dlo < diff < dhi
    assert auc_difference_ci(y, s, s, n_boot=100) == (0.0, (0.0, 0.0))


def test_bootstrap_auc_matches_sklearn_with_ties():
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    s = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.2, 0.9, 0.8])
    draws = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [1, 1, 2, 2, 3, 7, 7, 4], [0, 0, 0, 0, 0, 0, 0, 0]])
    aucs = crossval._boot_aucs(y, s, draws)
    assert aucs[0] == pytest.approx(roc_auc_score(y, s))
    assert aucs[1] == pytest.approx(roc_auc_score(y[draws[1]], s[draws[1]]))
    assert np.isnan(aucs[2])  # one class: skipped
