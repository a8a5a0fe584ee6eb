"""Chapter 8 interpretation (Smedley et al. 2020): gene masking, saliency and its enrichment, radiogenomic traits and
their survival, on planted problems where the answer is known by construction."""
from __future__ import annotations

import gseapy
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from gbhet_lib.interpret.radiogenomic_survival import stepwise_cox, trait_survival
from gbhet_lib.interpret.radiogenomics import (_auc_ap, best_set_per_class, cohort_enrichment, enrichment_matrix,
                                               gene_saliency, mask_gene_sets, mask_single_genes, model_score_fn,
                                               per_patient_enrichment, radiogenomic_traits, random_gene_sets,
                                               share_in_set, top_genes_per_class)

N, G, SET_SIZE = 200, 300, 30
# Names in a shuffled order, so that a ranking tied by name (a broken method) does not put set A first.
GENES = [f"G{i:03d}" for i in np.random.default_rng(42).permutation(G)]
SETS = {name: GENES[k * SET_SIZE:(k + 1) * SET_SIZE] for k, name in enumerate("ABCDEF")}  # columns 180.. in no set


def _expression(seed: int) -> np.ndarray:
    """(N, G) z-scores: each set is a module (genes share one latent factor, correlation ~0.6); the rest is noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, G))
    for k in range(len(SETS)):
        x[:, k * SET_SIZE:(k + 1) * SET_SIZE] = 0.8 * rng.standard_normal((N, 1)) + 0.6 * x[:, k * SET_SIZE:
                                                                                              (k + 1) * SET_SIZE]
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def _module_mean(x: np.ndarray, name: str) -> np.ndarray:
    k = "ABCDEF".index(name)
    return x[:, k * SET_SIZE:(k + 1) * SET_SIZE].mean(axis=1)


@pytest.fixture(scope="module")
def binary() -> tuple[np.ndarray, np.ndarray, torch.nn.Module]:
    """Label driven by set A only (logit = 3 · mean of A's genes + noise) and a tiny tanh net fitted to it."""
    x = _expression(0)
    rng = np.random.default_rng(1)
    y = (3 * _module_mean(x, "A") + rng.standard_normal(N) > 0).astype(int)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny full-batch steps: threads only add overhead on a busy machine
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(G, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        # strong L2 (coupled, Adam): shrinks the random initial weights of the 270 genes that carry no signal
        opt = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=0.3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).float()
        for _ in range(400):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return x, y, net


@pytest.fixture(scope="module")
def multiclass() -> tuple[np.ndarray, np.ndarray, LogisticRegression]:
    """Three classes, class c driven by its own set (A, B, C): the arg-max of the three module means + noise."""
    x = _expression(2)
    rng = np.random.default_rng(3)
    drive = np.stack([_module_mean(x, s) for s in "ABC"], axis=1) + 0.2 * rng.standard_normal((N, 3))
    y = drive.argmax(axis=1)
    return x, y, LogisticRegression(C=0.01, max_iter=2000).fit(x, y)


def test_auc_ap_equal_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50).astype(bool)
    scores = rng.integers(0, 6, (7, 50)).astype(float)  # many ties
    auc, ap = _auc_ap(y, scores)
    for row in range(7):
        assert auc[row] == pytest.approx(roc_auc_score(y, scores[row]), abs=1e-12)
        assert ap[row] == pytest.approx(average_precision_score(y, scores[row]), abs=1e-12)


def test_gene_set_masking_ranks_the_driving_set_first(binary) -> None:
    x, y, net = binary
    controls = random_gene_sets(GENES, sizes=(30, 60), exclude=[g for s in SETS.values() for g in s], seed=504)
    assert not set(controls["random_60"]) & set(GENES[:180]) and len(set(controls["random_60"])) == 60
    sets = {**SETS, **controls, "UNKNOWN": ["NOPE1", "NOPE2"], "HALF_A": SETS["A"][:10] + ["NOPE3"]}
    table = mask_gene_sets(model_score_fn(net), x, y, GENES, sets)
    assert list(table.columns) == ["set", "n_genes", "auc", "ap"]
    assert table["set"].iloc[0] == "A" and table["auc"].iloc[0] > 0.85
    assert table["auc"].is_monotonic_decreasing
    rows = table.set_index("set")
    assert rows.loc["HALF_A", "n_genes"] == 10 and rows.loc["HALF_A", "auc"] > 0.75  # unknown gene ignored
    for name in ("random_30", "random_60", "B", "C"):
        assert rows.loc[name, "auc"] < rows.loc["A", "auc"] - 0.15
    assert table.attrs["skipped"] == {"UNKNOWN": 0} and table.attrs["n_skipped"] == 1
    # A logit and its sigmoid give the same ranking, hence the same AUC/AP.
    raw = mask_gene_sets(model_score_fn(net, probabilities=False), x, y, GENES, SETS)
    pd.testing.assert_frame_equal(raw, mask_gene_sets(model_score_fn(net), x, y, GENES, SETS), atol=1e-6)


