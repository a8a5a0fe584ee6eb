"""Early stopping in the one loop (a stop rule, a resume that remembers it, the best epoch's weights in best.pt),
the expression trainer under patient-level cross-validation (out-of-fold predictions, finished folds reused) and
the PCA + ridge baseline (a linear signal recovered, nothing fitted on test patients). Tiny models on the CPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gbhet_lib.training import BEST, CHECKPOINT, KeepBest, Run, TrainConfig, best_epoch, constant_lr, fit, \
    patience_stop
from gbhet_lib.training import expression
from gbhet_lib.training.expression import ExpressionTrainConfig, cross_validated_predictions, \
    fit_expression_model, gene_pearson, mean_gene_pearson, predict
from gbhet_lib.training.ridge_baseline import ridge_cv_predictions


def history(values: list[float], column: str = "val_r") -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(len(values)), column: values})


# ---------------------------------------------------------------------------------------------- stop rules
def test_patience_stop_and_best_epoch() -> None:
    stop = patience_stop("val_r", 2, "max")
    assert not stop(history([]))
    assert not stop(history([0.1, 0.3, 0.2]))  # one epoch without improvement
    assert stop(history([0.1, 0.3, 0.2, 0.3]))  # a tie is no improvement: two epochs since epoch 1
    assert not stop(history([0.1, 0.3, 0.2, 0.4]))
    assert stop(history([float("nan"), float("nan")]))  # never a finite value: no improvement either
    assert patience_stop("val_mse", 1, "min")(history([3.0, 2.0, 2.5], "val_mse"))
    assert not patience_stop("val_mse", 1, "min")(history([3.0, 2.5, 2.0], "val_mse"))
    assert best_epoch(history([0.1, 0.3, 0.3]), "val_r", "max") == 1  # first of ties
    assert best_epoch(history([float("nan")]), "val_r", "max") is None
    with pytest.raises(ValueError, match="mode="):
        patience_stop("val_r", 2, "maximum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="patience="):
        patience_stop("val_r", 0)
    with pytest.raises(KeyError, match="no column 'val_r'"):
        patience_stop("val_r", 2)(history([1.0], "val_loss"))


def test_min_epochs_holds_off_the_stop_however_early_the_peak() -> None:
    early_peak = [0.3, 0.0, 0.0, 0.0, 0.0, 0.0]  # a noisy first epoch, then a model still learning
    assert patience_stop("val_r", 2)(history(early_peak[:3]))
    floor = patience_stop("val_r", 2, min_epochs=5)
    assert not floor(history(early_peak[:3])) and not floor(history(early_peak[:4]))
    assert floor(history(early_peak[:5]))  # the floor reached, patience long exhausted
    with pytest.raises(ValueError, match="min_epochs="):
        patience_stop("val_r", 2, min_epochs=-1)
    with pytest.raises(ValueError, match="min_epochs="):
        ExpressionTrainConfig(min_epochs=-1)


class Scripted:
    """A run of a 1-parameter model whose 'validation score' follows a script; records the weights per epoch."""

    def __init__(self, scores: list[float], epochs: int = 8) -> None:
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1)
        self.scores, self.weights, self.steps = scores, [], 0
        self.run = Run("test/1", "test", "test", TrainConfig(epochs=epochs, batch_size=2, warmup_epochs=0),
                       {}, {"model": self.model})

    def step(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        self.steps += 1
        return {"loss": (self.model(torch.ones(len(rows), 1)) - 3).pow(2).mean()}

    def evaluate(self) -> dict[str, float]:
        self.weights.append(self.model.weight.detach().clone())
        return {"r": self.scores[len(self.weights) - 1]}

    def fit(self, folder: Path, stop) -> pd.DataFrame:
        return fit(self.run, 4, self.step, self.evaluate, folder, False, constant_lr, stop=stop)


def test_fit_stops_and_a_resume_trains_no_further(tmp_path: Path) -> None:
    first = Scripted([0.0] * 8)
    out = first.fit(tmp_path, lambda h: len(h) >= 3)
    assert len(out) == 3 and first.steps == 3 * 2
    mtime = (tmp_path / CHECKPOINT).stat().st_mtime_ns
    again = Scripted([0.0] * 8)
    out = again.fit(tmp_path, lambda h: len(h) >= 3)
    assert len(out) == 3 and again.steps == 0 and (tmp_path / CHECKPOINT).stat().st_mtime_ns == mtime
    assert torch.equal(again.model.weight, first.model.weight)  # the checkpoint's weights were loaded
    rest = Scripted([0.0] * 8)  # without the rule the same checkpoint trains on to the last epoch
    assert len(rest.fit(tmp_path, None)) == 8 and rest.steps == 5 * 2


def test_keep_best_restores_the_best_epoch_and_survives_a_kill(tmp_path: Path) -> None:
    scores = [0.1, 0.2, 0.5, 0.3, 0.4, 0.45, 0.2, 0.1]
    whole = Scripted(scores)
    keep = KeepBest(tmp_path / "whole", {"model": whole.model}, "val_r", "max", patience=3)
    out = whole.fit(tmp_path / "whole", keep)
    assert out["epoch"].tolist() == [0, 1, 2, 3, 4, 5]  # best at 2, three epochs without improvement
    assert keep.restore(out) == 2 and torch.equal(whole.model.weight, whole.weights[2])
    assert not torch.equal(whole.weights[2], whole.weights[5])

    # killed right after epoch 2's last.pt, before best.pt caught up: the resume saves epoch 2's weights
    folder = tmp_path / "killed"
    killed = Scripted(scores)
    rule = KeepBest(folder, {"model": killed.model}, "val_r", "max", patience=3)

    def dying(h: pd.DataFrame) -> bool:
        if len(h) == 3:
            raise KeyboardInterrupt
        return rule(h)

    with pytest.raises(KeyboardInterrupt):
        killed.fit(folder, dying)
    assert torch.load(folder / BEST, weights_only=True)["epoch"] == 1
    resumed = Scripted(scores)
    resumed.weights = [None] * 3  # the script continues at epoch 3
    rule = KeepBest(folder, {"model": resumed.model}, "val_r", "max", patience=3)
    out = resumed.fit(folder, rule)
    assert rule.restore(out) == 2 and torch.equal(resumed.model.weight, whole.weights[2])
    # a best.pt without last.pt is left over from another run: removed when a rule is made
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / BEST).write_bytes((folder / BEST).read_bytes())
    KeepBest(tmp_path / "stale", {"model": resumed.model}, "val_r")
    assert not (tmp_path / "stale" / BEST).exists()

    # a floor of 7 epochs: the same scores run on to epoch 6, and the best weights are still epoch 2's
    floored = Scripted(scores)
    keep = KeepBest(tmp_path / "floor", {"model": floored.model}, "val_r", "max", patience=3, min_epochs=7)
    out = floored.fit(tmp_path / "floor", keep)
    assert out["epoch"].tolist() == list(range(7)) and keep.restore(out) == 2
    assert torch.equal(floored.model.weight, floored.weights[2])


# ------------------------------------------------------------------------------------------- the trainer
def toy_problem(n: int = 60, d: int = 6, g: int = 4, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=(d, g)) + 0.3 * rng.normal(size=(n, g))).astype(np.float32)
    return torch.from_numpy(x), y


def mlp(d: int, g: int, means: np.ndarray) -> nn.Module:
    model = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, g))
    with torch.no_grad():
        model[-1].bias.copy_(torch.from_numpy(means))
    return model


CONFIG = ExpressionTrainConfig(epochs=25, patience=5, batch_size=16, lr=1e-2, seed=0)


def test_gene_pearson_skips_constant_targets() -> None:
    truth = np.array([[1.0, 2.0, 5.0], [2.0, 2.0, 6.0], [3.0, 2.0, 7.0]])
    pred = np.array([[1.0, 0.0, 1.0], [3.0, 1.0, 1.0], [2.0, 2.0, 1.0]])
    r = gene_pearson(pred, truth)
    assert r[0] == pytest.approx(0.5) and np.isnan(r[1]) and r[2] == 0.0  # constant prediction: r = 0
    assert mean_gene_pearson(pred, truth) == pytest.approx(0.25)


def test_fit_expression_model_restores_the_best_epoch(tmp_path: Path) -> None:
    x, y = toy_problem()
    train, val = np.arange(0, 48), np.arange(48, 60)
    torch.manual_seed(0)
    transformed = []
    noisy = lambda args: (transformed.append(len(args[0])) or args[0] + 0.01 * torch.randn_like(args[0]),)  # noqa
    model, out = fit_expression_model(mlp(6, 4, y[train].mean(0)), lambda rows: (x[rows],), y, train, val,
                                      CONFIG, tmp_path, train_transform=noisy)
    assert sum(transformed) == 48 * len(out)  # every training step, never the validation
    best = int(out["best_epoch"].iloc[0])
    assert best == int(out.loc[out["val_r"].idxmax(), "epoch"]) and not model.training
    assert mean_gene_pearson(predict(model, lambda rows: (x[rows],), val), y[val]) == \
        pytest.approx(out["val_r"].max(), abs=1e-6)
    assert {"train_loss", "val_r", "val_mse", "best_epoch"} <= set(out.columns)
    with pytest.raises(ValueError, match="overlap"):
        fit_expression_model(mlp(6, 4, y.mean(0)), lambda rows: (x[rows],), y, train, train[:5], CONFIG,
                             tmp_path / "x")


def test_cross_validated_predictions_are_out_of_fold_and_finished_folds_are_reused(tmp_path: Path) -> None:
    x, y = toy_problem()
    folds = np.arange(len(y)) % 3
    built: list[np.ndarray] = []

    def make_model(train_rows: np.ndarray) -> nn.Module:
        built.append(train_rows)
        return mlp(6, 4, y[train_rows].mean(0))

    inputs = lambda rows: (x[rows],)  # noqa: E731
    oof, table = cross_validated_predictions(make_model, inputs, y, folds, 0.1, CONFIG, tmp_path)
    assert oof.shape == y.shape and np.isfinite(oof).all()
    assert len(built) == 3
    for k, train_rows in enumerate(built):
        assert not np.isin(train_rows, np.flatnonzero(folds == k)).any()  # never trained on its test patients
        assert len(train_rows) == 40 - 4  # 10 % of the 40 others (4) kept for early stopping
        r = mean_gene_pearson(oof[folds == k], y[folds == k])
        assert r > 0.5, (k, r)
    assert table["fold"].unique().tolist() == [0, 1, 2]
    assert {"epoch", "val_r", "best_epoch", "n_train", "n_val", "n_test"} <= set(table.columns)
    assert table.groupby("fold")["n_test"].first().sum() == len(y)  # every patient predicted exactly once

    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again, table2 = cross_validated_predictions(make_model, inputs, y, folds, 0.1, CONFIG, tmp_path)
    assert len(built) == 3  # no model built: every fold was finished
    assert np.array_equal(again, oof) and table2[["fold", "epoch", "val_r"]].equals(table[["fold", "epoch", "val_r"]])
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="another split"):
        cross_validated_predictions(make_model, inputs, y, (folds + 1) % 3, 0.1, CONFIG, tmp_path)


def test_a_killed_cross_validation_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = toy_problem()
    folds = np.arange(len(y)) % 2
    make_model = lambda rows: mlp(6, 4, y[rows].mean(0))  # noqa: E731
    inputs = lambda rows: (x[rows],)  # noqa: E731
    whole, _ = cross_validated_predictions(make_model, inputs, y, folds, 0.1, CONFIG, tmp_path / "whole")
    hits = []

    def dying(epoch: int, batch: int, *args: float) -> float:  # the second fold dies at epoch 3, second batch
        if (epoch, batch) == (3, 1):
            hits.append(epoch)
            if len(hits) == 2:
                raise KeyboardInterrupt
        return constant_lr(epoch, batch, *args)

    monkeypatch.setattr(expression, "constant_lr", dying)
    with pytest.raises(KeyboardInterrupt):
        cross_validated_predictions(make_model, inputs, y, folds, 0.1, CONFIG, tmp_path / "killed")
    assert (tmp_path / "killed" / "fold0" / "predictions.npy").exists()
    assert not (tmp_path / "killed" / "fold1" / "predictions.npy").exists()
    monkeypatch.setattr(expression, "constant_lr", constant_lr)
    resumed, table = cross_validated_predictions(make_model, inputs, y, folds, 0.1, CONFIG, tmp_path / "killed")
    assert np.array_equal(resumed, whole)


# ---------------------------------------------------------------------------------------------------- ridge
def test_ridge_recovers_a_linear_signal_without_seeing_test_patients() -> None:
    rng = np.random.default_rng(1)
    n, d, g = 90, 40, 5
    latent = rng.normal(size=(n, 4))  # features of rank 4 + noise, targets linear in 3 of the latent factors
    x = latent @ rng.normal(size=(4, d)) + 0.1 * rng.normal(size=(n, d))
    y = latent[:, :3] @ rng.normal(size=(3, g)) + 0.3 * rng.normal(size=(n, g))
    folds = np.arange(n) % 3
    pred = ridge_cv_predictions(x, y, folds, n_components=20)
    assert pred.shape == (n, g) and all(mean_gene_pearson(pred[folds == k], y[folds == k]) > 0.8
                                        for k in range(3))
    test = folds == 0
    # the test patients' targets are never used for their own predictions
    y2 = y.copy()
    y2[test] = rng.normal(size=(int(test.sum()), g)) * 100
    assert np.allclose(ridge_cv_predictions(x, y2, folds, n_components=20)[test], pred[test], atol=1e-5)
    # nor their features for fitting: one test patient moved far away changes no other test prediction
    # (a scaler or PCA fitted with the test rows would move every one of them)
    x2 = x.copy()
    first = np.flatnonzero(test)[0]
    x2[first] += 50
    moved = ridge_cv_predictions(x2, y, folds, n_components=20)
    others = np.flatnonzero(test)[1:]
    assert np.allclose(moved[others], pred[others], atol=1e-5)
    assert not np.allclose(moved[first], pred[first])
    with pytest.raises(ValueError, match="folds"):
        ridge_cv_predictions(x, y, np.zeros(n, dtype=int))


def test_the_trainers_need_no_heavy_imports() -> None:
    code = ("import sys, gbhet_lib.training.expression, gbhet_lib.wsi.he2rna; "
            "print(sorted({'sklearn', 'scipy', 'scanpy', 'anndata', 'monai', 'openslide'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
