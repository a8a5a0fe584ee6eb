"""Benchmark of `gbhet synth` on the demo defaults: wall time, disk size, per-slide render time.

Run: .venv/bin/python benchmarks/bench_synth.py [--jobs 1 2]
Prints one line per setting; the ratio between settings is measured in the same run.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from gbhet_lib.data.synthetic import CohortSpec, make_demo_cohort, render_slide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    spec = CohortSpec()
    start = time.perf_counter()
    render_slide({"hypoxia": 0.0, "proliferation": 0.0, "angiogenesis": 0.0}, np.random.default_rng(0), spec.slide)
    print(f"render_slide {spec.slide.width}x{spec.slide.height} px: {time.perf_counter() - start:.2f} s")
    times = {}
    for jobs in args.jobs:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = make_demo_cohort(Path(tmp) / "cohort", spec, seed=0, n_jobs=jobs, progress=False)
            times[jobs] = time.perf_counter() - start
            size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
            slides = len(list((out / "slides").glob("*.tiff")))
        print(f"make_demo_cohort jobs={jobs}: {times[jobs]:.1f} s, {slides} slides, {size_mb:.1f} MB on disk")
    if len(times) > 1:
        first = args.jobs[0]
        for jobs in args.jobs[1:]:
            print(f"speed-up jobs={jobs} vs jobs={first}: {times[first] / times[jobs]:.2f}x")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mb:.0f} MB (worker processes not included)")


if __name__ == "__main__":
    main()
