"""Planted-structure maps beside synthetic slides, and the slide heat maps of the published method."""
from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from gbhet_lib.data.cohort import Cohort, slide_table  # noqa: E402
from gbhet_lib.data.synthetic.slides import (ProgramEffects, SlideGeometry, read_structures,  # noqa: E402
                                             render_slide, render_slide_files)
from gbhet_lib.interpret.heatmaps import (best_patch, heatmap_grid, saliency_map, saliency_overlay,  # noqa: E402
                                          score_overlay, slide_heatmap_figure, structures_rgb)
from gbhet_lib.plots import save_figure  # noqa: E402

TINY = SlideGeometry(width=512, height=384)
ACTIVITY = {"hypoxia": 0.5, "proliferation": 0.3, "angiogenesis": 1.0}
# Measured on the renderer BEFORE the structure maps were added (same activity, seed 7, 512×384): the maps must
# not change a pixel, a statistic or the random stream that existing cohorts and tests rely on.
PIXELS_SHA256_BEFORE = "c29ab999167a28d5911b70189b19a793a6c8d2884b03fc200517b841b51330cb"
NEXT_DRAW_BEFORE = 0.7961720269795755
STATS_BEFORE = {"nuclei": 86, "vessels": 9}


def _plasma(value: float) -> np.ndarray:
    return np.asarray(colormaps["plasma"](value)[:3]) * 255.0


def test_structure_maps_leave_pixels_stats_and_random_stream_unchanged() -> None:
    rng = np.random.default_rng(7)
    slide = render_slide(ACTIVITY, rng, TINY)
    assert hashlib.sha256(slide.rgb.tobytes()).hexdigest() == PIXELS_SHA256_BEFORE
    assert {k: slide.stats[k] for k in STATS_BEFORE} == STATS_BEFORE
    assert rng.random() == NEXT_DRAW_BEFORE


