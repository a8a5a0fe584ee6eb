"""Synthetic MRI: determinism, anatomy and intensities, program → VASARI feature links, files and figures."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from gbhet_lib.data.synthetic.mri import (MRI_PROGRAM_EFFECTS, MRI_VISIBLE_PROGRAMS, MriEffects, MriGeometry,
                                          render_mri, render_mri_files)
from gbhet_lib.mri.figures import mri_panels, tumour_slice
from gbhet_lib.mri.traits import binarise_vasari, vasari_features
from gbhet_lib.mri.volumes import SEQUENCES, MriVolume, read_mri

PROGRAMS = ("hypoxia", "proliferation", "angiogenesis", "immune", "neural", "mesenchymal")
N_SUBJECTS = 150
T1, T1CE, T2, FLAIR = (SEQUENCES.index(s) for s in ("t1", "t1ce", "t2", "flair"))


def activities(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.Index([f"S{i:03d}" for i in range(n)], name="subject_id")
    return pd.DataFrame(rng.standard_normal((n, len(PROGRAMS))), index=index, columns=list(PROGRAMS))


@pytest.fixture(scope="module")
def population() -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """150 subjects: activities, VASARI features + planted stats, mean render seconds per subject."""
    act = activities(N_SUBJECTS, seed=2024)
    rows, seconds = [], 0.0
    for sid, child in zip(act.index, np.random.SeedSequence(99).spawn(N_SUBJECTS)):
        start = time.perf_counter()
        rendered = render_mri(act.loc[sid].to_dict(), np.random.default_rng(child))
        seconds += time.perf_counter() - start
        row = vasari_features(rendered.segmentation, (4.0, 4.0, 4.0), subject_id=sid)
        row.update({f"planted_{k}": v for k, v in rendered.stats.items()})
        rows.append(row)
    return act, pd.DataFrame(rows, index=act.index), seconds / N_SUBJECTS


def test_same_seed_same_volume_and_invisible_programs_change_nothing() -> None:
    act = {"hypoxia": 0.7, "angiogenesis": -0.3, "mesenchymal": 1.1}
    a = render_mri(act, np.random.default_rng(5))
    b = render_mri({**act, "immune": 3.0, "neural": -2.5, "proliferation": 2.0}, np.random.default_rng(5))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.segmentation, b.segmentation)
    assert a.stats == b.stats
    c = render_mri(act, np.random.default_rng(6))
    assert not np.array_equal(a.segmentation, c.segmentation)
    # a missing visible program counts as 0
    zero = render_mri({"hypoxia": 0.0, "angiogenesis": 0.0, "mesenchymal": 0.0}, np.random.default_rng(8))
    np.testing.assert_array_equal(render_mri({}, np.random.default_rng(8)).image, zero.image)
    assert a.image.dtype == np.float32 and a.image.shape == (4, 48, 56, 40)
    assert a.segmentation.dtype == np.uint8 and a.segmentation.shape == (48, 56, 40)


def test_background_is_zero_and_tumour_lies_in_one_hemisphere_of_the_brain() -> None:
    for seed in range(6):
        r = render_mri({}, np.random.default_rng(seed))
        brain = (r.image > 0).any(axis=0)
        for c in range(4):  # every sequence agrees on the brain: > 0 inside, exactly 0 outside
            np.testing.assert_array_equal(r.image[c] > 0, brain)
        assert 0.12 < brain.mean() < 0.45  # ≈ 1.4 l of brain in a 192×224×160 mm field of view
        assert not brain[0].any() and not brain[-1].any() and not brain[:, :, 0].any()
        assert np.all(brain[r.segmentation > 0]), "tumour outside the brain"
        assert set(np.unique(r.segmentation)) <= {0, 1, 2, 3, 4}
        core = np.isin(r.segmentation, (1, 3, 4))
        x_centre = np.nonzero(core)[0].mean() if r.stats["n_lesions"] == 1 else r.stats["centre_x"]
        assert abs(x_centre - 23.5) * 4.0 >= 8.0, "main tumour should sit in one hemisphere"
        assert r.image.max() < 4000


def test_tissue_intensities_are_ordered_like_brats() -> None:
    means: dict[str, list[float]] = {}
    for seed in range(6):
        r = render_mri({"angiogenesis": 0.5, "hypoxia": 1.0, "mesenchymal": 0.5}, np.random.default_rng(seed))
        seg, img = r.segmentation, r.image
        normal = (img > 0).any(axis=0) & (seg == 0)
        for name, sequence, region in (("enh_t1ce", T1CE, seg == 4), ("ncet_t1ce", T1CE, seg == 3),
                                       ("oed_flair", FLAIR, seg == 2), ("brain_flair", FLAIR, normal),
                                       ("nec_t1", T1, seg == 1), ("brain_t1", T1, normal),
                                       ("nec_t2", T2, seg == 1), ("brain_t2", T2, normal)):
            means.setdefault(name, []).append(float(img[sequence][region].mean()))
    m = {k: np.array(v) for k, v in means.items()}
    assert np.all(m["enh_t1ce"] > 1.4 * m["ncet_t1ce"])
    assert np.all(m["oed_flair"] > 1.3 * m["brain_flair"])
    assert np.all(m["nec_t1"] < 0.6 * m["brain_t1"])
    assert np.all(m["nec_t2"] > 1.3 * m["brain_t2"])


def test_programs_drive_their_features_and_controls_do_not(population) -> None:
    act, feats, _ = population

    def rho(feature: str, program: str) -> float:
        return float(spearmanr(feats[feature], act[program])[0])

    assert rho("proportion_necrosis", "hypoxia") > 0.6
    assert rho("proportion_enhancing", "angiogenesis") > 0.6
    assert rho("proportion_ncet", "angiogenesis") < -0.6
    assert rho("proportion_edema", "mesenchymal") > 0.6
    assert rho("t1_flair_ratio", "mesenchymal") < -0.6
    assert rho("margin_irregularity", "mesenchymal") > 0.5
    for feature in ("proportion_necrosis", "proportion_enhancing", "proportion_ncet", "proportion_edema",
                    "margin_irregularity", "n_lesions"):
        for control in ("immune", "neural", "proliferation"):
            assert abs(rho(feature, control)) < 0.25, (feature, control, rho(feature, control))
    # size and multifocality are drawn independently of every program
    for program in PROGRAMS:
        assert abs(rho("planted_core_radius_mm", program)) < 0.25
        assert abs(rho("n_lesions", program)) < 0.25
    # the segmentation carries the planted shares and lesion count
    assert float(spearmanr(feats["proportion_necrosis"], feats["planted_necrosis_share"])[0]) > 0.95
    assert (feats["n_lesions"] == feats["planted_n_lesions"]).mean() > 0.95


def test_traits_are_not_degenerate(population) -> None:
    _, feats, _ = population
    prevalence = binarise_vasari(feats).mean()
    for trait in ("trait_necrosis", "trait_enhancing", "trait_ncet", "trait_edema", "trait_infiltrative"):
        assert 0.2 <= prevalence[trait] <= 0.8, prevalence
    assert 0.65 <= prevalence["trait_focal"] <= 0.88, prevalence


def test_render_is_fast(population) -> None:
    # measured on 2 CPU cores: ≈ 25–30 ms per subject on the default 48×56×40 grid
    assert population[2] < 0.1


def test_effects_and_geometry_are_parameters() -> None:
    quiet = MriEffects(necrosis_max_share=0.0, satellite_probability=0.0)
    for seed in range(3):
        r = render_mri({"hypoxia": 3.0}, np.random.default_rng(seed), effects=quiet)
        assert not np.any(r.segmentation == 1) and r.stats["n_lesions"] == 1
    small = MriGeometry(shape=(24, 28, 20), voxel_mm=6.0)  # 144 mm field of view: the brain shrinks to fit
    r = render_mri({"mesenchymal": 1.0}, np.random.default_rng(0), geometry=small)
    assert r.image.shape == (4, 24, 28, 20)
    assert (r.segmentation > 0).any() and (r.image > 0).any(axis=0).mean() > 0.2
    with pytest.raises(ValueError, match=">= 16"):
        MriGeometry(shape=(8, 56, 40))
    with pytest.raises(ValueError, match="voxel_mm"):
        MriGeometry(voxel_mm=0.0)
    assert set(MRI_VISIBLE_PROGRAMS) <= set(MRI_PROGRAM_EFFECTS)
    assert "negative control" in MRI_PROGRAM_EFFECTS["immune"]
    assert dataclasses.is_dataclass(MriEffects) and MriEffects().satellite_probability == 0.25


def test_render_files_writes_readable_volumes_and_the_table(tmp_path: Path) -> None:
    act = activities(3, seed=1)
    folder = tmp_path / "mri"
    seed = np.random.SeedSequence(42)
    table = render_mri_files(folder, act, seed, progress=False)
    assert table.index.name == "subject_id" and list(table.index) == list(act.index)
    assert table.loc["S001", "mri_folder"] == "mri/S001"
    for column in ("planted_core_radius_mm", "planted_necrosis_share", "proportion_necrosis", "n_lesions",
                   "t1_flair_ratio", "margin_irregularity", "volume_enhancing_ml", "volume_whole_ml"):
        assert column in table.columns, column
    for i, sid in enumerate(act.index):
        volume = read_mri(tmp_path / table.loc[sid, "mri_folder"], sid)
        child = np.random.SeedSequence(42).spawn(3)[i]  # render_mri_files: subject i draws from child i
        rendered = render_mri(act.loc[sid].to_dict(), np.random.default_rng(child))
        np.testing.assert_array_equal(volume.segmentation, rendered.segmentation)
        assert np.abs(volume.image - rendered.image).max() <= rendered.image.max() / 32767
        assert volume.voxel_mm == (4.0, 4.0, 4.0)
        assert table.loc[sid, "proportion_necrosis"] == pytest.approx(
            vasari_features(volume.segmentation, volume.voxel_mm)["proportion_necrosis"])
        assert table.loc[sid, "volume_core_ml"] == pytest.approx(
            np.isin(volume.segmentation, (1, 3, 4)).sum() * 0.064)
    leftovers = [p for p in folder.rglob("*") if p.name.startswith(".")]
    assert not leftovers, leftovers


def test_panel_figure(tmp_path: Path) -> None:
    matplotlib.use("Agg")
    volumes = []
    for i in range(5):
        r = render_mri({"hypoxia": 1.0}, np.random.default_rng(i))
        volumes.append(MriVolume(f"S{i}", r.image, r.segmentation, (4.0, 4.0, 4.0)))
    z = tumour_slice(volumes[0])
    assert (volumes[0].segmentation[:, :, z] > 0).sum() == (volumes[0].segmentation > 0).sum(axis=(0, 1)).max()
    fig = mri_panels(volumes, max_subjects=3)
    assert len(fig.axes) == 3 * 5
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["necrosis", "oedema", "non-enhancing",
                                                                 "enhancing"]
    fig.savefig(tmp_path / "panels.png")
    assert (tmp_path / "panels.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="no volumes"):
        mri_panels([])


def test_bad_effects_and_duplicate_subjects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="oedema_max_share"):
        MriEffects(oedema_max_share=1.0)
    with pytest.raises(ValueError, match="core_radius_mm"):
        MriEffects(core_radius_mm=(20.0, 10.0))
    act = activities(2, seed=0).set_axis(["S1", "S1"])
    with pytest.raises(ValueError, match=r"\['S1'\] appear more than once"):
        render_mri_files(tmp_path / "mri", act, np.random.SeedSequence(0), progress=False)
