"""VASARI-style features and traits on hand-built segmentations with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.mri.traits import (INFILTRATIVE_T1_FLAIR_RATIO, TRAITS, binarise_vasari, margin_irregularity,
                                  subregion_volumes_ml, vasari_features)

GRID = np.indices((48, 48, 48)) - 24.0  # voxel offsets from the centre


def radius(centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    return np.sqrt(sum((GRID[i] - centre[i]) ** 2 for i in range(3)))


def concentric(necrosis: float, enhancing: float, non_enhancing: float, oedema: float) -> np.ndarray:
    """Spheres (radii in voxels): necrosis inside an enhancing shell, then non-enhancing tumour, then oedema."""
    r = radius()
    seg = np.zeros(r.shape, np.uint8)
    seg[r <= oedema] = 2
    seg[r <= non_enhancing] = 3
    seg[r <= enhancing] = 4
    seg[r <= necrosis] = 1
    return seg


def test_concentric_spheres_give_the_volume_proportions() -> None:
    seg = concentric(6, 9, 11, 16)
    f = vasari_features(seg, (1.0, 1.0, 1.0))
    # continuum answers: shells of a sphere of radius 11 inside an oedema sphere of radius 16
    assert f["proportion_necrosis"] == pytest.approx((6 / 11) ** 3, abs=0.02)
    assert f["proportion_enhancing"] == pytest.approx((9**3 - 6**3) / 11**3, abs=0.02)
    assert f["proportion_ncet"] == pytest.approx((11**3 - 9**3) / 11**3, abs=0.02)
    assert f["proportion_edema"] == pytest.approx(1 - (11 / 16) ** 3, abs=0.02)
    assert f["t1_flair_ratio"] == pytest.approx((11 / 16) ** 3, abs=0.02)
    assert f["proportion_necrosis"] + f["proportion_enhancing"] + f["proportion_ncet"] == pytest.approx(1.0)
    assert f["n_lesions"] == 1
    assert 0.97 < f["margin_irregularity"] < 1.05  # a sphere


def test_subregion_volumes_scale_with_the_voxel_size() -> None:
    seg = concentric(6, 9, 11, 16)
    counts = {k: int(np.sum(seg == v)) for k, v in (("necrosis", 1), ("oedema", 2), ("non_enhancing", 3),
                                                    ("enhancing", 4))}
    vol = subregion_volumes_ml(seg, (2.0, 2.0, 3.0))  # 12 mm³ = 0.012 ml per voxel
    for name, n in counts.items():
        assert vol[name] == pytest.approx(n * 0.012)
    assert vol["core"] == pytest.approx((counts["necrosis"] + counts["non_enhancing"] + counts["enhancing"]) * 0.012)
    assert vol["whole"] == pytest.approx(sum(counts.values()) * 0.012)
    assert vol["whole"] == pytest.approx(4 / 3 * np.pi * 16**3 * 0.012, rel=0.02)


def test_two_separate_cores_are_multifocal_and_specks_do_not_count() -> None:
    seg = np.zeros(GRID.shape[1:], np.uint8)
    seg[radius((-10, 0, 0)) <= 5] = 4
    seg[radius((12, 0, 0)) <= 4] = 1
    seg[0, 0, 0] = 4  # a 1-voxel speck: 0.008 ml at 2 mm, far below 0.5 ml
    f = vasari_features(seg, (2.0, 2.0, 2.0))  # cores of 515 and 257 voxels: 4.1 ml and 2.1 ml
    assert f["n_lesions"] == 2
    assert binarise_vasari(pd.DataFrame([f]))["trait_focal"].item() == 0
    # at 1 mm the second core is 0.26 ml, below the 0.5 ml cut-off: focal again
    assert vasari_features(seg, (1.0, 1.0, 1.0))["n_lesions"] == 1
    assert vasari_features(seg, (2.0, 2.0, 2.0), min_lesion_ml=3.0)["n_lesions"] == 1


def test_lesions_touching_at_a_corner_are_one_26_connected_lesion() -> None:
    seg = np.zeros((20, 20, 20), np.uint8)
    seg[2:10, 2:10, 2:10] = 4
    seg[10:18, 10:18, 10:18] = 3  # shares only the corner (9, 9, 9)–(10, 10, 10)
    assert vasari_features(seg, (1.0, 1.0, 1.0))["n_lesions"] == 1
    seg[10, 10, 10] = 0
    assert vasari_features(seg, (1.0, 1.0, 1.0))["n_lesions"] == 2


def test_tiny_core_still_counts_as_one_lesion() -> None:
    seg = np.zeros((10, 10, 10), np.uint8)
    seg[4:6, 4:6, 4:6] = 4  # 8 voxels of 1 mm: 0.008 ml
    assert vasari_features(seg, (1.0, 1.0, 1.0))["n_lesions"] == 1


def test_expansive_versus_infiltrative() -> None:
    expansive = vasari_features(concentric(4, 7, 10, 11), (1.0, 1.0, 1.0))
    infiltrative = vasari_features(concentric(4, 7, 10, 16), (1.0, 1.0, 1.0))
    assert expansive["t1_flair_ratio"] == pytest.approx((10 / 11) ** 3, abs=0.03)
    assert infiltrative["t1_flair_ratio"] == pytest.approx((10 / 16) ** 3, abs=0.03)
    traits = binarise_vasari(pd.DataFrame([expansive, infiltrative], index=["exp", "inf"]))
    assert traits.loc["exp", "trait_infiltrative"] == 0 and traits.loc["inf", "trait_infiltrative"] == 1
    assert traits.loc["exp", "trait_edema"] == 0 and traits.loc["inf", "trait_edema"] == 1


def test_irregular_margins_score_above_a_sphere() -> None:
    r = radius()
    theta = np.arctan2(GRID[1], GRID[0])
    phi = np.arccos(np.clip(GRID[2] / np.maximum(r, 1e-6), -1, 1))
    lobulated = r <= 12 * (1 + 0.3 * np.cos(5 * theta) * np.sin(phi) ** 2)
    sphere = r <= 12
    assert margin_irregularity(sphere, (1.0, 1.0, 1.0)) == pytest.approx(1.0, abs=0.03)
    assert margin_irregularity(lobulated, (1.0, 1.0, 1.0)) > 1.15
    # anisotropic voxels: a sphere sampled at (1, 1, 2) mm is still a sphere
    x, y, z = np.indices((40, 40, 24)) - np.array([20, 20, 12])[:, None, None, None]
    coarse_z = np.sqrt(x**2 + y**2 + (2.0 * z) ** 2) <= 14
    assert margin_irregularity(coarse_z, (1.0, 1.0, 2.0)) == pytest.approx(1.0, abs=0.05)


def test_empty_tumour_raises_and_names_the_subject() -> None:
    with pytest.raises(ValueError, match="subject GBM-009: segmentation has no tumour core"):
        vasari_features(np.zeros((8, 8, 8), np.uint8), (1.0, 1.0, 1.0), subject_id="GBM-009")
    oedema_only = np.zeros((8, 8, 8), np.uint8)
    oedema_only[2:5, 2:5, 2:5] = 2
    with pytest.raises(ValueError, match="no tumour core"):
        vasari_features(oedema_only, (1.0, 1.0, 1.0))


def test_binarisation_at_the_exact_thresholds() -> None:
    third = 1.0 / 3.0
    below = np.nextafter(third, 0.0)
    table = pd.DataFrame({
        "proportion_enhancing": [third, below],
        "proportion_ncet": [below, third],
        "proportion_necrosis": [third, below],
        "proportion_edema": [below, third],
        "n_lesions": [1.0, 2.0],
        "t1_flair_ratio": [INFILTRATIVE_T1_FLAIR_RATIO, np.nextafter(INFILTRATIVE_T1_FLAIR_RATIO, 0.0)],
    }, index=pd.Index(["a", "b"], name="subject_id"))
    traits = binarise_vasari(table)
    assert list(traits.columns) == [f"trait_{t}" for t in TRAITS]
    assert (traits.dtypes == np.int64).all()
    assert traits.index.equals(table.index)
    assert traits.loc["a"].to_dict() == {"trait_enhancing": 1, "trait_ncet": 0, "trait_necrosis": 1,
                                         "trait_focal": 1, "trait_infiltrative": 0, "trait_edema": 0}
    assert traits.loc["b"].to_dict() == {"trait_enhancing": 0, "trait_ncet": 1, "trait_necrosis": 0,
                                         "trait_focal": 0, "trait_infiltrative": 1, "trait_edema": 1}


def test_binarisation_refuses_missing_columns_and_values() -> None:
    good = pd.DataFrame([vasari_features(concentric(4, 7, 10, 13), (1.0, 1.0, 1.0))], index=["s1"])
    with pytest.raises(ValueError, match="'n_lesions' .*trait_focal"):
        binarise_vasari(good.drop(columns="n_lesions"))
    bad = pd.concat([good, good.rename(index={"s1": "s2"})])
    bad.loc["s2", "t1_flair_ratio"] = np.nan
    with pytest.raises(ValueError, match=r"'t1_flair_ratio' is missing or non-numeric for \['s2'\]"):
        binarise_vasari(bad)


def test_bad_segmentations_are_refused() -> None:
    with pytest.raises(ValueError, match="3-D"):
        subregion_volumes_ml(np.zeros((4, 4), np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"labels \[7\]"):
        subregion_volumes_ml(np.full((4, 4, 4), 7, np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="voxel_mm"):
        subregion_volumes_ml(np.zeros((4, 4, 4), np.uint8), (1.0, -1.0, 1.0))