def test_structure_maps_have_coarse_shape_and_match_the_stats() -> None:
    slide = render_slide(ACTIVITY, np.random.default_rng(7), TINY)
    st = slide.structures
    assert set(st) == {"necrosis", "vessels", "cellularity", "tissue"}
    for name, m in st.items():
        assert m.shape == (TINY.height // 8, TINY.width // 8) and m.dtype == np.float32, name
    assert set(np.unique(st["tissue"])) <= {0.0, 1.0}
    assert 0.0 <= st["necrosis"].min() and st["necrosis"].max() <= 1.0
    assert 0.0 <= st["vessels"].min() and st["vessels"].max() <= 1.0
    tissue = st["tissue"] > 0
    necrosis_of_tissue = st["necrosis"][tissue].mean()
    assert necrosis_of_tissue == pytest.approx(slide.stats["necrosis_fraction_of_tissue"], abs=0.03)
    # intact nuclei only: none counted where the cell is necrotic, never more than all nuclei seeded
    assert 0 < st["cellularity"].sum() <= slide.stats["nuclei"]
    assert st["cellularity"][st["necrosis"] == 1.0].sum() == 0


def test_necrosis_map_lies_on_the_necrotic_pixels() -> None:
    """Necrosis is drawn with little haematoxylin and no intact nuclei, so over tissue the map correlates with low
    red-channel optical density; the same map flipped (a transposed or mirrored grid) does not."""
    slide = render_slide({"hypoxia": 1.0}, np.random.default_rng(5), TINY)
    od = -np.log(np.maximum(slide.rgb[..., 0], 1) / 255.0)
    od = od.reshape(TINY.height // 8, 8, TINY.width // 8, 8).mean(axis=(1, 3))
    necrosis, tissue = slide.structures["necrosis"], slide.structures["tissue"] > 0

    def agreement(m: np.ndarray) -> float:
        return float(np.corrcoef(m[tissue], -od[tissue])[0, 1])

    assert agreement(necrosis) > 0.3
    assert agreement(necrosis) > max(agreement(necrosis[::-1]), agreement(necrosis[:, ::-1])) + 0.2


def test_vessels_and_hypoxia_show_in_the_maps() -> None:
    many = ProgramEffects(vessels_per_mm2=400.0)
    with_vessels = render_slide({"angiogenesis": 1.0}, np.random.default_rng(2), TINY, many)
    assert with_vessels.stats["vessels"] > 0 and with_vessels.structures["vessels"].sum() > 0
    without = render_slide({"angiogenesis": 1.0}, np.random.default_rng(2), TINY, ProgramEffects(vessels_per_mm2=0.0))
    assert without.stats["vessels"] == 0 and without.structures["vessels"].sum() == 0
    low = render_slide({"hypoxia": -2.0}, np.random.default_rng(4), TINY).structures
    high = render_slide({"hypoxia": 2.0}, np.random.default_rng(4), TINY).structures
    assert high["necrosis"].sum() > 2 * low["necrosis"].sum()
    dense = render_slide({"proliferation": 2.5}, np.random.default_rng(4), TINY).structures
    sparse = render_slide({"proliferation": -2.5}, np.random.default_rng(4), TINY).structures
    assert dense["cellularity"].sum() > 2 * sparse["cellularity"].sum()


def test_structures_written_beside_the_slide_and_read_by_the_cohort(tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    activity = pd.DataFrame([ACTIVITY], index=["L1-S1"])
    stats = render_slide_files(folder, activity, TINY, np.random.SeedSequence(3), n_jobs=1, progress=False)
    assert list(stats) == ["L1-S1.tiff"]
    assert sorted(p.name for p in folder.iterdir()) == ["L1-S1.structures.npz", "L1-S1.tiff"]  # no temp files left
    expected = render_slide(ACTIVITY, np.random.default_rng(np.random.SeedSequence(3).spawn(1)[0]), TINY).structures

    empty = pd.DataFrame()
    cohort = Cohort(root=tmp_path, metadata={}, genes=empty, expression_lineages=empty, expression_pool=empty,
                    lineages=empty, patients=empty, pool_clinical=empty, ppi_edges=empty, truth=None,
                    slides=slide_table({"L1": ["slides/L1-S1.tiff"]}))
    read = cohort.planted_structures("L1-S1")
    assert read is not None and read["coarse_step"] == 8 and isinstance(read["coarse_step"], int)
    assert read["mpp"] == pytest.approx(TINY.mpp)
    for name, m in expected.items():
        assert read[name].dtype == np.float32
        np.testing.assert_allclose(read[name], m, rtol=1e-3, atol=1e-3, err_msg=name)
    (folder / "L1-S1.structures.npz").unlink()
    assert cohort.planted_structures("L1-S1") is None
    assert read_structures(folder / "absent.structures.npz") is None


def test_score_overlay_paints_only_inside_patches_and_max_at_best() -> None:
    thumb = np.full((40, 60, 3), 200, np.uint8)
    coords = np.array([[0, 0], [160, 80], [320, 160]])  # level 0, downsample 8, patch 64 → 8×8 thumbnail px
    scores = np.array([0.2, 3.0, -1.0])
    out = score_overlay(thumb, 8.0, coords, 64, scores)
    assert out.dtype == np.uint8 and out.shape == thumb.shape
    inside = np.zeros((40, 60), bool)
    for x, y in coords // 8:
        inside[y:y + 8, x:x + 8] = True
    assert np.array_equal(out[~inside], thumb[~inside])
    assert (out[inside] != thumb[inside]).any(axis=-1).all()
    assert best_patch(scores) == 1
    np.testing.assert_allclose(out[10:18, 20:28], np.rint(0.5 * 200 + 0.5 * _plasma(1.0)) + np.zeros((8, 8, 3)),
                               atol=1)
    np.testing.assert_allclose(out[20, 40], np.rint(0.5 * 200 + 0.5 * _plasma(0.0)), atol=1)
    flat = score_overlay(thumb, 8.0, coords, 64, np.ones(3))
    np.testing.assert_allclose(flat[inside], np.broadcast_to(np.rint(100 + 0.5 * _plasma(0.5)), (inside.sum(), 3)),
                               atol=1)
    with pytest.raises(ValueError, match="one score per patch"):
        score_overlay(thumb, 8.0, coords, 64, scores[:2])


def test_saliency_zeroes_below_the_floor() -> None:
    grad = np.zeros((3, 16, 16))
    grad[:, :8] = 0.05  # normalised 0.05 → below the 0.1 floor
    grad[:, 0, 1] = 0.0  # the minimum, so normalised = |gradient|
    grad[:, 8:, :8] = 0.5
    grad[:, 8:, 8:] = -1.0  # |gradient|: the maximum
    sal = saliency_map(grad)
    assert (sal[:8] == 0).all() and sal[8:, :8] == pytest.approx(0.5) and (sal[8:, 8:] == 1).all()
    assert saliency_map(grad, floor=0.0)[0, 0] == pytest.approx(0.05)
    np.testing.assert_array_equal(saliency_map(np.moveaxis(grad, 0, -1)), sal)  # (S, S, 3) as well
    patch = np.full((16, 16, 3), 80, np.uint8)
    out = saliency_overlay(patch, grad)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[0, 0], np.rint(0.75 * _plasma(0.0) + 0.25 * 80), atol=1)
    np.testing.assert_allclose(out[15, 15], np.rint(0.75 * _plasma(1.0) + 0.25 * 80), atol=1)
    with pytest.raises(ValueError, match="patch has shape"):
        saliency_overlay(np.zeros((8, 8, 3), np.uint8), grad)


def test_structures_rgb_colours_the_planted_maps() -> None:
    shape = (6, 8)
    maps = {"tissue": np.ones(shape, np.float32), "necrosis": np.zeros(shape, np.float32),
            "vessels": np.zeros(shape, np.float32), "cellularity": np.zeros(shape, np.float32), "coarse_step": 8}
    maps["tissue"][0, 0] = 0
    maps["necrosis"][1, 1] = 1
    maps["vessels"][2, 2] = 1
    maps["cellularity"][3, 3] = 5
    rgb = structures_rgb(maps)
    assert rgb.shape == shape + (3,) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert rgb[1, 1, 2] > rgb[1, 1, 0]  # necrosis: blue
    assert rgb[2, 2, 0] > 200 and rgb[2, 2, 1] < 50  # vessel: red
    assert rgb[3, 3].mean() < rgb[4, 4].mean()  # dense nuclei: darker grey


def test_figure_builds_with_and_without_structures_and_saves(tmp_path: Path) -> None:
    slide = render_slide(ACTIVITY, np.random.default_rng(7), TINY)
    thumb, ds = slide.rgb[::4, ::4], 4.0
    xs, ys = np.meshgrid(np.arange(0, 512 - 63, 64), np.arange(0, 384 - 63, 64))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)
    scores = np.random.default_rng(0).random(len(coords))
    best = best_patch(scores)
    x, y = coords[best]
    patch = slide.rgb[y:y + 64, x:x + 64]
    grad = np.random.default_rng(1).standard_normal((3, 64, 64))
    paths = []
    for structures in (None, slide.structures | {"coarse_step": 8}):
        fig = slide_heatmap_figure("L1-S1", thumb, ds, coords, 64, scores, patch, grad, structures=structures,
                                   title_extra=" (test)")
        assert len(fig.axes) == (4 if structures is None else 5)  # panels + the colourbar
        boxes = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]
        assert boxes and boxes[0].get_xy() == (x / ds - 0.5, y / ds - 0.5) and boxes[0].get_width() == 16
        path = tmp_path / f"heat_{'with' if structures is not None else 'without'}.png"
        save_figure(fig, path)
        plt.close(fig)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        paths.append(path)
    grid = heatmap_grid(paths, ncols=2)
    assert len([ax for ax in grid.axes if ax.images]) == 2
    plt.close(grid)
