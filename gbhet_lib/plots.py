"""Figures shared by the chapters. Each function draws on a given Axes (or makes one) and returns it.

Colours are colour-blind safe: categories take the Okabe–Ito palette (:data:`CATEGORICAL`), signed values a
diverging red–blue map (``RdBu_r``), counts and magnitudes a sequential map (viridis, or a single hue).
Importing this module makes the Okabe–Ito palette matplotlib's default colour cycle (:func:`apply_style`), so the
chapters' figures drawn elsewhere in the library with default colours are colour-blind safe too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .io import atomic_path

#: Okabe & Ito (2008), "Color universal design": eight colours told apart under the common colour-vision
#: deficiencies (protanopia, deuteranopia, tritanopia)
OKABE_ITO: dict[str, str] = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9",
                             "bluish green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
                             "vermillion": "#D55E00", "reddish purple": "#CC79A7"}
#: the categorical colour order (yellow and black, hard to read on white or among dark lines, come last)
CATEGORICAL: list[str] = [OKABE_ITO[name] for name in ("blue", "orange", "bluish green", "vermillion",
                                                       "reddish purple", "sky blue", "yellow", "black")]
#: the grey of "everything else" (not highlighted; baselines)
GREY = "0.6"
#: colour maps: signed values around 0, and sequential magnitudes
DIVERGING_CMAP, SEQUENTIAL_CMAP = "RdBu_r", "viridis"


def categorical_colours(n: int) -> list[str]:
    """``n`` colours from :data:`CATEGORICAL`, repeated in order when ``n`` is larger than 8."""
    return [CATEGORICAL[i % len(CATEGORICAL)] for i in range(n)]


def apply_style() -> None:
    """Make the Okabe–Ito palette matplotlib's (and so seaborn's and pandas') default colour cycle, and viridis
    the default colour map. Called when this module is imported."""
    mpl.rcParams["axes.prop_cycle"] = cycler(color=CATEGORICAL)
    mpl.rcParams["image.cmap"] = SEQUENTIAL_CMAP


apply_style()


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> None:
    """Save ``fig`` atomically (format from the suffix of ``path``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip("."))


def library_size_histogram(library_sizes: dict[str, pd.Series], ax: Axes | None = None) -> Axes:
    """Histogram of log10 library sizes, one colour per sample set (e.g. cohort vs pre-training pool)."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    for name, sizes in library_sizes.items():
        ax.hist(np.log10(sizes), bins=30, alpha=0.6, label=f"{name} (n={len(sizes)})", density=True)
    ax.set_xlabel("log10 library size (total counts)")
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    return ax


def program_activity_heatmap(activity: pd.DataFrame, row_groups: pd.Series, visible: Sequence[str],
                             ax: Axes | None = None) -> Axes:
    """Samples × programs heat map (activity, standard-normal scale), rows grouped by ``row_groups``
    (e.g. patient), image-visible programs marked with an asterisk."""
    order = row_groups.sort_values(kind="stable").index
    data = activity.loc[order]
    data.columns = [f"{p}*" if p in visible else p for p in data.columns]
    ax = ax or plt.subplots(figsize=(5.5, 0.22 * len(data) + 1.2))[1]
    sns.heatmap(data, cmap=DIVERGING_CMAP, center=0, vmin=-3, vmax=3, ax=ax,
                cbar_kws={"label": "program activity (z)"}, yticklabels=True)
    boundaries = np.flatnonzero(row_groups.loc[order].to_numpy()[1:] != row_groups.loc[order].to_numpy()[:-1]) + 1
    for b in boundaries:
        ax.axhline(b, color="white", lw=2)
    ax.set_ylabel("")
    ax.set_title("* visible in slides", loc="right", fontsize=9)
    return ax


def correlation_heatmap(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Annotated heat map of a square correlation table (e.g. module × module mean correlation)."""
    ax = ax or plt.subplots(figsize=(5, 4))[1]
    sns.heatmap(table, annot=True, fmt=".2f", cmap=DIVERGING_CMAP, center=0, vmin=-1, vmax=1, ax=ax,
                cbar_kws={"label": "mean Pearson r"})
    return ax