def test_single_gene_masking_puts_driver_genes_on_top(binary) -> None:
    x, y, net = binary
    table = mask_single_genes(model_score_fn(net), x, y, GENES, batch=64)
    assert list(table.columns) == ["gene", "auc", "ap"] and len(table) == G
    assert table["ap"].is_monotonic_decreasing
    share = share_in_set(table["gene"], SETS["A"], top=(10, 30))
    ranked = cohort_enrichment(table, SETS, permutations=100, min_size=15)  # ranked by single-gene AP
    assert ranked["set"].iloc[0] == "A" and ranked["nes"].iloc[0] > 1.5
    assert share["base_rate"] == pytest.approx(SET_SIZE / G)
    assert share["top_10"] == 1.0 and share["top_30"] >= 0.8
    with pytest.raises(ValueError, match="top=400 is outside 1..300"):
        share_in_set(table["gene"], SETS["A"], top=(400,))


def test_saliency_is_larger_on_driver_genes_and_enriched_per_patient(binary) -> None:
    x, y, net = binary
    sal = gene_saliency(net, x[:60])
    assert sal.shape == (60, G) and sal.min() >= 0 and np.allclose(sal.max(axis=1), 1.0)
    in_a = np.isin(GENES, SETS["A"])
    assert sal[:, in_a].mean() > 2 * sal[:, ~in_a].mean()
    raw = gene_saliency(net, x[:5], normalise=None)
    grad = torch.func.vmap(torch.func.grad(lambda v: net(v[None])[0, 0]))(torch.from_numpy(x[:5]))
    np.testing.assert_allclose(raw, grad.abs().detach().numpy(), rtol=1e-5, atol=1e-7)

    sal[3] = 0.0  # a patient without saliency is dropped
    ids = [f"P{i}" for i in range(60)]
    table = per_patient_enrichment(sal, GENES, SETS, permutations=200, min_size=15, seed=0, patients=ids)
    assert table.attrs["dropped_patients"] == ["P3"]
    share = table.groupby("set")["enriched"].mean()
    assert share["A"] >= 0.9
    assert share[["B", "C", "D", "E", "F"]].max() <= 0.1
    assert ((table["padj"] >= table["p"] - 1e-12) & (table["p"] >= 1 / 201)).all()
    cohort = cohort_enrichment(sal, SETS, genes=GENES, permutations=100, min_size=15)  # mean saliency, gseapy
    assert cohort["set"].iloc[0] == "A" and cohort["nes"].iloc[0] > 1.5 and cohort["p"].iloc[0] < 0.02
    wide = enrichment_matrix(table)
    assert wide.shape == (59, 6) and wide.dtypes.eq(bool).all() and wide["A"].sum() == (
        table.query("set == 'A'")["enriched"].sum())


