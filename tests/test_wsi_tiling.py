"""Magnification and level choice, the stain-hue rule, tissue GeoJSON, grid tiling to coords HDF5 and reading
patches back, on synthetic pyramids and the real CMU-1 SVS."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from data_mirror import mirror_root

from gbhet_lib.cli import main
from gbhet_lib.data.fetch import fetch
from gbhet_lib.data.synthetic import SlideGeometry
from gbhet_lib.data.synthetic.slides import render_slide, write_pyramidal_tiff
from gbhet_lib.wsi.slide_io import (level_for_magnification, magnification, open_slide, slide_mpp,
                                    slide_thumbnail)
from gbhet_lib.wsi.tiling import (TilingConfig, grid_coords, read_coords, read_patch, tile_slide, tile_slides)
from gbhet_lib.wsi.tissue import stain_hue_labels, tissue_mask, tissue_mask_geojson

GEOMETRY = SlideGeometry(width=2048, height=1536, mpp=0.5, level_downsamples=(1, 4, 16))
ATTRS = ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification", "mpp", "overlap",
         "read_level", "read_downsample", "slide_path", "slide_name", "min_tissue_fraction")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 2048×1536 px synthetic slide at 0.5 µm/px (20×), levels 1/4/16, and its level-0 pixels."""
    rgb = render_slide({}, np.random.default_rng(3), GEOMETRY).rgb
    return write_pyramidal_tiff(tmp_path_factory.mktemp("slides") / "synth.tiff", rgb, GEOMETRY), rgb


def _no_mpp_slide(path: Path) -> Path:
    """A tiled TIFF that openslide opens but that has no resolution tags (so no µm/px)."""
    rgb = np.full((512, 512, 3), 240, np.uint8)
    rgb[128:384, 128:384] = (180, 80, 160)
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="jpeg")
    return path




# --- magnification and level choice ---------------------------------------------------------------------------

def test_magnification_is_ten_over_mpp() -> None:
    assert [magnification(m) for m in (0.25, 0.5, 1.0)] == [40.0, 20.0, 10.0]
    with pytest.raises(ValueError, match="must be > 0"):
        magnification(0.0)


@pytest.mark.parametrize("target, expected", [(20, (0, 1.0)), (10, (0, 2.0)), (5, (1, 1.0)), (2.5, (1, 2.0)),
                                              (1.25, (2, 1.0)), (1.0, (2, 1.25))])
def test_level_for_magnification(rendered: tuple[Path, np.ndarray], target: float,
                                 expected: tuple[int, float]) -> None:
    with open_slide(rendered[0]) as slide:
        assert magnification(slide_mpp(slide)) == pytest.approx(20.0)
        level, residual = level_for_magnification(slide, target)
    assert (level, residual) == (expected[0], pytest.approx(expected[1]))


def test_level_for_magnification_with_override_and_errors(rendered: tuple[Path, np.ndarray]) -> None:
    with open_slide(rendered[0]) as slide:
        assert level_for_magnification(slide, 10, mpp=0.25) == (1, 1.0)  # 40x slide: 10x is level 1 exactly
        with pytest.raises(ValueError, match="scanned at 20x.*cannot be tiled at 40x"):
            level_for_magnification(slide, 40)


def test_missing_mpp_is_a_clear_error_unless_overridden(tmp_path: Path) -> None:
    path = _no_mpp_slide(tmp_path / "nompp.tiff")
    with open_slide(path) as slide:
        with pytest.raises(ValueError, match="nompp.tiff has no µm/px.*mpp_override"):
            level_for_magnification(slide, 10, path=path)
        assert level_for_magnification(slide, 10, mpp=0.5) == (0, 2.0)
    with pytest.raises(ValueError, match="mpp_override"):
        tile_slide(path, tmp_path / "out", TilingConfig(patch_size=64))
    coords, attrs = read_coords(tile_slide(path, tmp_path / "out", TilingConfig(patch_size=64, mpp_override=0.5)))
    assert attrs["mpp"] == 0.5 and attrs["patch_size_level0"] == 128 and len(coords) > 0


# --- stain-hue rule and GeoJSON --------------------------------------------------------------------------------

def _patch(colour: tuple[int, int, int], fraction: float = 1.0) -> np.ndarray:
    """A 256² patch whose first ``fraction`` of rows has ``colour`` and the rest is white."""
    patch = np.full((256, 256, 3), 255, np.uint8)
    patch[:round(256 * fraction)] = colour
    return patch


BROWN, BLUE = (150, 90, 40), (50, 90, 160)  # HLS hues 27° (DAB) and 218° (haematoxylin)


