"""Patch stores: slide patches read once into uint8 HDF5, indexed with slide labels, served to DataLoaders."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from gbhet_lib.data.synthetic import SlideGeometry, render_slide, write_pyramidal_tiff
from gbhet_lib.wsi.patch_store import PatchStoreDataset, build_patch_store, index_stores
from gbhet_lib.wsi.tiling import TilingConfig, read_patch, tile_slide


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("slides")
    geometry = SlideGeometry(width=1536, height=1024)
    out = []
    for k, name in enumerate(["P01-L1", "P01-L2"]):
        rgb = render_slide({"hypoxia": 0.0, "proliferation": float(k), "angiogenesis": 0.0},
                           np.random.default_rng(k), geometry).rgb
        slide = write_pyramidal_tiff(folder / f"{name}.tiff", rgb, geometry)
        out.append((slide, tile_slide(slide, folder / "coords", TilingConfig(target_magnification=10.0,
                                                                              patch_size=128))))
    return out


def test_store_holds_the_patches_read_patch_gives(tiled, tmp_path: Path) -> None:
    import openslide

    slide, coords_h5 = tiled[0]
    store = build_patch_store(slide, coords_h5, tmp_path / "P01-L1.h5")
    with h5py.File(store, "r") as f, h5py.File(coords_h5, "r") as c, openslide.OpenSlide(str(slide)) as s:
        assert f["patches"].dtype == np.uint8 and f["patches"].shape == (len(c["coords"]), 128, 128, 3)
        assert np.array_equal(f["coords"][:], c["coords"][:]) and f.attrs["slide_name"] == "P01-L1"
        np.testing.assert_array_equal(f["patches"][3], read_patch(s, c["coords"][3], dict(c.attrs)))
    stamp = store.stat().st_mtime_ns
    build_patch_store(slide, coords_h5, store)
    assert store.stat().st_mtime_ns == stamp  # same coordinates: kept


def test_dataset_serves_labelled_patches_to_worker_processes(tiled, tmp_path: Path) -> None:
    import torch

    stores = [build_patch_store(s, c, tmp_path / f"{s.stem}.h5") for s, c in tiled]
    index = index_stores(stores, {"P01-L1": 0, "P01-L2": 1})
    data = PatchStoreDataset(index)
    patch, label = data[0]
    assert patch.shape == (128, 128, 3) and label == 0 and set(data.labels) == {0, 1}
    loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=2)
    seen = sum(len(labels) for _, labels in loader)
    assert seen == len(data)
    half = PatchStoreDataset(index, subset=np.arange(0, len(index), 2))
    assert len(half) == (len(index) + 1) // 2
    with pytest.raises(KeyError, match="slide 'P01-L2' has no label"):
        index_stores(stores, {"P01-L1": 0})
