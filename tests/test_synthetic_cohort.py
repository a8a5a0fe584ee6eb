"""The synthetic cohort: planted structure is really there, files are what they claim, seeds reproduce."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile

from gbhet_lib.data.cohort import CohortTruth, load_cohort
from gbhet_lib.data.synthetic import (PROGRAM_NAMES, VISIBLE_PROGRAMS, CohortSpec, SlideGeometry, cohort_is_complete,
                                      make_demo_cohort, render_slide)


def _read(cohort: Path, name: str, **kw) -> pd.DataFrame:
    return pd.read_csv(cohort / name, sep="\t", index_col=0, **kw)


def _log_cpm(counts: pd.DataFrame) -> pd.DataFrame:
    return np.log1p(counts / counts.sum(axis=0) * 1e6)


def test_module_genes_correlate_more_within_than_across_modules(small_cohort: Path) -> None:
    truth = CohortTruth.load(small_cohort / "truth.json")
    genes = _read(small_cohort, "genes.tsv")
    counts = _read(small_cohort, "expression_pool.tsv.gz")
    counts.index = counts.index.str.split(".").str[0]
    expr = _log_cpm(counts)
    expr.index = genes.loc[expr.index, "symbol"]
    module_of = {g: p for p, members in truth.modules.items() for g in members}
    symbols = list(module_of)
    corr = np.corrcoef(expr.loc[symbols].to_numpy())
    labels = np.array([module_of[s] for s in symbols])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(symbols), dtype=bool)
    within, across = corr[same & off_diagonal].mean(), corr[~same].mean()
    assert within > 0.3, within
    assert abs(across) < 0.1, across
    assert within > across + 0.25


def test_size_factors_vary_and_show_in_library_sizes(small_cohort: Path) -> None:
    truth = CohortTruth.load(small_cohort / "truth.json")
    counts = _read(small_cohort, "expression_pool.tsv.gz")
    library = counts.sum(axis=0)
    size_factors = truth.size_factors.loc[library.index]
    assert size_factors.max() / size_factors.min() > 2.0
    # library size follows the planted size factor (programs add noise on top)
    assert np.corrcoef(np.log(size_factors), np.log(library))[0, 1] > 0.7


def test_counts_are_overdispersed_integers(small_cohort: Path) -> None:
    counts = _read(small_cohort, "expression_pool.tsv.gz")
    assert (counts.dtypes == np.int64).all() and (counts.to_numpy() >= 0).all()
    norm = counts / counts.sum(axis=0) * counts.sum(axis=0).mean()
    mean, var = norm.mean(axis=1), norm.var(axis=1)
    high = mean > 50
    assert (var[high] > 1.5 * mean[high]).mean() > 0.9  # negative binomial, not Poisson


def _tissue_pixel_stats(rgb: np.ndarray) -> dict[str, float]:
    """Fractions of tissue pixels a pathologist would look at, from optical density (OD = -log(I/255)):
    haematoxylin-dense (nuclei absorb red light), red blood (absorbs blue, not red), eosin-only (necrosis)."""
    od = -np.log((rgb.astype(float) + 1.0) / 256.0)
    tissue = od.sum(axis=-1) > 0.25
    n = max(tissue.sum(), 1)
    return {"nuclear": (tissue & (od[..., 0] > 0.25)).sum() / n,
            "red": (tissue & (od[..., 2] > 0.6) & (od[..., 0] < 0.25)).sum() / n,
            "eosin_only": (tissue & (od[..., 0] < 0.05) & (od[..., 1] > 0.3)).sum() / n}


@pytest.mark.parametrize("program, statistic", [("proliferation", "nuclear"), ("angiogenesis", "red"),
                                                ("hypoxia", "eosin_only")])
def test_visible_program_changes_slide_image_statistics(program: str, statistic: str) -> None:
    """Same slide (seed: layout and stain) at low and high activity: the statistic rises by >= 20 %."""
    geometry = SlideGeometry(width=1536, height=1024)
    for seed in range(3):
        low, high = (
            _tissue_pixel_stats(render_slide({p: 0.0 for p in PROGRAM_NAMES} | {program: level},
                                             np.random.default_rng(seed), geometry).rgb)[statistic]
            for level in (-1.5, 1.5))
        assert high > 1.2 * low + 1e-3, (program, seed, low, high)


@pytest.mark.parametrize("program", [p for p in PROGRAM_NAMES if p not in VISIBLE_PROGRAMS])
def test_invisible_program_leaves_slide_pixels_unchanged(program: str) -> None:
    geometry = SlideGeometry(width=512, height=512)
    base = {p: 0.3 for p in PROGRAM_NAMES}
    a = render_slide(base | {program: -2.5}, np.random.default_rng(3), geometry).rgb
    b = render_slide(base | {program: 2.5}, np.random.default_rng(3), geometry).rgb
    np.testing.assert_array_equal(a, b)


def test_slides_open_in_openslide_with_levels_and_mpp(small_cohort: Path, small_spec: CohortSpec) -> None:
    slides = _read(small_cohort, "slides.tsv")
    geometry = small_spec.slide
    for slide_file in slides["slide_file"]:
        path = small_cohort / slide_file
        with openslide.OpenSlide(str(path)) as slide:
            assert slide.properties["openslide.vendor"] == "generic-tiff"
            assert slide.level_count == len(geometry.level_downsamples) >= 3
            assert slide.dimensions == (geometry.width, geometry.height)
            assert [round(d) for d in slide.level_downsamples] == list(geometry.level_downsamples)
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(geometry.mpp)
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(geometry.mpp)
            region = np.asarray(slide.read_region((256, 256), 0, (256, 256)).convert("RGB"))
            assert region.shape == (256, 256, 3) and region.std() > 5  # real content, not a blank tile
        with tifffile.TiffFile(path) as tif:
            assert all(page.is_tiled and page.compression == tifffile.COMPRESSION.JPEG for page in tif.pages)


def test_slides_have_background_and_tissue(small_cohort: Path) -> None:
    truth = CohortTruth.load(small_cohort / "truth.json")
    for name, stats in truth.slide_stats.items():
        assert 0.25 < stats["tissue_fraction"] < 0.8, name


def test_truth_is_consistent_with_tables(small_cohort: Path, small_spec: CohortSpec) -> None:
    truth = CohortTruth.load(small_cohort / "truth.json")
    genes = _read(small_cohort, "genes.tsv")
    lineages = _read(small_cohort, "lineages.tsv")
    patients = _read(small_cohort, "patients.tsv")
    pool = _read(small_cohort, "pool_clinical.tsv")
    counts_lineages = _read(small_cohort, "expression_lineages.tsv.gz")
    counts_pool = _read(small_cohort, "expression_pool.tsv.gz")
    edges = pd.read_csv(small_cohort / "ppi_edges.tsv", sep="\t")

    assert sorted(truth.slide_lineage) == sorted(p.name for p in (small_cohort / "slides").glob("*.tiff"))
    slides = _read(small_cohort, "slides.tsv")
    assert {Path(f).name: lid for f, lid in zip(slides["slide_file"], slides["lineage_id"])} == truth.slide_lineage
    assert (slides.groupby("lineage_id").size() == small_spec.slides_per_lineage).all()
    assert set(slides["lineage_id"]) == set(lineages.index)
    assert lineages["patient_id"].to_dict() == truth.lineage_patient
    assert set(lineages["patient_id"]) == set(patients.index)
    assert lineages.groupby("patient_id").size().between(small_spec.min_lineages, small_spec.max_lineages).all()
    assert list(counts_lineages.columns) == list(lineages["rna_sample_id"])
    assert list(counts_pool.columns) == list(pool.index) and len(pool) == small_spec.n_pool
    assert set(truth.activity.index) == set(lineages.index) | set(pool.index)
    assert list(truth.activity.columns) == list(PROGRAM_NAMES)
    assert truth.visible_programs == list(VISIBLE_PROGRAMS)
    assert set(truth.invisible_programs).isdisjoint(VISIBLE_PROGRAMS) and truth.invisible_programs
    symbols = set(genes["symbol"])
    for program, members in truth.modules.items():
        assert len(members) == small_spec.module_size and set(members) <= symbols
        assert set(truth.drivers[program]) <= set(members) and len(truth.drivers[program]) == small_spec.n_drivers
        loadings = truth.loadings[program]
        assert set(loadings) == set(members) and all(v > 0 for v in loadings.values())
        weakest_driver = min(loadings[g] for g in truth.drivers[program])
        assert weakest_driver > max(v for g, v in loadings.items() if g not in truth.drivers[program])
    assert set(edges["symbol_a"]) | set(edges["symbol_b"]) <= set(truth.ppi_communities) <= symbols
    assert counts_lineages.index.str.split(".").str[0].tolist() == genes.index.tolist()
    assert set(truth.survival["os"]) <= set(PROGRAM_NAMES)
    assert {f"trait_{t}" for t in truth.imaging_traits} <= set(patients.columns) & set(pool.columns)


def test_ppi_modules_are_dense_communities(small_cohort: Path) -> None:
    truth = CohortTruth.load(small_cohort / "truth.json")
    edges = pd.read_csv(small_cohort / "ppi_edges.tsv", sep="\t")
    community = pd.Series(truth.ppi_communities)
    same = community[edges["symbol_a"]].to_numpy() == community[edges["symbol_b"]].to_numpy()
    assert same.mean() > 0.7  # most edges lie inside planted communities
    for program, members in truth.modules.items():
        inside = edges["symbol_a"].isin(members) & edges["symbol_b"].isin(members)
        density = inside.sum() / (len(members) * (len(members) - 1) / 2)
        assert density > 0.15, (program, density)


def test_survival_is_driven_by_the_planted_hazard_programs(small_cohort: Path) -> None:
    from lifelines import CoxPHFitter

    truth = CohortTruth.load(small_cohort / "truth.json")
    pool = _read(small_cohort, "pool_clinical.tsv")
    data = truth.activity.loc[pool.index].join(pool[["os_days", "os_event"]])
    fit = CoxPHFitter().fit(data, duration_col="os_days", event_col="os_event")
    strongest = max(truth.survival["os"], key=lambda p: abs(truth.survival["os"][p]))
    assert fit.params_[strongest] > 0 and fit.summary.loc[strongest, "p"] < 0.01
    assert 0.05 < 1 - pool["os_event"].mean() < 0.6  # some, not all, censored
    assert (pool["pfs_days"] <= pool["os_days"]).all()


def test_imaging_traits_follow_their_programs(small_cohort: Path) -> None:
    truth = CohortTruth.load(small_cohort / "truth.json")
    pool = _read(small_cohort, "pool_clinical.tsv")
    activity = truth.activity.loc[pool.index]
    driven = {"necrosis": ("hypoxia", 1), "enhancing": ("angiogenesis", 1), "ncet": ("angiogenesis", -1),
              "edema": ("mesenchymal", 1), "infiltrative": ("mesenchymal", 1)}
    assert set(truth.imaging_traits) == set(driven) | {"focal"}
    assert truth.mri_visible_programs == ["hypoxia", "angiogenesis", "mesenchymal"]
    for trait in truth.imaging_traits:
        labels = pool[f"trait_{trait}"]
        assert set(labels.unique()) <= {0, 1} and 0.1 < labels.mean() < 0.9, trait  # computed from the volumes
        for program in activity.columns:
            gap = activity.loc[labels == 1, program].mean() - activity.loc[labels == 0, program].mean()
            if driven.get(trait, (None,))[0] == program:
                assert np.sign(gap) == driven[trait][1] and abs(gap) > 0.5, (trait, program, gap)
            elif program not in truth.mri_visible_programs:
                assert abs(gap) < 0.5, (trait, program, gap)  # what the MRI cannot show drives no trait


def test_same_seed_same_cohort_other_seed_other_cohort(tmp_path: Path) -> None:
    spec = CohortSpec(n_patients=2, n_pool=20, n_genes=300, module_size=20, n_drivers=4, n_diagnostic=3,
                      slide=SlideGeometry(width=512, height=512))
    a = make_demo_cohort(tmp_path / "a", spec, seed=11, n_jobs=1, progress=False)
    b = make_demo_cohort(tmp_path / "b", spec, seed=11, n_jobs=2, progress=False)
    c = make_demo_cohort(tmp_path / "c", spec, seed=12, n_jobs=1, progress=False)
    tables = ["genes.tsv", "expression_lineages.tsv.gz", "expression_pool.tsv.gz", "lineages.tsv", "slides.tsv",
              "patients.tsv",
              "pool_clinical.tsv", "ppi_edges.tsv", "truth.json", "mri.tsv", "diagnostic_slides.tsv"]
    for name in tables:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "expression_pool.tsv.gz").read_bytes() != (c / "expression_pool.tsv.gz").read_bytes()
    for slide in sorted((a / "slides").glob("*.tiff")):
        np.testing.assert_array_equal(tifffile.imread(slide), tifffile.imread(b / "slides" / slide.name))
    first = sorted((a / "slides").glob("*.tiff"))[0].name
    assert not np.array_equal(tifffile.imread(a / "slides" / first), tifffile.imread(c / "slides" / first))


def test_complete_cohort_is_reused_and_other_spec_regenerates(tmp_path: Path) -> None:
    spec = CohortSpec(n_patients=1, min_lineages=2, max_lineages=2, n_pool=10, n_genes=300, module_size=20,
                      n_drivers=4, slide=SlideGeometry(width=512, height=512))
    out = make_demo_cohort(tmp_path / "c", spec, seed=1, n_jobs=1, progress=False)
    assert cohort_is_complete(out, spec, 1) and not cohort_is_complete(out, spec, 2)
    stamp = (out / "truth.json").stat().st_mtime_ns
    make_demo_cohort(out, spec, seed=1, n_jobs=1, progress=False)
    assert (out / "truth.json").stat().st_mtime_ns == stamp
    bigger = dataclasses.replace(spec, n_pool=12)
    make_demo_cohort(out, bigger, seed=1, n_jobs=1, progress=False)
    assert cohort_is_complete(out, bigger, 1) and len(pd.read_csv(out / "pool_clinical.tsv", sep="\t")) == 12
    made = json.loads((out / "cohort.json").read_text())
    assert all((out / name).stat().st_size == size for name, size in made["files"].items())


@pytest.mark.parametrize("change, message", [
    ({"n_patients": 0}, "n_patients"), ({"min_lineages": 3, "max_lineages": 2}, "lineages"),
    ({"module_size": 450}, "module_size"), ({"n_pool": -1}, "n_pool"), ({"slides_per_lineage": 0}, "slides_per_lineage"),
])
def test_invalid_spec_is_a_clear_error(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(CohortSpec(), **change)


@pytest.mark.parametrize("geometry, message", [
    ({"width": 1001}, "multiple of"), ({"mpp": 0.0}, "mpp=0.0 must be > 0"),
    ({"level_downsamples": (1, 4, 6)}, "larger multiple"), ({"level_downsamples": ()}, "must start at 1"),
])
def test_invalid_slide_geometry_is_a_clear_error(geometry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlideGeometry(**geometry)


def test_sections_of_a_lineage_share_programs_but_not_pixels_or_stain(small_cohort: Path) -> None:
    cohort = load_cohort(small_cohort)
    lineage = cohort.lineages.index[0]
    first, second = cohort.lineage_slides(lineage)
    a, b = (tifffile.imread(cohort.slide_path(s)) for s in (first, second))
    assert a.shape == b.shape and not np.array_equal(a, b)
    stats = cohort.truth.slide_stats
    assert stats[f"{first}.tiff"]["nuclei"] != stats[f"{second}.tiff"]["nuclei"]
    assert cohort.truth.slide_lineage[f"{first}.tiff"] == cohort.truth.slide_lineage[f"{second}.tiff"] == lineage


def test_cohort_written_before_slide_table_reads_as_one_slide_per_lineage(small_cohort: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(small_cohort, old)
    slides = pd.read_csv(old / "slides.tsv", sep="\t", index_col=0)
    first = slides.groupby("lineage_id").head(1)
    lineages = pd.read_csv(old / "lineages.tsv", sep="\t", index_col=0)
    lineages["slide_file"] = first.set_index("lineage_id")["slide_file"].reindex(lineages.index)
    lineages.to_csv(old / "lineages.tsv", sep="\t")
    (old / "slides.tsv").unlink()
    cohort = load_cohort(old)
    assert len(cohort.slides) == len(cohort.lineages) and "slide_file" not in cohort.lineages
    assert cohort.slide_path(cohort.slides.index[0]).exists()


def test_slide_table_naming_an_unknown_lineage_is_a_clear_error(small_cohort: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(small_cohort, bad)
    slides = pd.read_csv(bad / "slides.tsv", sep="\t", index_col=0)
    slides.iloc[0, slides.columns.get_loc("lineage_id")] = "P99-L9"
    slides.to_csv(bad / "slides.tsv", sep="\t")
    with pytest.raises(ValueError, match="slides.tsv: slides name lineages not in lineages.tsv: \\['P99-L9'\\]"):
        load_cohort(bad)
