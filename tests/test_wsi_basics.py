"""Slide I/O errors, Otsu thresholding and tissue masks."""
from __future__ import annotations

from pathlib import Path

import shutil

import numpy as np
import pytest

from data_mirror import mirror_root

from gbhet_lib.data.cohort import CohortTruth
from gbhet_lib.data.fetch import fetch
from gbhet_lib.wsi.slide_io import list_slides, open_slide, read_thumbnail
from gbhet_lib.wsi.tissue import otsu_threshold, saturation, tissue_mask


def test_otsu_separates_two_populations() -> None:
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.1, 0.02, 500), rng.normal(0.6, 0.05, 300)
    threshold = otsu_threshold(np.concatenate([low, high]))
    assert (low <= threshold + 0.01).all() and (high > threshold).all()


def test_otsu_of_a_blank_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="blank"):
        otsu_threshold(np.zeros(10))


def test_saturation_of_grey_is_zero_and_of_red_is_one() -> None:
    rgb = np.array([[[128, 128, 128], [255, 0, 0]]], np.uint8)
    np.testing.assert_allclose(saturation(rgb), [[0.0, 1.0]])


def test_tissue_mask_matches_the_drawn_tissue(small_cohort: Path) -> None:
    truth = CohortTruth.load(small_cohort / "truth.json")
    for name, stats in truth.slide_stats.items():
        thumb, downsample = read_thumbnail(small_cohort / "slides" / name, max_size=256)
        assert downsample == pytest.approx(4.0)
        assert thumb[:4, :4].min() > 200  # background is near-white, no overflowed pixels
        assert tissue_mask(thumb).mean() == pytest.approx(stats["tissue_fraction"], abs=0.05), name


def test_tissue_mask_rejects_grey_images() -> None:
    with pytest.raises(ValueError, match="H×W×3"):
        tissue_mask(np.zeros((10, 10), np.uint8))


def test_list_slides_of_a_synthetic_cohort(small_cohort: Path, small_spec) -> None:
    table = list_slides(small_cohort / "slides")
    assert table["readable"].all() and (table["mpp"] == small_spec.slide.mpp).all() and (table["levels"] >= 3).all()
    assert set(table["downsamples"]) == {"1, 4, 16"}


def test_missing_and_unreadable_slides_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.svs does not exist"):
        open_slide(tmp_path / "missing.svs")
    junk = tmp_path / "junk.tiff"
    junk.write_bytes(b"not a slide")
    with pytest.raises(ValueError, match="junk.tiff cannot be read by openslide"):
        open_slide(junk)




def test_list_slides(tmp_path: Path) -> None:
    shutil.copy(fetch("cmu1_small_region_svs", mirror=mirror_root()), tmp_path / "CMU-1.SVS")
    shutil.copy(fetch("tcga_06_0174_roi_pyramidal_tiff", mirror=mirror_root()), tmp_path)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    (tmp_path / "notes.txt").write_text("x")
    table = list_slides(tmp_path)
    assert [Path(p).name for p in table.path] == ["CMU-1.SVS", "TCGA-06-0174_roi_pyramidal_demo.tiff", "broken.tif"]
    svs, tiff, broken = (table.iloc[i] for i in range(3))
    assert (svs.vendor, svs.width_px, svs.height_px, svs.levels, svs.mpp) == ("aperio", 2220, 2967, 1, 0.499)
    assert (tiff.vendor, tiff.levels, tiff.readable) == ("generic-tiff", 3, True)
    assert not broken.readable and "cannot be read by openslide" in broken.error and np.isnan(broken.mpp)


def test_list_slides_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no slide files matching \*\.svs.*it is empty.*patterns="):
        list_slides(tmp_path)
    (tmp_path / "roi.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"it holds only \.png files"):
        list_slides(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere: slide folder not found"):
        list_slides(tmp_path / "nowhere")
