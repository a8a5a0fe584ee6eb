"""The semi-synthetic paired cohort of the ``reference`` profile: real expression, rendered slides.

Real tumour expression profiles (e.g. TCGA-GBM) are scored for the study's six programs with real gene
sets (MSigDB Hallmark, the Verhaak 2010 neural signature). The three image-visible program scores drive the demo's
slide renderer, so every later chapter runs on real expression structure while what the slides show is
known exactly. Each real sample with a slide is one patient with one lineage (real data give no
multi-region sampling); the remaining samples form the RNA-only pool. Survival is the samples' real
survival, so ``truth.json`` plants no survival coefficients.

Unlike the demo, programs are *not* independent here: in GBM, hypoxia, angiogenesis, inflammation and the
mesenchymal state co-vary, so an image model can learn an "invisible" program through its correlation
with a visible one. ``truth.json`` stores the empirical program correlation so later chapters can judge
recovered signal against it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .cohort import SLIDES, read_cohort_metadata, write_cohort
from .synthetic.imaging import imaging_traits_truth, render_cohort_imaging
from .synthetic.mri import MriEffects, MriGeometry
from .synthetic.programs import PROGRAMS, VISIBLE_PROGRAMS
from .synthetic.slides import ProgramEffects, SlideGeometry, render_lineage_slides

#: 2: two or more slides per lineage (slides.tsv); 3: planted structure maps per slide; 4: an MRI per sample driven
#: by its real program scores, diagnostic slides for pool samples
GENERATOR_VERSION = "4"

#: program → gene-set names whose union scores it (Hallmark names as in MSigDB; Verhaak 2010 as in GlioVis)
DEFAULT_PROGRAM_SETS: dict[str, tuple[str, ...]] = {
    "hypoxia": ("HALLMARK_HYPOXIA",),
    "proliferation": ("HALLMARK_G2M_CHECKPOINT", "HALLMARK_E2F_TARGETS"),
    "angiogenesis": ("HALLMARK_ANGIOGENESIS",),
    "immune": ("HALLMARK_INFLAMMATORY_RESPONSE", "HALLMARK_INTERFERON_GAMMA_RESPONSE"),
    "neural": ("VERHAAK2010_NEURAL",),
    "mesenchymal": ("HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",),
}


@dataclass(frozen=True)
class ProgramScores:
    """Program activities of real samples.

    Attributes:
        scores: samples × programs, each program standardised to mean 0 and sd 1 across samples.
        genes: program → the genes (symbols) of its gene sets found in the expression table.
    """

    scores: pd.DataFrame
    genes: dict[str, list[str]]


def program_scores(expression: pd.DataFrame, gene_sets: Mapping[str, Sequence[str]],
                   program_sets: Mapping[str, Sequence[str]] = DEFAULT_PROGRAM_SETS,
                   min_genes: int = 5) -> ProgramScores:
    """Score programs as the mean per-gene z-score of their genes, then standardise each score.

    Args:
        expression: samples × genes (symbols), log-scale values (no missing values).
        gene_sets: set name → gene symbols (e.g. from a GMT file).
        program_sets: program → names of the gene sets whose union defines it.
        min_genes: fewest genes of a program that must be in ``expression``.
    """
    missing_sets = sorted({s for sets in program_sets.values() for s in sets} - set(gene_sets))
    if missing_sets:
        raise ValueError(f"gene set(s) {missing_sets} not found among the {len(gene_sets)} sets given; pass "
                         "Hallmark and Verhaak 2010 sets, or choose other sets with program_sets=")
    z = (expression - expression.mean()) / expression.std(ddof=0).replace(0.0, np.nan)
    scores, used = {}, {}
    for program, sets in program_sets.items():
        genes = sorted({g for s in sets for g in gene_sets[s]} & set(expression.columns))
        if len(genes) < min_genes:
            raise ValueError(f"program {program!r}: only {len(genes)} of the genes of {list(sets)} are in the "
                             f"expression table (need >= {min_genes}); use a larger gene panel or other sets")
        raw = z[genes].mean(axis=1, skipna=True)
        scores[program] = (raw - raw.mean()) / raw.std(ddof=0)
        used[program] = genes
    return ProgramScores(pd.DataFrame(scores, index=expression.index), used)


def clean_expression(expression: pd.DataFrame, max_missing: float = 0.1) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop genes missing in more than ``max_missing`` of samples and duplicated symbols (first kept);
    fill the remaining gaps with the gene's median. Returns the table and counts of what was done."""
    if expression.shape[0] == 0 or expression.shape[1] == 0:
        raise ValueError("the expression table is empty")
    duplicated = expression.columns.duplicated()
    expression = expression.loc[:, ~duplicated]
    too_sparse = expression.isna().mean() > max_missing
    expression = expression.loc[:, ~too_sparse]
    filled = int(expression.isna().sum().sum())
    return expression.fillna(expression.median()), {"duplicated_genes_dropped": int(duplicated.sum()),
                                                    "sparse_genes_dropped": int(too_sparse.sum()),
                                                    "values_filled": filled}


