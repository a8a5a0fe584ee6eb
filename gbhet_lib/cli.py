"""The ``gbhet`` command: ``gbhet run`` (the study), ``gbhet synth`` (the demo cohort), ``gbhet fetch`` (the data
manifest's files), ``gbhet tile`` (patch coordinates of slides), ``gbhet train-fusion`` (one fusion variant on a
run directory; also under ``torchrun``), ``gbhet book``.

Every sub-command imports what it needs when it runs, so ``gbhet train-fusion`` works where only torch, timm,
h5py, numpy and pandas are installed (the GPU machine).

Errors are one line on stderr, ``gbhet <command>: error: ...``, never a traceback: exit status 2 for bad usage
(a flag, a ``--set`` value, a setting: :class:`~gbhet_lib.errors.UsageError`, ``ValueError``, a missing file) and 1
for failed work (a stage that failed, a training that diverged: other :class:`~gbhet_lib.errors.GbhetError`, and
unexpected errors). ``gbhet --debug ...`` or ``GBHET_DEBUG=1`` shows the traceback instead."""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .config import DEVICES, PROFILES, StudyConfig
from .errors import GbhetError, UsageError

_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
#: set to 1 to see tracebacks instead of one-line errors (as ``gbhet --debug``)
ENV_DEBUG = "GBHET_DEBUG"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gbhet`` console script; returns the exit status (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.debug or os.environ.get(ENV_DEBUG, "") not in ("", "0"):
        return int(args.handler(args) or 0)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"gbhet {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the command line reports every error in one line (see --debug)
        status, message = error_report(err)
        print(f"gbhet {args.command}: error: {message}", file=sys.stderr)
        return status


def error_report(err: Exception) -> tuple[int, str]:
    """The exit status and the one-line message of an error that ended a command (see the module docstring)."""
    message = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (UsageError, ValueError, FileNotFoundError)):
        return EXIT_USAGE, message
    if isinstance(err, GbhetError):
        return EXIT_FAILED, message
    return EXIT_FAILED, (f"{type(err).__name__}: {message} (unexpected: rerun with gbhet --debug or {ENV_DEBUG}=1 "
                         "for the traceback, and report it)")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``gbhet run: error: ... (see gbhet run --help)``), exit 2;
    sub-command parsers are made of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gbhet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error instead of one line (also: {ENV_DEBUG}=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the study's notebooks in order with papermill",
                         description="Execute notebooks/NN_*.ipynb in order into the run directory. Finished "
                                     "stages are skipped; a failing cell, a cell past the timeout or a dead kernel "
                                     "stops the run and is reported (the partial notebook is kept as "
                                     "<run_dir>/notebooks/NN_name.failed.ipynb).")
    run.add_argument("--profile", default="demo", choices=PROFILES)
    run.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", choices=DEVICES)
    run.add_argument("--data-mirror", type=Path, default=None,
                     help="local copy of the data manifest's files (default: $GBHET_DATA_MIRROR)")
    run.add_argument("--only", action="append", metavar="STAGE",
                     help="run only this stage (01_data, 01, 1 or data); repeatable")
    run.add_argument("--force", action="store_true", help="rerun stages that already finished")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                     help="override a notebook parameter (YAML value, e.g. n_patients=4); repeatable")
    run.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="folder of the stage notebooks")
    run.add_argument("--cell-timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="most seconds one cell may run (default: 3600 on the demo and reference profiles, 86400 "
                          "on full and stemri; 0: no limit)")
    run.add_argument("--no-progress", action="store_true", help="hide the per-cell progress bar")
    run.set_defaults(handler=_cmd_run)

    synth = sub.add_parser("synth", help="generate the synthetic demo cohort with planted truth",
                           description="Write the demo cohort (tables, pyramidal TIFF slides, truth.json) to --out.")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--patients", type=int, default=None, help="patients in the multimodal cohort")
    synth.add_argument("--min-lineages", type=int, default=None)
    synth.add_argument("--max-lineages", type=int, default=None)
    synth.add_argument("--pool", type=int, default=None, help="samples in the RNA-only pre-training pool")
    synth.add_argument("--diagnostic", type=int, default=None,
                       help="pool samples that also get a diagnostic slide (chapter 7's cohort; default 120)")
    synth.add_argument("--genes", type=int, default=None)
    synth.add_argument("--slide-width", type=int, default=None, help="level-0 width, px")
    synth.add_argument("--slide-height", type=int, default=None, help="level-0 height, px")
    synth.add_argument("--mpp", type=float, default=None, help="level-0 µm per pixel")
    synth.add_argument("--jobs", type=int, default=None, help="slide-rendering processes (default 2)")
    synth.add_argument("--force", action="store_true", help="regenerate even if a complete cohort is there")
    synth.set_defaults(handler=_cmd_synth)

    fetch = sub.add_parser("fetch", help="download (or take from a mirror) and verify the datasets of a profile",
                           description="Fetch every dataset of the data manifest that a profile needs, verify its "
                                       "sha256, and print a table. Exit status 1 if any dataset failed.")
    fetch.add_argument("--profile", default="reference", choices=PROFILES)
    fetch.add_argument("--mirror", type=Path, default=None,
                       help="local copy of the data manifest's files (default: $GBHET_DATA_MIRROR; none: download)")
    fetch.add_argument("--cache", type=Path, default=None,
                       help="download cache (default: $GBHET_CACHE_DIR or ~/.cache/gbhet)")
    fetch.add_argument("--only", nargs="+", action="extend", metavar="NAME", help="fetch only these datasets")
    fetch.add_argument("--manifest", type=Path, default=None,
                       help="a datasets.yaml other than the repository's data_manifest/datasets.yaml")
    fetch.add_argument("--no-progress", action="store_true", help="hide the download progress bars")
    fetch.set_defaults(handler=_cmd_fetch)

    tile = sub.add_parser("tile", help="tile slides into patch coordinates (one HDF5 per slide)",
                          description="Detect tissue, lay a grid of patches at a target magnification and write "
                                      "<stem>.h5 (level-0 coords + attributes) per slide into --out. Finished "
                                      "slides are skipped. Exit status 1 if any slide failed.")
    tile.add_argument("slides", type=Path, metavar="SLIDE_OR_DIR", help="a slide file, or a folder of slides")
    tile.add_argument("--out", type=Path, required=True, help="folder for the <stem>.h5 coordinate files")
    tile.add_argument("--mag", type=_positive(float), default=10.0, help="target magnification (x; 10 / µm/px)")
    tile.add_argument("--patch", type=_positive(int), default=256, help="patch edge, px at the target magnification")
    tile.add_argument("--overlap", type=_non_negative_int, default=0,
                      help="overlap of neighbours, px at the target magnification (less than --patch)")
    tile.add_argument("--min-tissue", type=_fraction, default=0.5, help="minimum tissue fraction of a kept patch")
    tile.add_argument("--jobs", type=_positive(int), default=2, help="slide-tiling processes")
    tile.add_argument("--mpp", type=_positive(float), default=None,
                      help="level-0 µm/px, overriding the slides' tags (needed when they have none)")
    tile.add_argument("--pattern", action="append", default=None, metavar="GLOB", dest="patterns",
                      help="file names to take from a folder, e.g. '*.scn' (repeatable; default: "
                           "*.svs *.tif *.tiff *.ndpi *.mrxs)")
    tile.add_argument("--recursive", action="store_true", help="also take slides from the folder's sub-folders")
    tile.add_argument("--stain-rule", action="store_true",
                      help="also label patches tumor/neutral with the paper's HLS stain-hue rule")
    tile.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    tile.set_defaults(handler=_cmd_tile)

    fusion = sub.add_parser(
        "train-fusion", help="train one fusion variant on a run directory (one process or torchrun DDP)",
        description="Train the co-attention fusion model (variant best, frozen or chromosome) on the training "
                    "pairs of a split policy of a run directory prepared by the fusion chapter. Under torchrun "
                    "(`torchrun --nproc_per_node=N -m gbhet_lib.cli train-fusion ...`) it runs data-parallel.")
    fusion.add_argument("--run-dir", type=Path, required=True)
    fusion.add_argument("--variant", required=True, choices=("best", "frozen", "chromosome"))
    fusion.add_argument("--policy", default="patch", type=_split_name, metavar="SPLIT",
                        help="which recorded split to train on: patch (the paper's, default), slide, lineage, "
                             "patient, or a patient cross-validation fold written by the chapter, e.g. "
                             "patient_cv-0of5 (models/splits/<SPLIT>.json)")
    fusion.add_argument("--device", default="auto", choices=DEVICES)
    fusion.add_argument("--epochs", type=int, default=None, help="default: the paper's 10")
    fusion.add_argument("--batch-size", type=int, default=None, help="per process; default: the paper's 64")
    fusion.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on for CUDA, off on the CPU)")
    fusion.add_argument("--compile", action="store_true", help="torch.compile the model")
    fusion.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                        help="any other FusionConfig field, e.g. --set symmetric=true; repeatable")
    fusion.add_argument("--name", default=None,
                        help="name of the record and checkpoint folder (default: the variant), e.g. best+fixes")
    fusion.add_argument("--memory-budget-gb", type=float, default=None,
                        help="stream patches from chapter 3's stores when they need more memory than this "
                             "(default: read them all into memory)")
    fusion.add_argument("--shuffled-pairing", type=int, default=None, metavar="SEED",
                        help="chapter 6's shuffled-pair null: train on the pairs with the lineage profiles permuted "
                             "across patients (drawn from SEED); name it <variant>_shuffled<SEED> with --name")
    fusion.add_argument("--study-seed", type=int, default=None,
                        help="the study seed the model's seed derives from (default: the run's config.json); "
                             "chapter 6's seed replicate <variant>_seed<k> uses the run's seed + k")
    fusion.add_argument("--no-progress", action="store_true")
    fusion.set_defaults(handler=_cmd_train_fusion)

    book = sub.add_parser("book", help="render the Jupyter Book from a run's executed notebooks",
                          description="Copy the executed chapters of any finished run into book/chapters/ and "
                                      "render the book (offline; every Sphinx warning is an error).")
    book.add_argument("--run-dir", type=Path, default=Path("runs/demo"),
                      help="the run whose executed notebooks to render (default: runs/demo)")
    book.add_argument("--book-root", type=Path, default=Path("."),
                      help="the folder with _config.yml and _toc.yml (default: .)")
    book.add_argument("--out", type=Path, default=None,
                      help="build folder: the HTML goes to OUT/html (default: BOOK_ROOT/_build)")
    book.set_defaults(handler=_cmd_book)
    _add_check_book(sub)
    _add_pdf(sub)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import StageFailed, run_study

    overrides = _parse_overrides(args.overrides)
    config = StudyConfig(profile=args.profile, run_dir=args.run_dir, seed=args.seed, device=args.device,
                         data_mirror=args.data_mirror)
    try:
        results = run_study(config, notebook_dir=args.notebooks, only=args.only, force=args.force,
                            parameters=overrides, progress=not args.no_progress, cell_timeout=args.cell_timeout)
    except StageFailed as err:
        print(f"gbhet run: {err.describe(timeout_fix='--cell-timeout SECONDS')}", file=sys.stderr)
        return EXIT_FAILED
    ran = sum(r.status == "ran" for r in results)
    print(f"gbhet run: {ran} stage(s) ran, {len(results) - ran} skipped; results in {config.run_dir}",
          file=sys.stderr)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    import dataclasses

    from .data.synthetic import CohortSpec, make_demo_cohort
    from .data.synthetic.genes import pathway_module_size

    spec = CohortSpec()
    module_size, n_drivers = pathway_module_size(args.genes) if args.genes is not None else (None, None)
    fields = {"n_patients": args.patients, "min_lineages": args.min_lineages, "max_lineages": args.max_lineages,
              "n_pool": args.pool, "n_genes": args.genes, "module_size": module_size, "n_drivers": n_drivers,
              "n_diagnostic": args.diagnostic}
    spec = dataclasses.replace(spec, **{k: v for k, v in fields.items() if v is not None})
    geometry = {"width": args.slide_width, "height": args.slide_height, "mpp": args.mpp}
    spec = dataclasses.replace(spec, slide=dataclasses.replace(
        spec.slide, **{k: v for k, v in geometry.items() if v is not None}))
    start = time.perf_counter()
    out = make_demo_cohort(args.out, spec, seed=args.seed, n_jobs=args.jobs, force=args.force)
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(f"gbhet synth: cohort in {out} ({size_mb:.1f} MB) after {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .data.fetch import fetch_profile
    from .data.manifest import load_manifest

    start = time.perf_counter()
    results = fetch_profile(args.profile, mirror=args.mirror, cache_dir=args.cache, only=args.only,
                            manifest=load_manifest(args.manifest),
                            progress=not args.no_progress and sys.stderr.isatty())
    print(_fetch_table(results))
    for result in results:
        if result.status == "failed":
            print(f"gbhet fetch: {result.name} FAILED: {result.message}", file=sys.stderr)
    counts = {status: sum(r.status == status for r in results) for status in ("ok", "failed", "skipped")}
    sources = ", ".join(f"{sum(r.source == s for r in results)} from {s}" for s in ("mirror", "cache", "download")
                        if any(r.source == s for r in results))
    megabytes = sum(r.size for r in results if r.ok) / 1e6
    skipped = f", {counts['skipped']} skipped (no upstream URL: in a mirror only)" if counts["skipped"] else ""
    print(f"gbhet fetch: profile {args.profile}: {counts['ok']} of {len(results)} datasets OK ({megabytes:.1f} MB"
          f"{'; ' + sources if sources else ''}), {counts['failed']} failed{skipped}, "
          f"in {time.perf_counter() - start:.1f} s")
    return 1 if counts["failed"] else 0


def _fetch_table(results: list[Any]) -> str:
    """One row a dataset: name, size, checksum, source, licence (last: it is the longest)."""
    header = ("dataset", "size", "sha256", "source", "licence")
    rows = [(r.name, _human_size(r.size), {True: "ok", False: "MISMATCH", None: "-"}[r.sha256_ok],
             r.source or r.status.upper(), r.licence) for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
                     for row in [header, *rows])


def _human_size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def _cmd_tile(args: argparse.Namespace) -> int:
    import pandas as pd

    from .wsi.slide_io import SLIDE_PATTERNS, list_slides
    from .wsi.tiling import TilingConfig, tile_slides

    if args.overlap >= args.patch:
        raise UsageError(f"--overlap {args.overlap} must be less than --patch {args.patch} (pixels at the target "
                         "magnification)")
    config = TilingConfig(target_magnification=args.mag, patch_size=args.patch, overlap=args.overlap,
                          min_tissue_fraction=args.min_tissue, mpp_override=args.mpp, stain_rule=args.stain_rule)
    if not args.slides.exists():
        raise FileNotFoundError(f"{args.slides}: no such slide file or folder")
    if args.slides.is_dir():
        listing = list_slides(args.slides, patterns=args.patterns or SLIDE_PATTERNS, recursive=args.recursive,
                              fix=TILE_LISTING_FIX)
        paths = list(listing["path"])
    else:
        paths = [args.slides]
    start = time.perf_counter()
    report = tile_slides(paths, args.out, config, n_jobs=args.jobs,
                         progress=not args.no_progress and sys.stderr.isatty(), mpp_fix=TILE_MPP_FIX)
    with pd.option_context("display.max_colwidth", 120, "display.width", 200):
        print(report.fillna({"error": ""}).to_string(index=False))
    for slide, error in zip(report["slide"], report["error"]):
        if isinstance(error, str) and error:
            print(f"gbhet tile: {slide} FAILED: {' '.join(error.split())}", file=sys.stderr)
    counts = report["status"].value_counts()
    print(f"gbhet tile: {counts.get('ok', 0)} tiled, {counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} "
          f"failed; {int(report['patches'].sum())} patches in {args.out} after {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    return 1 if counts.get("failed", 0) else 0


#: how ``gbhet tile``'s errors say to set µm/px and to widen the search of a folder (the library's defaults name
#: its keyword arguments)
TILE_MPP_FIX = "give its level-0 µm/px with --mpp (e.g. --mpp 0.25 for a 40x scan; it applies to every slide tiled)"
TILE_LISTING_FIX = "pass --pattern '*.EXT' for other extensions (repeatable), or --recursive for sub-folders"


def _positive(kind: type) -> Any:
    """An argparse type: ``kind`` (int or float) > 0."""
    def parse(text: str) -> Any:
        value = _number(text, kind)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value
    parse.__name__ = f"positive {kind.__name__}"  # argparse names it in "invalid ... value"
    return parse


def _non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _fraction(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in [0, 1], e.g. 0.5")
    return value


def _seconds(text: str) -> float:
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds >= 0 (0: no limit)")
    return value


def _number(text: str, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number")
    return value


def _split_name(value: str) -> str:
    """A split policy or a cross-validation fold name (``patient_cv-<k>of<K>``), else an argparse error."""
    import re

    from .evaluate.splits import SPLIT_POLICIES

    if value in SPLIT_POLICIES or re.fullmatch(r"patient_cv-\d+of\d+", value):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a split: use one of {', '.join(SPLIT_POLICIES)} or a "
                                     "cross-validation fold such as patient_cv-0of5")


def _cmd_train_fusion(args: argparse.Namespace) -> int:
    from .fusion.stage import train_variant
    from .training import device_name, use_bf16

    device = device_name(args.device)
    overrides = _fusion_overrides(_parse_overrides(args.overrides))
    for name, value in (("epochs", args.epochs), ("batch_size", args.batch_size)):
        if value is not None:
            overrides[name] = value
    overrides["amp_bf16"] = use_bf16(device, args.bf16)
    if args.compile:
        overrides["compile"] = True
    _check_fusion_config(args.variant, overrides, device)  # before any encoder is read or trained
    budget = None if args.memory_budget_gb is None else int(args.memory_budget_gb * 2**30)
    record = train_variant(args.run_dir, args.variant, args.policy, device,
                           progress=not args.no_progress and sys.stderr.isatty(), name=args.name,
                           memory_budget_bytes=budget, shuffled_pairing_seed=args.shuffled_pairing,
                           study_seed=args.study_seed, **overrides)
    if int(os.environ.get("RANK", "0")) > 0:
        return 0  # under torchrun, rank 0 reports
    last = record["history"][-1]
    print(f"gbhet train-fusion: {args.variant} on the {args.policy!r} split, {record['pairs']['train']} training "
          f"pairs ({record['excluded']['patches_without_rna']} patches without RNA left out), "
          f"{len(record['history'])} epochs on {device} × {record['world_size']}: loss "
          f"{record['history'][0]['train_loss']:.4g} → {last['train_loss']:.4g}, "
          f"{last['pairs_per_s']:.1f} pairs/s; checkpoint {args.run_dir / record['checkpoint']}", file=sys.stderr)
    return 0


#: FusionConfig fields that train-fusion sets from its own flags, never from --set
_FUSION_FLAG_FIELDS = {"device": "--device", "amp_bf16": "--bf16 / --no-bf16"}


def _fusion_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``--set`` values of train-fusion checked against the FusionConfig fields: known names, fitting types."""
    import dataclasses

    from .fusion.train import FusionConfig
    from .parameters import Parameter, suggest, value_problem

    defaults = FusionConfig()
    fields = [f.name for f in dataclasses.fields(FusionConfig) if f.name not in _FUSION_FLAG_FIELDS]
    for name, value in overrides.items():
        if name in _FUSION_FLAG_FIELDS:
            raise UsageError(f"--set {name}=...: set it with {_FUSION_FLAG_FIELDS[name]} instead")
        if name not in fields:
            raise UsageError(f"--set {name}=...: FusionConfig has no field {name}; {suggest(name, fields)}")
        default = getattr(defaults, name)
        problem = value_problem(Parameter(name, "FusionConfig", default, f"{name} = {default!r}"), value)
        if problem:
            raise UsageError(f"--set: {problem}")
    return dict(overrides)


def _check_fusion_config(variant: str, overrides: dict[str, Any], device: str) -> None:
    """Build the variant's FusionConfig with ``overrides`` (its own checks raise ConfigError) without training."""
    from .fusion.train import variant_config

    variant_config(variant, **{"seed": 0, **overrides, "device": device})


def _cmd_book(args: argparse.Namespace) -> int:
    from .book import build_book

    index = build_book(args.run_dir, book_root=args.book_root, out=args.out)
    print(f"gbhet book: {index}", file=sys.stderr)
    return 0


def _add_check_book(sub: Any) -> None:
    """The ``check-book`` sub-command: every page of the rendered book in headless Chromium."""
    check = sub.add_parser(
        "check-book", help="open every page of the rendered book in headless Chromium and report its defects",
        description="Serve the rendered book on 127.0.0.1, open every page in headless Chromium (/usr/bin/chromium, "
                    "driven by Playwright), save a full-page screenshot of each, and report broken images, broken "
                    "internal links and anchors, empty pages, local paths in the text and content wider than the "
                    "main column, one a line. Exit status 1 if there is any.")
    check.add_argument("--html", type=Path, default=Path("_build/html"),
                       help="the rendered book (default: _build/html)")
    check.add_argument("--screenshots", type=Path, default=Path("runs/demo/book_screenshots"),
                       help="folder for the screenshots, <page>.png (default: runs/demo/book_screenshots)")
    check.add_argument("--min-chars", type=_positive(int), default=200,
                       help="fewest characters of text in a page's main column (default 200)")
    check.set_defaults(handler=_cmd_check_book)


def _cmd_check_book(args: argparse.Namespace) -> int:
    from collections import Counter

    from .book_check import book_pages, check_book

    start = time.perf_counter()
    problems = check_book(args.html, args.screenshots, min_chars=args.min_chars)
    for problem in problems:
        print(problem)
    kinds = Counter(p.kind for p in problems)
    found = (f"{len(problems)} problem(s) ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})"
             if problems else "no problems")
    print(f"gbhet check-book: {len(book_pages(args.html))} page(s), {found}, in {time.perf_counter() - start:.1f} s; "
          f"screenshots in {args.screenshots}", file=sys.stderr)
    return 1 if problems else 0


def _add_pdf(sub: Any) -> None:
    """The ``pdf`` sub-command: the whole book as one PDF (xelatex) from a run's executed notebooks."""
    pdf = sub.add_parser(
        "pdf", help="render the book as one PDF (LaTeX, xelatex) from a run's executed notebooks",
        description="Copy the executed chapters of a finished run into book/chapters/ (as gbhet book does) and "
                    "render the whole book as one PDF with Sphinx's LaTeX builder and xelatex (Debian: "
                    "texlive-xetex, texlive-latex-extra, latexmk, fonts-freefont-otf, ...; `make pdf` installs them).")
    pdf.add_argument("--run-dir", type=Path, default=Path("runs/demo"),
                     help="the run whose executed notebooks to render (default: runs/demo)")
    pdf.add_argument("--book-root", type=Path, default=Path("."),
                     help="the folder with _config.yml and _toc.yml (default: .)")
    pdf.add_argument("--out", type=Path, default=None,
                     help="build folder: the PDF goes to OUT/latex/gbhet.pdf (default: BOOK_ROOT/_build)")
    pdf.set_defaults(handler=_cmd_pdf)


def _cmd_pdf(args: argparse.Namespace) -> int:
    from .book_pdf import build_pdf

    start = time.perf_counter()
    path = build_pdf(args.run_dir, book_root=args.book_root, out=args.out)
    print(f"gbhet pdf: {path} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set NAME=VALUE`` items as a dict; each VALUE is read as YAML (``4``, ``1e-5``, ``true``, ``[a, b]``)."""
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE, e.g. --set n_patients=4")
        import yaml  # only with --set: train-fusion runs where PyYAML may be missing (the GPU machine)

        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({problem}); quote a string "
                             f"(--set '{name.strip()}=\"...\"'), write a list as [a, b]") from None
        if isinstance(parsed, str) and _EXPONENT_NUMBER.match(parsed):
            parsed = float(parsed)  # YAML 1.1 reads 1e-5 (no dot) as a string
        overrides[name.strip()] = parsed
    return overrides


if __name__ == "__main__":
    raise SystemExit(main())