def test_vectorised_enrichment_score_equals_gseapy() -> None:
    rng = np.random.default_rng(5)
    scores = rng.random(G)  # untied, so both rankings are the same
    sets = {"TOP": GENES[:20], "MID": list(rng.choice(GENES[20:-30], 40, replace=False)), "BOTTOM": GENES[-30:]}
    scores[:20] += 0.5
    scores[-30:] *= 0.1
    ours = per_patient_enrichment(scores[None], GENES, sets, permutations=400, direction="both").set_index("set")
    res = gseapy.prerank(rnk=pd.Series(scores, index=GENES).sort_values(ascending=False), gene_sets=sets,
                         outdir=None, no_plot=True, permutation_num=400, min_size=15, max_size=500, seed=0,
                         threads=1, verbose=False).res2d.set_index("Term")
    for name in sets:
        assert ours.loc[name, "es"] == pytest.approx(float(res.loc[name, "ES"]), abs=1e-9)
    for name in ("TOP", "MID"):
        assert ours.loc[name, "nes"] == pytest.approx(float(res.loc[name, "NES"]), rel=0.1)
    assert ours.loc["TOP", "p"] < 0.01 and ours.loc["MID", "p"] > 0.05
    # With scores >= 0 almost every random set has ES > 0: a negative ES has no null to normalise by (NaN NES,
    # p = 1); gseapy reports p = 1 too, with NES -1.
    assert ours.loc["BOTTOM", "es"] < 0 and ours.loc["BOTTOM", "p"] == 1.0


def test_multiclass_masking_recovers_each_class_set(multiclass) -> None:
    x, y, model = multiclass
    classes = ["a", "b", "c"]
    table = mask_gene_sets(model.predict_proba, x, y, GENES, SETS, class_names=classes)
    assert {f"auc_{c}" for c in classes} <= set(table.columns) and "ap_c" in table.columns
    assert best_set_per_class(table, classes) == {"a": "A", "b": "B", "c": "C"}
    assert table["auc"].to_numpy() == pytest.approx(table[[f"auc_{c}" for c in classes]].mean(axis=1).to_numpy())
    single = mask_single_genes(model.predict_proba, x, y, GENES, class_names=classes)
    top = top_genes_per_class(single, classes, top=10)
    for c, s in zip(classes, "ABC"):
        assert sum(g in SETS[s] for g in top[c]) >= 8
    with pytest.raises(ValueError, match="auc_d"):
        best_set_per_class(table, ["d"])

    linear = torch.nn.Linear(G, 3)  # the fitted multinomial logits, for per-class saliency
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(model.coef_))
        linear.bias.copy_(torch.from_numpy(model.intercept_))
    driven = np.isin(GENES, SETS["A"] + SETS["B"] + SETS["C"])
    for target, s in enumerate("ABC"):
        sal = gene_saliency(linear, x[:4], target=target)
        own = sal[:, np.isin(GENES, SETS[s])].mean()
        # a class's logit also weighs the other classes' sets (negatively), but none of the undriven genes
        assert own > 3 * sal[:, ~driven].mean()
        assert own > 1.2 * sal[:, driven & ~np.isin(GENES, SETS[s])].mean()
    with pytest.raises(ValueError, match="pass target="):
        gene_saliency(linear, x[:4])


def test_radiogenomic_traits_keep_sets_enriched_in_enough_patients() -> None:
    pats = [f"P{i}" for i in range(8)]
    f10 = pd.DataFrame({"chr1p35": [1, 1, 1, 1, 1, 0, 0, 0], "RARE": [1, 0, 0, 0, 0, 0, 0, 0]}, index=pats).astype(bool)
    f7 = pd.DataFrame({"MYC": [True] * 5 + [False] * 2}, index=pats[:7])
    features = radiogenomic_traits({"f10": f10, "f7": f7}, min_patients=5)
    assert list(features.columns) == ["f10.chr1p35", "f7.MYC"] and list(features.index) == pats[:7]
    assert features.loc["P0"].tolist() == [1, 1]
    union = radiogenomic_traits({"f10": f10, "f7": f7}, min_patients=5, complete_cases=False)
    assert len(union) == 8 and np.isnan(union.loc["P7", "f7.MYC"])


@pytest.fixture(scope="module")
def survival() -> tuple[pd.Series, pd.Series, pd.DataFrame, pd.DataFrame]:
    """300 patients, 6 binary features; only 'f10.planted' changes the hazard (HR e^1.2); age/gender covariates
    with their own effect."""
    rng = np.random.default_rng(11)
    n = 300
    ids = [f"P{i}" for i in range(n)]
    features = pd.DataFrame(rng.integers(0, 2, (n, 6)), index=ids,
                            columns=["f10.planted"] + [f"f7.null{k}" for k in range(5)])
    covariates = pd.DataFrame({"age_above_mean": rng.integers(0, 2, n), "male": rng.integers(0, 2, n)}, index=ids)
    hazard = np.exp(1.2 * features["f10.planted"] + 0.4 * covariates["age_above_mean"]).to_numpy()
    time = rng.exponential(365 / hazard)
    censor = rng.uniform(100, 1500, n)
    durations = pd.Series(np.minimum(time, censor) + 1, index=ids)
    events = pd.Series((time <= censor).astype(int), index=ids)
    return durations, events, features, covariates


