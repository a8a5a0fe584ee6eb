"""Hand-crafted colour/texture baseline encoder (gbhet_lib.wsi.handcrafted): shapes, units, agreement with
scikit-image, clear errors, and that its slide-level probe reads proliferation on rendered synthetic slides."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.data.synthetic import SlideGeometry, render_slide
from gbhet_lib.evaluate.probes import slide_probe
from gbhet_lib.wsi.handcrafted import FEATURE_NAMES, handcrafted_features, stain_od

F = len(FEATURE_NAMES)


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_NAMES.index(name)]


def grid_patches(rgb: np.ndarray, size: int, min_tissue: float = 0.5) -> np.ndarray:
    """Non-overlapping size × size patches (N, size, size, 3) of an RGB image with ≥ ``min_tissue`` non-white px."""
    h, w = rgb.shape[0] // size, rgb.shape[1] // size
    tiles = rgb[:h * size, :w * size].reshape(h, size, w, size, 3).swapaxes(1, 2).reshape(-1, size, size, 3)
    return tiles[(tiles.mean(axis=-1) < 235).mean(axis=(1, 2)) >= min_tissue]


def test_shapes_names_dtype_and_batching() -> None:
    patches = np.random.default_rng(0).integers(0, 256, (7, 64, 48, 3), dtype=np.uint8)
    features, names = handcrafted_features(patches)
    assert features.shape == (7, F) and features.dtype == np.float32 and np.isfinite(features).all()
    assert names == list(FEATURE_NAMES) and len(set(names)) == F
    np.testing.assert_array_equal(handcrafted_features(patches, batch=2)[0], features)
    empty, _ = handcrafted_features(patches[:0])
    assert empty.shape == (0, F) and empty.dtype == np.float32


def test_reads_an_h5py_patch_store(tmp_path) -> None:
    import h5py

    patches = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "store.h5", "w") as h5:
        h5["patches"] = patches
    with h5py.File(tmp_path / "store.h5", "r") as h5:
        from_store, _ = handcrafted_features(h5["patches"], batch=2)
    np.testing.assert_array_equal(from_store, handcrafted_features(patches)[0])


def test_stain_od_is_rgb2hed_in_natural_log_units() -> None:
    from skimage.color import rgb2hed

    rgb = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    rgb[0, 0, 0] = 0  # black: the 1e-6 floor
    np.testing.assert_allclose(stain_od(rgb), rgb2hed(rgb) * np.log(1e6), rtol=1e-4, atol=1e-4)
    # at full resolution the H statistics are those of the deconvolved pixels
    features, _ = handcrafted_features(rgb, downsample=1)
    np.testing.assert_allclose(column(features, "h_mean"), stain_od(rgb)[..., 0].mean(axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(column(features, "rgb_mean_g"), rgb[..., 1].mean(axis=(1, 2)) / 255, rtol=1e-5)


def test_glcm_matches_skimage() -> None:
    from skimage.feature import graycomatrix, graycoprops

    from gbhet_lib.wsi.handcrafted import GLCM_DISTANCES, GLCM_H_MAX, GLCM_LEVELS, _glcm

    rng = np.random.default_rng(3)
    stain_h = np.stack([rng.random((40, 40)) * 1.2, np.full((40, 40), 0.3)]).astype(np.float32)  # one flat
    ours = _glcm(stain_h)
    for b, image in enumerate(stain_h):
        levels = np.clip(image * ((GLCM_LEVELS - 1) / GLCM_H_MAX), 0, GLCM_LEVELS - 1).round().astype(np.uint8)
        matrix = graycomatrix(levels, GLCM_DISTANCES, [0, np.pi / 2], levels=GLCM_LEVELS, symmetric=True,
                              normed=True)
        theirs = np.stack([graycoprops(matrix, p).mean(axis=1) for p in
                           ("contrast", "homogeneity", "energy", "correlation")], axis=1).ravel()
        np.testing.assert_allclose(ours[b], theirs, rtol=1e-6, atol=1e-9)


def test_features_mean_what_they_say() -> None:
    size = 64
    white = np.full((size, size, 3), 250, np.uint8)
    pink = np.empty_like(white)
    pink[:] = (240, 160, 235)  # eosin only
    red = np.empty_like(white)
    red[:] = (235, 90, 110)  # erythrocytes
    dotted = pink.copy()
    yy, xx = np.mgrid[0:size, 0:size]
    for cy, cx in [(10, 10), (10, 40), (30, 25), (50, 12), (48, 50)]:
        dotted[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = (70, 60, 150)  # haematoxylin nuclei, radius 4 px
    features, _ = handcrafted_features(np.stack([white, pink, red, dotted]))
    background, eosin, blood, nuclei = (column(features, n) for n in
                                        ("background_fraction", "eosinophilic_fraction", "red_fraction",
                                         "nuclear_fraction"))
    assert background[0] == 1 and background[1:].max() == 0
    assert eosin[1] == 1 and eosin[0] == 0
    assert blood[2] == 1 and blood[[0, 1, 3]].max() == 0
    assert nuclei[3] > 0.05 and nuclei[:3].max() == 0
    # five nuclei in 32 × 32 working px → about 49 per 10,000 px
    assert column(features, "blob_density")[3] == pytest.approx(5 * 1e4 / 32 ** 2, rel=0.25)
    assert column(features, "blob_density")[:3].max() == 0


def test_clear_errors_on_bad_input() -> None:
    good = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        handcrafted_features(good.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        handcrafted_features(good[..., 0])
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        handcrafted_features(np.zeros((2, 64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        handcrafted_features(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="≥ 1"):
        handcrafted_features(good, batch=0)
    with pytest.raises(ValueError, match="uint8 array"):
        handcrafted_features([[0]])


def render_cohort(seed: int = 11, n_patients: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Handcrafted features of 64-px patches (10×) of small rendered slides: ``n_patients`` × 2 slides, each slide
    with its own activities and stain jitter, plus a pure-noise target per slide. Returns (features, slide per patch,
    patient per patch, slide targets)."""
    rng = np.random.default_rng(seed)
    geometry = SlideGeometry(width=1024, height=768)
    features, slides, patients, targets = [], [], [], {}
    for p in range(n_patients):
        for s in range(2):
            activity = {"hypoxia": rng.normal(), "proliferation": rng.uniform(-2, 2), "angiogenesis": rng.normal()}
            rgb = render_slide(activity, rng, geometry).rgb
            rgb = rgb.reshape(384, 2, 512, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)  # 20× → 10×
            x, _ = handcrafted_features(grid_patches(rgb, 64))
            sid = f"P{p}-S{s}"
            features.append(x)
            slides += [sid] * len(x)
            patients += [f"P{p}"] * len(x)
            targets[sid] = {**activity, "noise": rng.normal()}
    return np.concatenate(features), np.array(slides), np.array(patients), pd.DataFrame(targets).T


@pytest.fixture(scope="module")
def rendered() -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    return render_cohort()


def test_slide_probe_reads_proliferation_not_noise(rendered) -> None:
    features, slide, patient, targets = rendered
    assert len(features) > 12 * 15  # a few dozen tissue patches per slide
    probe = slide_probe(features, targets, slide, patient, folds=3)
    assert probe.slide_r2["proliferation"] > 0.6
    assert probe.slide_r2["noise"] <= 0.1
    assert probe.slide_predictions.shape == (12, 4)