def choose_paired_samples(samples: pd.Index, n_paired: int, rng: np.random.Generator,
                          groups: pd.Series | None = None) -> pd.Index:
    """Pick ``n_paired`` samples to receive a slide, proportionally from each group (e.g. subtype) if given."""
    if not 1 <= n_paired <= len(samples):
        raise ValueError(f"n_paired={n_paired} must be between 1 and the {len(samples)} samples available")
    if groups is None:
        return pd.Index(sorted(rng.choice(samples, size=n_paired, replace=False)))
    groups = groups.reindex(samples).fillna("unknown")
    shares = groups.value_counts(normalize=True).sort_index() * n_paired
    counts = np.floor(shares).astype(int)
    for g in (shares - counts).sort_values(ascending=False).index[: n_paired - counts.sum()]:
        counts[g] += 1  # largest remainders
    picked = [s for g, k in counts.items() for s in rng.choice(groups.index[groups == g], size=k, replace=False)]
    return pd.Index(sorted(picked))


def make_semisynthetic_cohort(
    out_dir: str | Path, expression: pd.DataFrame, clinical: pd.DataFrame, gene_sets: Mapping[str, Sequence[str]],
    annotation: pd.DataFrame, ppi_edges: pd.DataFrame | None = None, groups: pd.Series | None = None,
    n_paired: int = 24, seed: int = 0, geometry: SlideGeometry = SlideGeometry(), slides_per_lineage: int = 2,
    program_sets: Mapping[str, Sequence[str]] = DEFAULT_PROGRAM_SETS, sources: Mapping[str, str] | None = None,
    n_jobs: int | None = None, progress: bool = True, force: bool = False, n_diagnostic: int = 120,
    mri_geometry: MriGeometry = MriGeometry(),
) -> Path:
    """Write the semi-synthetic cohort (the cohort contract of :mod:`gbhet_lib.data.cohort`) to ``out_dir``.

    Args:
        expression: samples × genes (symbols), real log-scale expression.
        clinical: per sample (same ids): clinical columns, e.g. ``os_days``, ``os_event`` (NaN allowed).
        gene_sets: set name → symbols, holding at least the sets named in ``program_sets``.
        annotation: gene table with columns ``gene_id`` (Ensembl), ``symbol``, ``chromosome`` (optional
            ``start``, ``end``, ``biotype``); genes without an Ensembl id here are dropped and counted.
        ppi_edges: optional edge table (``symbol_a``, ``symbol_b``, ``combined_score``), kept for the genes present.
        groups: optional per-sample label (e.g. subtype) used to stratify which samples get a slide.
        n_paired: samples that get slides (the lineage cohort); the rest form the RNA-only pool.
        slides_per_lineage: sections rendered per paired sample, each stained on its own.
        n_diagnostic: pool samples that get a diagnostic slide (at most the pool's size: fewer when the pool is
            smaller). Every sample gets an MRI rendered from its real program scores (the MRI-visible programs).
        sources: dataset name → sha256 of the inputs, recorded in ``cohort.json`` (provenance).
    """
    out = Path(out_dir)
    settings = {"kind": "semisynthetic", "generator_version": GENERATOR_VERSION, "seed": seed,
                "n_paired": n_paired, "slides_per_lineage": slides_per_lineage, "geometry": _geometry_dict(geometry),
                "n_diagnostic": n_diagnostic, "mri_geometry": {"shape": list(mri_geometry.shape),
                                                               "voxel_mm": mri_geometry.voxel_mm},
                "program_sets": {p: list(s) for p, s in program_sets.items()}, "sources": dict(sources or {})}
    made = read_cohort_metadata(out)
    if not force and made is not None and all(made.get(k) == v for k, v in settings.items()):
        return out
    (out / "cohort.json").unlink(missing_ok=True)
    expression, cleaning = clean_expression(expression)
    genes = _gene_table(annotation, expression.columns)
    cleaning["genes_without_ensembl_id"] = int(len(expression.columns) - len(genes))
    expression = expression[genes["symbol"].tolist()]
    scores = program_scores(expression, gene_sets, program_sets)

    seeds = np.random.SeedSequence(seed).spawn(4)  # children are keyed by position: the first two are as before
    paired = choose_paired_samples(expression.index, n_paired, np.random.default_rng(seeds[0]), groups)
    pool = expression.index.difference(paired)
    lineage_ids = pd.Index([f"{s}-L1" for s in paired], name="lineage_id")
    lineages = pd.DataFrame({"patient_id": paired, "rna_sample_id": paired}, index=lineage_ids)
    if groups is not None:
        lineages["group"] = groups.reindex(paired).to_numpy()
    visible = scores.scores.loc[paired, list(VISIBLE_PROGRAMS)].set_axis(lineage_ids)
    slides, slide_stats = render_lineage_slides(out / SLIDES, visible, slides_per_lineage, geometry, seeds[1], n_jobs,
                                                progress, description="gbhet semi-synthetic slide")

    imaging = render_cohort_imaging(out, scores.scores.loc[paired], scores.scores.loc[pool],
                                    min(n_diagnostic, len(pool)), geometry, ProgramEffects(), mri_geometry,
                                    MriEffects(), seeds[2], seeds[3], n_jobs, progress,
                                    description="gbhet semi-synthetic diagnostic slide")
    by_gene_id = expression.T.set_axis(genes.index)
    activity = pd.concat([scores.scores.loc[paired].set_axis(lineage_ids), scores.scores.loc[pool]])
    truth = _truth(scores, activity, lineages, slides, slide_stats)
    truth.update({"imaging_traits": imaging_traits_truth(), "mri_stats": imaging.planted,
                  "diagnostic_slide_stats": imaging.slide_stats})
    write_cohort(
        out, genes=genes, expression_lineages=by_gene_id[paired].set_axis(paired, axis=1),
        expression_pool=by_gene_id[pool], lineages=lineages, slides=slides,
        patients=clinical.reindex(paired).join(imaging.traits).rename_axis("patient_id"),
        pool_clinical=clinical.reindex(pool).join(imaging.traits).rename_axis("sample_id"),
        ppi_edges=_edges_within(ppi_edges, set(genes["symbol"])), truth=truth,
        mri=imaging.mri, diagnostic_slides=imaging.diagnostic_slides,
        metadata={**settings, "expression_unit": "log_expression", "cleaning": cleaning})
    return out