def test_trait_survival_finds_planted_feature(survival) -> None:
    durations, events, features, covariates = survival
    table = trait_survival(durations, events, features, covariates)
    assert table["feature"].iloc[0] == "f10.planted"
    top = table.iloc[0]
    assert top["hr"] > 2 and top["hr_low"] > 1 and top["logrank_p"] == table["logrank_p"].min() < 1e-4
    assert top["cox_q"] < 1e-3 and top["n"] == 300 and top["n_with"] == features["f10.planted"].sum()
    for p, q in (("logrank_p", "logrank_q"), ("cox_p", "cox_q")):
        ordered = table.sort_values(p)
        assert ordered[q].is_monotonic_increasing and (table[q] >= table[p] - 1e-12).all()
    sparse = features.assign(**{"f7.null0": [1] * 3 + [0] * 297})
    assert "f7.null0" in trait_survival(durations, events, sparse, covariates).attrs["skipped"]
    with pytest.raises(ValueError, match="binary 0/1"):
        trait_survival(durations, events, features.assign(**{"f7.null1": 2}))


def test_stepwise_cox_selects_planted_feature(survival) -> None:
    durations, events, features, covariates = survival
    selected, fit = stepwise_cox(durations, events, covariates, features)
    assert selected[0] == "f10.planted"
    assert list(fit.summary.index[:2]) == ["age_above_mean", "male"]  # the base covariates are kept
    assert fit.summary.loc["f10.planted", "hazard_ratio"] > 2
    only, fit_empty_base = stepwise_cox(durations, events, None, features[["f7.null0"]], criterion="bic")
    assert only == [] and fit_empty_base is None


def test_clear_errors(binary) -> None:
    x, y, net = binary
    with pytest.raises(ValueError, match=r"x has shape \(200, 300\) but genes has length 299"):
        mask_gene_sets(model_score_fn(net), x, y, GENES[:-1], SETS)
    with pytest.raises(ValueError, match="none of the 1 gene sets"):
        mask_gene_sets(model_score_fn(net), x, y, GENES, {"UNKNOWN": ["NOPE"]})
    with pytest.raises(ValueError, match="y must hold 0/1"):
        mask_gene_sets(model_score_fn(net), x, y + 1, GENES, SETS)
    with pytest.raises(ValueError, match=r"saliency has shape \(2, 300\) but genes has length 299"):
        per_patient_enrichment(np.ones((2, G)), GENES[:-1], SETS)


@pytest.mark.parametrize("n_classes", [1, 4])
def test_single_gene_fast_path_of_a_trait_network_equals_the_stacked_masks(n_classes: int) -> None:
    """model_score_fn's single_genes (first layer as bias + x_g·W[:, g]) gives the scores of the (n, G) masks."""
    from gbhet_lib.radiogenomics.networks import TraitNet

    torch.manual_seed(0)
    net = TraitNet(G, hidden=(16, 8, 4), dropout=0.3, n_classes=n_classes).eval()
    with torch.no_grad():  # BatchNorm statistics away from 0/1, so that the test sees them used
        for norm in net.norms:
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    x = _expression(3)
    y = np.random.default_rng(0).integers(0, max(2, n_classes), N)
    score = model_score_fn(net)
    fast = score.single_genes(x, np.arange(0, G, 7))
    for j, g in enumerate(range(0, G, 7)):
        masked = np.zeros_like(x)
        masked[:, g] = x[:, g]
        np.testing.assert_allclose(fast[j], score(masked), atol=1e-6)
    names = [str(c) for c in range(n_classes)] if n_classes > 1 else None
    table = mask_single_genes(score, x, y, GENES, batch=50, class_names=names)
    plain = mask_single_genes(lambda m: score(m), x, y, GENES, batch=50, class_names=names)  # no fast path
    pd.testing.assert_frame_equal(table, plain, atol=1e-6)