@pytest.mark.parametrize("patch, label", [
    (_patch(BROWN), "tumor"), (_patch(BLUE), "neutral"), (_patch((255, 255, 255)), None),
    (_patch(BROWN, 0.25), "tumor"), (_patch(BROWN, 0.15), None), (_patch(BLUE, 0.70), "neutral"),
    (_patch(BLUE, 0.5), None), (_patch((8, 5, 2)), None),  # too dark: lightness < 0.05
    (_patch((128, 128, 128)), None), (_patch((220, 60, 140)), None),  # grey; eosin pink (hue 330°)
])
def test_stain_hue_labels(patch: np.ndarray, label: str | None) -> None:
    assert stain_hue_labels(patch) == label


def test_stain_hue_labels_rejects_grey_images() -> None:
    with pytest.raises(ValueError, match="H×W×3"):
        stain_hue_labels(np.zeros((4, 4), np.uint8))


def test_tissue_mask_geojson() -> None:
    mask = np.zeros((20, 30), bool)
    mask[2:12, 3:13] = True
    mask[5:8, 6:9] = False  # a hole
    mask[15:18, 20:28] = True
    geo = tissue_mask_geojson(mask, downsample=4.0)
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 2
    rings_per_polygon = sorted(len(f["geometry"]["coordinates"]) for f in geo["features"])
    assert rings_per_polygon == [1, 2]
    for feature in geo["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        assert feature["properties"]["classification"]["name"] == "Tissue"
        for ring in feature["geometry"]["coordinates"]:
            assert ring[0] == ring[-1] and len(ring) >= 4
    points = np.concatenate([np.array(r) for f in geo["features"] for r in f["geometry"]["coordinates"]])
    assert points[:, 0].min() == pytest.approx(12.0) and points[:, 0].max() == pytest.approx(112.0)  # level-0 x
    assert points[:, 1].min() == pytest.approx(8.0) and points[:, 1].max() == pytest.approx(72.0)  # level-0 y
    assert tissue_mask_geojson(np.zeros((5, 5), bool), 1.0)["features"] == []


# --- tiling ----------------------------------------------------------------------------------------------------

def test_grid_coords_with_overlap() -> None:
    coords = grid_coords(1000, 600, patch_size_level0=400, stride_level0=300)
    assert coords.dtype == np.int64 and coords.tolist() == [[0, 0], [300, 0], [600, 0]]


def test_tile_slide_keeps_the_patches_the_mask_says(rendered: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, rgb = rendered
    config = TilingConfig(target_magnification=20.0, patch_size=256, min_tissue_fraction=0.5)
    h5_path = tile_slide(path, tmp_path, config)
    assert h5_path == tmp_path / "synth.h5"
    coords, attrs = read_coords(h5_path)
    assert set(ATTRS) <= set(attrs)
    assert (attrs["patch_size_level0"], attrs["read_level"], attrs["read_downsample"]) == (256, 0, 1.0)
    assert (attrs["mpp"], attrs["level0_magnification"], attrs["slide_name"]) == (0.5, 20.0, "synth")
    # hand count: 8×6 grid of 256-px patches, each judged on its 128² block of the 1024-px thumbnail's mask
    with open_slide(path) as slide:
        thumb, downsample = slide_thumbnail(slide, 1024)
    assert downsample == (2.0, 2.0)
    mask = tissue_mask(thumb)
    expected = [(x, y) for y in range(0, 1536 - 255, 256) for x in range(0, 2048 - 255, 256)
                if mask[y // 2:(y + 256) // 2, x // 2:(x + 256) // 2].mean() >= 0.5]
    assert 10 <= len(expected) < 48 and [tuple(c) for c in coords] == expected
    assert ((coords >= 0) & (coords + 256 <= [2048, 1536])).all()
    with h5py.File(h5_path) as h5:
        assert h5["coords"].dtype == np.int64 and (h5["tissue_fraction"][:] >= 0.5).all()
        assert "labels" not in h5
    # kept patches hold tissue (darker than the near-white glass, ~250; pale-pink necrosis is ~230)
    for x, y in coords:
        assert rgb[y:y + 256, x:x + 256].mean() < 240


def test_read_patch_reads_and_resizes(rendered: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, rgb = rendered
    coords, attrs = read_coords(tile_slide(path, tmp_path, TilingConfig(target_magnification=10.0)))
    assert (attrs["patch_size_level0"], attrs["read_level"], attrs["read_downsample"]) == (512, 0, 2.0)
    with open_slide(path) as slide:
        patch = read_patch(slide, coords[0], attrs)
    assert patch.shape == (256, 256, 3) and patch.dtype == np.uint8
    x, y = coords[0]
    level0 = rgb[y:y + 512, x:x + 512].astype(float)
    assert np.abs(patch.mean(axis=(0, 1)) - level0.mean(axis=(0, 1))).max() < 3  # same region, downsampled
    # at 5x the best level is 1 (downsample 4), read without a residual
    coords5, attrs5 = read_coords(tile_slide(path, tmp_path / "5x", TilingConfig(target_magnification=5.0,
                                                                                 min_tissue_fraction=0.2)))
    assert (attrs5["read_level"], attrs5["read_downsample"], attrs5["patch_size_level0"]) == (1, 1.0, 1024)
    with open_slide(path) as slide:
        assert read_patch(slide, coords5[0], attrs5).shape == (256, 256, 3)


def test_tile_slide_with_stain_rule_writes_labels(rendered: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    coords, _ = read_coords(tile_slide(rendered[0], tmp_path, TilingConfig(stain_rule=True)))
    with h5py.File(tmp_path / "synth.h5") as h5:
        labels = h5["labels"].asstr()[:]
    assert len(labels) == len(coords) and set(labels) <= {"tumor", "neutral", ""}


def test_tile_slides_resumes_and_reports_a_corrupt_slide(rendered: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    second = tmp_path / "copy.tiff"
    second.write_bytes(rendered[0].read_bytes())
    corrupt = tmp_path / "corrupt.svs"
    corrupt.write_bytes(b"II*\x00 not really a slide")
    out = tmp_path / "coords"
    report = tile_slides([rendered[0], corrupt, second], out, n_jobs=2, progress=False)
    assert list(report.columns) == ["slide", "patches", "status", "error", "seconds"]
    assert report.status.tolist() == ["ok", "failed", "ok"]
    assert report.slide[1] == str(corrupt) and "cannot be read by openslide" in report.error[1]
    assert report.patches[0] == report.patches[2] > 0 and report.patches[1] == 0
    assert sorted(p.name for p in out.iterdir()) == ["copy.h5", "synth.h5"]  # no temporary files left
    before = (out / "synth.h5").stat().st_mtime_ns
    again = tile_slides([rendered[0], corrupt, second], out, n_jobs=1, progress=False)
    assert again.status.tolist() == ["skipped", "failed", "skipped"]
    assert again.patches.tolist() == report.patches.tolist() and (out / "synth.h5").stat().st_mtime_ns == before
    changed = tile_slides([rendered[0]], out, TilingConfig(min_tissue_fraction=0.9), progress=False)
    assert changed.status.tolist() == ["ok"] and changed.patches[0] <= report.patches[0]


def test_tile_slides_rejects_duplicate_stems(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same name stem"):
        tile_slides([tmp_path / "a" / "s.svs", tmp_path / "b" / "s.tiff"], tmp_path, progress=False)


@pytest.mark.parametrize("fields, message", [({"patch_size": 0}, "patch_size"), ({"overlap": 256}, "overlap"),
                                             ({"min_tissue_fraction": 1.5}, "min_tissue_fraction"),
                                             ({"target_magnification": 0}, "target_magnification"),
                                             ({"mpp_override": -1.0}, "mpp_override")])
def test_tiling_config_validation(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TilingConfig(**fields)


def test_cli_tile(rendered: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tile", str(rendered[0]), "--out", str(tmp_path), "--mag", "20", "--jobs", "1"]) == 0
    assert "synth.tiff" in capsys.readouterr().out and (tmp_path / "synth.h5").is_file()
    (tmp_path / "bad.tif").write_bytes(b"junk")
    assert main(["tile", str(tmp_path), "--out", str(tmp_path / "o"), "--jobs", "1"]) == 1
    assert "failed" in capsys.readouterr().out
    assert main(["tile", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert main(["tile", str(rendered[0]), "--out", str(tmp_path), "--overlap", "256"]) == 2


def test_real_cmu1_svs_tiles_at_10x(tmp_path: Path) -> None:
    svs = fetch("cmu1_small_region_svs", mirror=mirror_root())
    report = tile_slides([svs], tmp_path, TilingConfig(target_magnification=10.0), progress=False)
    assert report.status.tolist() == ["ok"], report.error.tolist()
    coords, attrs = read_coords(tmp_path / f"{svs.stem}.h5")
    # 2220×2967 px at 0.499 µm/px (20.04x): 513-px level-0 patches, a 4×5 grid. Tissue is a diagonal strip
    # covering about 35 % of the region, so 6 of the 20 patches are at least half tissue (checked by eye).
    assert attrs["level0_magnification"] == pytest.approx(20.04, abs=0.01) and attrs["patch_size_level0"] == 513
    assert (attrs["read_level"], attrs["read_downsample"]) == (0, pytest.approx(2.004, abs=1e-3))
    assert 5 <= len(coords) <= 8, len(coords)
    assert ((coords >= 0) & (coords + 513 <= [2220, 2967])).all()
    with open_slide(svs) as slide:
        assert read_patch(slide, coords[0], attrs).shape == (256, 256, 3)