def _truth(scores: ProgramScores, activity: pd.DataFrame, lineages: pd.DataFrame, slides: pd.DataFrame,
           slide_stats: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "programs": [{"name": p.name, "visible": p.visible, "mri_visible": p.mri_visible,
                      "description": p.description} for p in PROGRAMS],
        "modules": scores.genes,
        "drivers": {p: g for p, g in scores.genes.items() if p in VISIBLE_PROGRAMS},
        "loadings": {p: {g: round(1.0 / len(genes), 6) for g in genes} for p, genes in scores.genes.items()},
        "activity": {s: {p: round(float(v), 6) for p, v in row.items()} for s, row in activity.iterrows()},
        "program_correlation": scores.scores.corr().round(4).to_dict(),
        "size_factors": {},
        "slide_lineage": {Path(f).name: lid for f, lid in zip(slides["slide_file"], slides["lineage_id"])},
        "lineage_patient": lineages["patient_id"].to_dict(),
        "survival": {},
        "imaging_traits": {},
        "ppi_communities": {},
        "slide_stats": slide_stats,
    }


def _gene_table(annotation: pd.DataFrame, symbols: pd.Index) -> pd.DataFrame:
    """Annotation rows of ``symbols`` (first Ensembl id per symbol), indexed by gene_id, in expression order."""
    required = {"gene_id", "symbol", "chromosome"}
    if not required <= set(annotation.columns):
        raise ValueError(f"the gene annotation lacks column(s) {sorted(required - set(annotation.columns))}; "
                         "expected gene_id, symbol, chromosome (+ start, end, biotype)")
    table = annotation.dropna(subset=["gene_id", "symbol"]).drop_duplicates("symbol").set_index("symbol")
    found = [s for s in symbols if s in table.index]
    if not found:
        raise ValueError("no expression gene symbol is in the gene annotation: are the columns gene symbols?")
    columns = [c for c in ("gene_id", "chromosome", "start", "end", "biotype") if c in table.columns]
    genes = table.loc[found, columns].reset_index().set_index("gene_id")
    return genes[~genes.index.duplicated()]


def _edges_within(edges: pd.DataFrame | None, symbols: set[str]) -> pd.DataFrame:
    columns = ["symbol_a", "symbol_b", "combined_score"]
    if edges is None:
        return pd.DataFrame(columns=columns)
    keep = edges["symbol_a"].isin(symbols) & edges["symbol_b"].isin(symbols)
    return edges.loc[keep, columns].reset_index(drop=True)


def _geometry_dict(geometry: SlideGeometry) -> dict[str, Any]:
    return {"width": geometry.width, "height": geometry.height, "mpp": geometry.mpp,
            "level_downsamples": list(geometry.level_downsamples), "tile": geometry.tile,
            "jpeg_quality": geometry.jpeg_quality}
