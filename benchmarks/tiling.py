"""Benchmark of tiling and patch reading on a large synthetic JPEG pyramid (20480 × 20480 px, levels 1/4/16/64).

Run: .venv/bin/python benchmarks/tiling.py [--size 20480] [--patches 2000] [--jobs 1 2]

Measures, in one run, on the same coordinates (256-px patches at level 0, target magnification = the slide's, so
no resizing): bare ``openslide.read_region`` in a loop, and ``read_patch`` in 1 and 2 worker processes (wall
patches/s, and CPU ms per patch, which other load on the machine does not change); plus
``tile_slide`` (tissue mask + grid) and ``tile_slides`` over copies of the slide. The texture is a 2048² rendered
slide repeated with ``np.tile`` (rendering 20k² directly would take minutes); the file is in the OS page cache
after it is written, so the figures are decode-bound, not disk-bound.
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from gbhet_lib.data.synthetic import SlideGeometry
from gbhet_lib.data.synthetic.slides import render_slide, write_pyramidal_tiff
from gbhet_lib.wsi.slide_io import open_slide
from gbhet_lib.wsi.tiling import TilingConfig, read_coords, read_patch, tile_slide, tile_slides

MPP = 0.25  # 40x level 0
PATCH = 256


def make_slide(path: Path, size: int) -> Path:
    """A size × size JPEG pyramid: one 2048² rendered tissue texture repeated, under an elliptical tissue region
    so the tissue mask keeps about half of the grid."""
    block = render_slide({}, np.random.default_rng(0), SlideGeometry(width=2048, height=2048, mpp=MPP)).rgb
    reps = -(-size // 2048)
    rgb = np.tile(block, (reps, reps, 1))[:size, :size]
    axis = (np.arange(size, dtype=np.float32) - size / 2) / size
    rgb[(axis[:, None] / 0.45) ** 2 + (axis[None, :] / 0.40) ** 2 > 1] = 242
    geometry = SlideGeometry(width=size, height=size, mpp=MPP, level_downsamples=(1, 4, 16, 64))
    return write_pyramidal_tiff(path, rgb, geometry)


def bare_read_region(path: Path, coords: np.ndarray) -> tuple[float, float]:
    """Wall and CPU seconds to read ``coords`` with ``openslide.read_region`` at level 0, one after another."""
    start, cpu = time.perf_counter(), time.process_time()
    with open_slide(path) as slide:
        for x, y in coords:
            np.asarray(slide.read_region((int(x), int(y)), 0, (PATCH, PATCH)).convert("RGB"))
    return time.perf_counter() - start, time.process_time() - cpu


def _read_chunk(path: Path, coords: np.ndarray, attrs: dict) -> float:
    """CPU seconds this process spent reading ``coords`` with ``read_patch``."""
    cpu = time.process_time()
    with open_slide(path) as slide:
        for xy in coords:
            read_patch(slide, xy, attrs)
    return time.process_time() - cpu


def read_patches_in_processes(path: Path, coords: np.ndarray, attrs: dict, jobs: int) -> tuple[float, float]:
    """Wall seconds for ``jobs`` warm worker processes to read ``coords`` with ``read_patch`` (one chunk each),
    and the CPU seconds they spent together."""
    with futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_read_chunk, [path] * jobs, [coords[:1]] * jobs, [attrs] * jobs))  # start the workers
        start = time.perf_counter()
        cpu = sum(pool.map(_read_chunk, [path] * jobs, np.array_split(coords, jobs), [attrs] * jobs))
        return time.perf_counter() - start, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20480, help="level-0 edge, px")
    parser.add_argument("--patches", type=int, default=2000, help="patches read per measurement (a subset)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        slide = make_slide(Path(tmp) / "big.tiff", args.size)
        print(f"synthetic pyramid {args.size}x{args.size} px, levels 1/4/16/64: "
              f"{slide.stat().st_size / 1e6:.0f} MB JPEG, written in {time.perf_counter() - start:.1f} s")

        config = TilingConfig(target_magnification=10 / MPP, patch_size=PATCH)
        start = time.perf_counter()
        coords, attrs = read_coords(tile_slide(slide, Path(tmp) / "coords", config))
        grid = (args.size // PATCH) ** 2
        print(f"tile_slide (mask + grid at 40x, 256 px): {len(coords)} of {grid} patches kept in "
              f"{time.perf_counter() - start:.2f} s")
        subset = coords[np.random.default_rng(0).permutation(len(coords))[:args.patches]]
        subset = subset[np.lexsort((subset[:, 0], subset[:, 1]))]  # row order, as a grid loop reads them
        print(f"reading {len(subset)} of the {len(coords)} kept patches (256x256 at level 0) per measurement")

        wall, cpu = bare_read_region(slide, subset)
        base = len(subset) / wall
        print(f"bare openslide.read_region loop:     {base:6.0f} patches/s  "
              f"({1e3 * cpu / len(subset):.2f} CPU ms/patch)")
        for jobs in args.jobs:
            wall, cpu = read_patches_in_processes(slide, subset, attrs, jobs)
            rate = len(subset) / wall
            print(f"read_patch, {jobs} worker process(es): {rate:6.0f} patches/s  "
                  f"({1e3 * cpu / len(subset):.2f} CPU ms/patch, {rate / base:.2f}x bare)")

        copies = [slide.with_name(f"copy{i}.tiff") for i in range(4)]
        for copy in copies:
            os.link(slide, copy)
        for jobs in args.jobs:
            start = time.perf_counter()
            report = tile_slides(copies, Path(tmp) / f"coords{jobs}", config, n_jobs=jobs, progress=False)
            assert (report.status == "ok").all(), report
            print(f"tile_slides, 4 slides, n_jobs={jobs}:    {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