def thumbnails_with_tissue(thumbnails: Sequence[tuple[str, np.ndarray, np.ndarray]], ncols: int = 4,
                           width: float = 3.0) -> Figure:
    """Grid of slide thumbnails, each ``(title, rgb, tissue_mask)``, the tissue outline drawn in bluish green."""
    nrows = int(np.ceil(len(thumbnails) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, width * 0.8 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, rgb, mask) in zip(axes.ravel(), thumbnails):
        ax.imshow(rgb)
        ax.contour(mask.astype(float), levels=[0.5], colors=OKABE_ITO["bluish green"], linewidths=1.0)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def community_sizes(summary: pd.DataFrame, highlight: Sequence[str], ax: Axes | None = None) -> Axes:
    """Bar chart of community sizes (from :func:`gbhet_lib.data.summary.community_summary`), the
    ``highlight`` communities (e.g. planted program modules) in vermillion, the rest grey."""
    ax = ax or plt.subplots(figsize=(7, 3))[1]
    colours = [OKABE_ITO["vermillion"] if c in highlight else GREY for c in summary.index]
    ax.bar(range(len(summary)), summary["genes"], color=colours)
    ax.set_xticks(range(len(summary)), summary.index, rotation=90, fontsize=7)
    ax.set_ylabel("genes")
    return ax


def kaplan_meier(comparison, ax: Axes | None = None, time_unit: str = "days") -> Axes:
    """Kaplan–Meier curves of a :class:`gbhet_lib.interpret.survival.GroupComparison`, log-rank p in the title."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for fit in comparison.fits.values():
        fit.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"ms": 4})
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel("survival probability")
    ax.set_title(f"log-rank p = {comparison.logrank_p:.2g}", fontsize=10)
    return ax


def degree_distribution(edges: pd.DataFrame, source: str = "symbol_a", target: str = "symbol_b",
                        ax: Axes | None = None) -> Axes:
    """Log–log plot of a graph's degree distribution (fraction of nodes with each degree)."""
    ax = ax or plt.subplots(figsize=(4.5, 3.2))[1]
    degrees = pd.concat([edges[source], edges[target]]).value_counts()
    freq = degrees.value_counts(normalize=True).sort_index()
    ax.loglog(freq.index, freq.to_numpy(), "o", ms=3, alpha=0.7)
    ax.set_xlabel("degree")
    ax.set_ylabel("fraction of genes")
    ax.set_title(f"{len(degrees):,} genes, {len(edges):,} edges", fontsize=9)
    return ax


def category_counts(labels: pd.Series, ax: Axes | None = None) -> Axes:
    """Horizontal bar chart of how many samples carry each label."""
    ax = ax or plt.subplots(figsize=(4.5, 0.35 * labels.nunique() + 1))[1]
    counts = labels.value_counts().sort_values()
    ax.barh(counts.index.astype(str), counts.to_numpy(), color=OKABE_ITO["blue"])
    for y, n in enumerate(counts.to_numpy()):
        ax.text(n, y, f" {n}", va="center", fontsize=8)
    ax.set_xlabel("samples")
    return ax


def sample_distributions(expression: pd.DataFrame, max_samples: int = 40, ax: Axes | None = None,
                         ylabel: str = "log expression") -> Axes:
    """Box plot of each sample's values (genes × samples table; the first ``max_samples`` samples)."""
    ax = ax or plt.subplots(figsize=(8, 3))[1]
    shown = expression.iloc[:, :max_samples]
    ax.boxplot(shown.to_numpy(), showfliers=False, widths=0.6)
    ax.set_xticks(range(1, shown.shape[1] + 1), shown.columns, rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    return ax


def embedding_map(embedding: pd.DataFrame, labels: pd.Series, seed: int = 0, ax: Axes | None = None) -> Axes:
    """UMAP of sample embeddings (samples × d), points coloured by ``labels`` (e.g. subtype)."""
    import umap

    coords = umap.UMAP(n_neighbors=15, min_dist=0.3, random_state=seed).fit_transform(embedding.to_numpy())
    ax = ax or plt.subplots(figsize=(5, 4))[1]
    for label in sorted(labels.unique(), key=str):
        sel = (labels == label).to_numpy()
        ax.scatter(coords[sel, 0], coords[sel, 1], s=12, alpha=0.8, label=f"{label} (n={int(sel.sum())})")
    ax.set(xlabel="UMAP 1", ylabel="UMAP 2", xticks=[], yticks=[])
    ax.legend(frameon=False, fontsize=8)
    return ax


def tiling_overlays(slides: Sequence[Path], coords_dir: Path, max_size: int = 512, width: float = 4.5) -> Figure:
    """Thumbnails of tiled slides with the tissue outline (bluish green) and the kept patches (blue boxes), one panel
    per slide; ``coords_dir`` holds the tiling files ``<stem>.h5``."""
    from matplotlib.patches import Rectangle

    from .wsi.slide_io import open_slide, slide_thumbnail
    from .wsi.tiling import read_coords
    from .wsi.tissue import tissue_mask

    fig, axes = plt.subplots(1, len(slides), figsize=(width * len(slides), width), squeeze=False)
    for ax, path in zip(axes.ravel(), slides):
        with open_slide(path) as slide:
            rgb, (dx, dy) = slide_thumbnail(slide, max_size)
        coords, attrs = read_coords(Path(coords_dir) / f"{Path(path).stem}.h5")
        ax.imshow(rgb)
        ax.contour(tissue_mask(rgb).astype(float), levels=[0.5], colors=OKABE_ITO["bluish green"], linewidths=1)
        size = attrs["patch_size_level0"]
        for x, y in coords:
            ax.add_patch(Rectangle((x / dx, y / dy), size / dx, size / dy, fill=False, ec=OKABE_ITO["blue"], lw=0.6))
        ax.set_title(f"{Path(path).name}: {len(coords)} patches at {attrs['target_magnification']:g}×", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def loss_curves(history: pd.DataFrame, terms: Sequence[str], hue: str = "policy", facet: str = "variant",
                width: float = 3.2, chance: Mapping[str, str] | None = None) -> Figure:
    """Training (solid) and held-out (dashed) curves of each loss ``term`` per epoch: one row of panels per
    ``facet`` value, one column per term, one colour per ``hue`` value. ``history`` is long format with
    ``epoch``, ``train_<term>`` and/or ``val_<term>`` (a held-out-only term, e.g. ``itc_paper``, is drawn dashed
    alone), and the ``hue`` and ``facet`` columns. ``chance`` (term → column, e.g. ``{"itc_paper":
    "val_itc_chance"}``) draws that column's mean as a grey dotted line in the term's panels."""
    facets = list(dict.fromkeys(history[facet]))
    fig, axes = plt.subplots(len(facets), len(terms), figsize=(width * len(terms), 2.4 * len(facets)),
                             squeeze=False, sharex=True)
    keys = list(dict.fromkeys(history[hue]))
    palette = dict(zip(keys, categorical_colours(len(keys))))
    for i, name in enumerate(facets):
        for j, term in enumerate(terms):
            ax = axes[i, j]
            subset = history[history[facet] == name]
            if not any(f"{side}_{term}" in subset and subset[f"{side}_{term}"].notna().any()
                       for side in ("train", "val")):
                ax.text(0.5, 0.5, f"no {term} loss\nin {name}", ha="center", va="center", transform=ax.transAxes,
                        fontsize=9, color="0.4")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for key, rows in subset.groupby(hue, sort=False):
                if f"train_{term}" in rows and rows[f"train_{term}"].notna().any():
                    ax.plot(rows["epoch"], rows[f"train_{term}"], color=palette[key], label=f"{key}")
                if f"val_{term}" in rows and rows[f"val_{term}"].notna().any():
                    ax.plot(rows["epoch"], rows[f"val_{term}"], color=palette[key], ls="--")
            if chance and term in chance and chance[term] in subset and subset[chance[term]].notna().any():
                ax.axhline(float(subset[chance[term]].mean()), color="0.5", ls=":", lw=1)
            ax.set_title(f"{name}: {term}", fontsize=9)
            if i == len(facets) - 1:
                ax.set_xlabel("epoch")
    labelled = next(ax for ax in axes.flat if ax.get_legend_handles_labels()[0])
    labelled.legend(frameon=False, fontsize=8, title=f"{hue} (dashed: held out)", title_fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------- chapter helpers
def history_panels(history: pd.DataFrame, panels: Sequence[Sequence[str]], width: float = 5.0) -> Figure:
    """One panel per group of ``history`` columns (e.g. training and validation losses) against ``epoch``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 3.2), squeeze=False)
    for ax, columns in zip(axes.ravel(), panels):
        history.plot(x="epoch", y=list(columns), ax=ax)
    return fig


def size_factor_scatter(table: pd.DataFrame, r: float, ax: Axes | None = None) -> Axes:
    """Planted vs estimated size factors (``table`` columns ``planted``, ``estimated``) on log axes."""
    ax = ax or plt.subplots(figsize=(4, 3.5))[1]
    ax.scatter(table["planted"], table["estimated"], s=6, alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel="planted", ylabel="DESeq2 estimate", title=f"size factors, log r = {r:.3f}")
    return ax


def cohort_expression(cohort) -> Figure:
    """Chapter 1's expression figure: for raw counts, log library sizes (lineages, pool) and the pool's library
    size against its planted size factor; for normalised values, the per-sample distributions of the lineages."""
    from .data.summary import library_sizes

    if cohort.expression_unit != "raw_counts":
        return sample_distributions(cohort.expression_lineages).figure
    sizes = {"lineages": library_sizes(cohort.expression_lineages), "pool": library_sizes(cohort.expression_pool)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    library_size_histogram(sizes, ax=axes[0])
    pool = sizes["pool"]
    axes[1].scatter(cohort.truth.size_factors[pool.index], pool, s=8, alpha=0.6)
    axes[1].set(xscale="log", yscale="log", xlabel="planted size factor", ylabel="library size")
    return fig


def program_and_module_correlation(programs: pd.DataFrame, modules: pd.DataFrame) -> Figure:
    """Two annotated correlation heat maps side by side: between programs, and between module genes."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    correlation_heatmap(programs, ax=axes[0]).set_title("programs")
    correlation_heatmap(modules, ax=axes[1]).set_title("module genes")
    return fig


def ppi_overview(edges: pd.DataFrame, communities: pd.DataFrame | None = None,
                 highlight: Sequence[str] = ()) -> Figure:
    """Community sizes (when ``communities``, a :func:`gbhet_lib.data.summary.community_summary`) beside the
    degree distribution of the graph ``edges``; the degree distribution alone otherwise."""
    if communities is None:
        return degree_distribution(edges).figure
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), width_ratios=[2, 1])
    community_sizes(communities, highlight=highlight, ax=axes[0])
    degree_distribution(edges, ax=axes[1])
    return fig


def kaplan_meier_panels(comparisons: dict) -> Figure:
    """One Kaplan–Meier panel per named group comparison, sharing the survival axis."""
    fig, axes = plt.subplots(1, len(comparisons), figsize=(5.5 * len(comparisons), 3.8), sharey=True, squeeze=False)
    for ax, (name, comparison) in zip(axes.ravel(), comparisons.items()):
        kaplan_meier(comparison, ax=ax)
        ax.set_title(f"{name}: " + ax.get_title())
    return fig


def cv_retrieval(per_lineage: pd.DataFrame, chance: float = 0.5, ax: Axes | None = None) -> Axes:
    """Percentile of each held-out lineage's own RNA profile under patient-level CV (one dot per lineage, per
    predictor: ``model_percentile`` and ``blind_percentile`` columns), with the means and chance (dashed)."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    long = per_lineage.melt(id_vars=["lineage", "patient"], value_vars=["model_percentile", "blind_percentile"],
                            var_name="predictor", value_name="percentile")
    long["predictor"] = long["predictor"].map({"model_percentile": "fusion model", "blind_percentile": "image-blind"})
    sns.stripplot(data=long, x="predictor", y="percentile", hue="patient", ax=ax, size=5, jitter=0.2, legend=False,
                  palette=categorical_colours(long["patient"].nunique()))
    sns.pointplot(data=long, x="predictor", y="percentile", ax=ax, color="black", markers="_", errorbar=None,
                  linestyles="none")
    ax.axhline(chance, color="0.5", ls="--", lw=1)
    ax.set(ylim=(-0.05, 1.05), xlabel="", ylabel="percentile of the own profile (1 = first)",
           title="held-out lineages, patient-level CV")
    return ax


def retrieval_rank_histograms(model_rows: pd.DataFrame, null_rows: pd.DataFrame, bins: int = 10) -> Figure:
    """One panel per variant: histogram of the own candidate's percentile over the queries (1 = ranked first),
    the model's beside the image-blind null's (``variant`` and ``percentile`` columns), chance dashed."""
    names = list(dict.fromkeys(model_rows["variant"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False, sharey=True)
    edges = np.linspace(0, 1, bins + 1)
    for ax, name in zip(axes[0], names):
        for rows, label, colour in ((model_rows, "model", OKABE_ITO["blue"]), (null_rows, "image-blind", GREY)):
            values = rows.loc[rows["variant"] == name, "percentile"]
            ax.hist(values, bins=edges, weights=np.full(len(values), 1 / max(len(values), 1)), alpha=0.6,
                    label=label, color=colour)
        ax.axvline(0.5, color="0.3", ls="--", lw=1)
        ax.set(title=name, xlabel="percentile of the own profile")
    axes[0, 0].set_ylabel("share of queries")
    axes[0, -1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def confusion_heatmap(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Counts of query rows × retrieved columns (e.g. :func:`gbhet_lib.evaluate.stage.confusion`)."""
    ax = ax or plt.subplots(figsize=(0.35 * table.shape[1] + 2, 0.3 * table.shape[0] + 1.5))[1]
    sns.heatmap(table, annot=True, fmt="d", cbar=False, cmap="Blues", ax=ax)
    ax.set_title("retrieved first (slides, patient-level CV)")
    return ax


def driver_precision(table: pd.DataFrame, null_range: Sequence[float] | None = None, ax: Axes | None = None) -> Axes:
    """Driver precision@50 of each explained model with its patient-bootstrap interval (``precision@50``, ``@50 low``,
    ``@50 high``, ``chance`` columns of :func:`gbhet_lib.interpret.stage.variant_table`), chance and 3× chance
    (dashed), and the shuffled-pair null's 95 % range (grey band)."""
    ax = ax or plt.subplots(figsize=(6, 0.45 * len(table) + 1.4))[1]
    y = np.arange(len(table))
    value = table["precision@50"].astype(float).to_numpy()
    low = table["@50 low"].astype(float).to_numpy()
    high = table["@50 high"].astype(float).to_numpy()
    ax.errorbar(value, y, xerr=[np.clip(value - low, 0, None), np.clip(high - value, 0, None)], fmt="o", capsize=3)
    chance = float(table["chance"].iloc[0])
    ax.axvline(chance, ls="--", c="grey", label="chance")
    ax.axvline(3 * chance, ls=":", c="grey", label="3 × chance")
    if null_range is not None:
        ax.axvspan(null_range[0], null_range[1], color="grey", alpha=0.2, label="shuffled-pair null (95 %)")
    ax.set_yticks(y, table.index)
    ax.invert_yaxis()
    ax.set_xlabel("visible-program drivers among the top 50 genes")
    ax.legend(loc="lower right", fontsize=8)
    return ax
