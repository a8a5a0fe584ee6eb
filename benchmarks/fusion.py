"""Benchmark of fusion training (pairs/s: bf16 vs fp32, eager vs torch.compile) and of the pairing data path.

1. Training: the paper-size fusion model (image encoder ``PatchEncoder("deit_base_patch16_224", img_size=256)``,
   random weights; RNA encoder ``ClusterTokenTransformer`` over 7 PPI-like tokens of 15,000 genes in all, sizes
   drawn with a fixed seed; co-attention 768 / 8 heads / ITC 128, the ``best`` variant's losses: ITC + ITM with
   rolled negatives, no reconstruction) on synthetic in-memory pairs (random uint8 256×256 patches, random RNA).
   For every precision × batch size × {eager, compiled} it builds what :func:`gbhet_lib.fusion.train.train_fusion`
   builds (``build_model``, ``FusionTrainable``, ``torch.compile`` of it when ``compile``, ``PairBatches``,
   ``fusion_losses``, the trainer's AdamW) and times ``--steps`` real optimiser steps after ``--warmup`` steps
   (the compile happens in the warm-up), synchronising the GPU around the timed region. Reported: pairs/s,
   peak GPU memory (``torch.cuda.max_memory_allocated``), TFLOP/s and the share of the GPU's dense bf16 peak
   (FLOP of one step, forward + backward, counted with ``torch.utils.flop_counter.FlopCounterMode``; fp32 runs
   are compared with the same bf16 peak, i.e. the tensor-core peak they do not use). The losses of the first
   ``--loss-steps`` steps are kept: eager and compiled runs start from the same weights and see the same batches,
   and the compiled runs draw dropout masks with eager's RNG (Inductor ``fallback_random``, ``--compile-rng``),
   so their maximum absolute difference tests that compiling leaves the loss curve unchanged.
   The batch rows live on the device as in ``gbhet_lib.training.fit``; on CUDA one more eager run keeps them on
   the host, to show what ``PairBatches.batch`` copying them back at every step costs. Then ``train_fusion``
   itself runs ``--e2e-epochs`` short epochs and its history column ``pairs_per_s`` is reported (epoch 0
   includes CUDA start-up; the figure excludes checkpoint writing).
2. Data path: the authors' ``RNATumorDataset`` reads, for every item, the lineage's RNA TSV with
   ``pandas.read_csv`` (genes × one value column), picks each token's genes with ``.loc`` and decodes one PNG
   (ToTensor + CLIP Normalize); a minimal stand-in of it (written here, no code of theirs) is iterated in one
   process and collated in batches of 64 with ``default_collate`` (as their ``DataLoader``), against
   ``PairBatches(data, device).batch(rows)`` on the same pairs in memory (alone, and followed by the encoder's
   normalisation so both give normalised float images). Patches are smooth texture + noise (~146 KB PNG, like
   H&E patches), written in a temporary directory and read warm from the page cache. Needs PIL (skipped with a
   message when missing).

The results are printed and written as JSON (default ``benchmarks/results/fusion-<device kind>.json``, the kind
``cpu`` or the sanitised GPU name) with the machine, the date and every setting; the file is rewritten after
each measurement, so a run cut short keeps what it measured (``"complete": false``).

GPU (paper size, one command):   python benchmarks/fusion.py --device cuda
CPU smoke run (demo ViT, small RNA tokens, fp32, 128 data-path items; ~2 min on 2 cores):
    .venv/bin/python benchmarks/fusion.py --device cpu --tiny
What wrote results/fusion-cpu.json (the same, data path at its default 512 items):
    .venv/bin/python benchmarks/fusion.py --device cpu --tiny --data-items 512
Data path only:   .venv/bin/python benchmarks/fusion.py --device cpu --data-path-only
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the encoders are randomly initialised

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
try:
    import gbhet_lib  # noqa: F401
except ImportError:  # a checkout without `pip install -e .` (the GPU machine)
    sys.path.insert(0, str(ROOT))

from gbhet_lib.fusion.data import PairBatches, PairedPatches, pair_patches
from gbhet_lib.fusion.train import FusionConfig, FusionTrainable, build_model, fusion_losses, train_fusion, \
    trainable_parameters
from gbhet_lib.rna.losses import Temperature
from gbhet_lib.rna.model import ClusterTokenTransformer
from gbhet_lib.rna.train import TokenData
from gbhet_lib.training import build_optimizer as trainer_optimizer  # the trainer's AdamW (no decay on 1-D, fused on CUDA)
from gbhet_lib.training import resolve_device, seed_everything
from gpu_peaks import bf16_peak  # noqa: E402  (benchmarks/ is on sys.path)
from gbhet_lib.wsi.encoder import CLIP_MEAN, CLIP_STD, PAPER_ARCH, PatchEncoder, demo_encoder, preprocess

DATA_BATCH = 64  # the authors' DataLoader batch in the data-path comparison


# ------------------------------------------------------------------------------------------------ machine
def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def device_kind(device: torch.device) -> str:
    """``cpu`` or the GPU name, lower case, runs of other characters as one ``-`` (``nvidia-h100-80gb-hbm3``)."""
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def machine(device: torch.device) -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    info: dict[str, Any] = {
        "device": str(device), "device_name": device_name(device), "device_kind": device_kind(device),
        "cpu_count": os.cpu_count(), "cpus_available": affinity, "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "pandas": pd.__version__}
    try:
        import timm
        info["timm"] = timm.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                     "gpu_memory_gib": props.total_memory / 2 ** 30, "gpu_count": torch.cuda.device_count(),
                     "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                     "tf32_cudnn": torch.backends.cudnn.allow_tf32})
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gbhet_lib"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["gbhet_lib_modified"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ------------------------------------------------------------------------------------------- synthetic data
def token_sizes(total: int, k: int, seed: int) -> list[int]:
    """K token sizes summing to ``total``: a quarter spread evenly, the rest by Dirichlet(2) weights (fixed seed)."""
    rng = np.random.default_rng(seed)
    base = max(1, total // (4 * k))
    sizes = base + rng.multinomial(total - base * k, rng.dirichlet(np.full(k, 2.0)))
    return [int(n) for n in sizes]


def gene_ids(n: int) -> list[str]:
    return [f"ENSG{i:011d}" for i in range(n)]


def rna_table(n_lineages: int, n_genes: int, seed: int) -> np.ndarray:
    """(L, G) float32 log-expression-like values."""
    rng = np.random.default_rng(seed)
    return np.log1p(rng.gamma(0.8, 20.0, (n_lineages, n_genes))).astype(np.float32)


def token_data(values: np.ndarray, sizes: list[int]) -> TokenData:
    bounds = np.cumsum([0] + sizes)
    return TokenData(values, [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])],
                     token_names=[f"ppi_{k}" for k in range(len(sizes))],
                     samples=[f"L{i:03d}" for i in range(len(values))], genes=gene_ids(values.shape[1]))


def paired(images: np.ndarray, rna: TokenData) -> PairedPatches:
    """The pairs of ``images`` with lineages assigned round-robin, one slide per lineage, through ``pair_patches``."""
    lineages = list(rna.samples)
    slides = [f"S{i % len(lineages):03d}" for i in range(len(images))]
    keys = [f"{s}:{i}" for i, s in enumerate(slides)]
    slide_lineage = {f"S{j:03d}": lineage for j, lineage in enumerate(lineages)}
    patient = {lineage: f"P{j // 2:03d}" for j, lineage in enumerate(lineages)}
    data = pair_patches(images, slides, keys, slide_lineage, patient, rna)
    assert len(data) == len(images), data.excluded
    return data


def texture_patches(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 (n, size, size, 3): smooth colour fields (bicubic from 8×8) plus noise of s.d. 10, H&E-like PNG sizes."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for start in range(0, n, 64):
        m = min(64, n - start)
        low = torch.from_numpy(rng.uniform(60, 230, (m, 3, 8, 8)).astype(np.float32))
        x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
        x = x + torch.from_numpy(rng.normal(0, 10, (m, 3, size, size)).astype(np.float32))
        out[start:start + m] = x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


# ------------------------------------------------------------------------------------------- training part
@dataclasses.dataclass
class Setup:
    """What every training measurement shares."""

    image_encoder: PatchEncoder
    rna_encoder: ClusterTokenTransformer
    data: PairedPatches
    batches: PairBatches
    device: torch.device


def config_for(args: argparse.Namespace, precision: str, batch_size: int, compiled: bool, **kw: Any) -> FusionConfig:
    return FusionConfig(batch_size=batch_size, device=args.device, amp_bf16=precision == "bf16", compile=compiled,
                        seed=args.seed, **kw)


def new_trainable(config: FusionConfig, setup: Setup) -> FusionTrainable:
    """What ``train_fusion`` builds: the same seeding, copies of the encoders, decoders off without c_rec."""
    seed_everything(config.seed)
    fusion = build_model(config, setup.image_encoder, setup.rna_encoder)
    if config.c_rec == 0:
        fusion.rna_encoder.decoder.requires_grad_(False)
    return FusionTrainable(fusion, Temperature(config.temperature, config.learnable_temperature)).to(setup.device)


def batch_order(n_pairs: int, batch_size: int, n_steps: int, seed: int) -> list[torch.Tensor]:
    """Row batches of ``n_steps`` steps: shuffled epochs of the pairs (the last partial batch of an epoch dropped)."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = n_pairs // batch_size
    if per_epoch < 1:
        raise SystemExit(f"--pairs {n_pairs} is smaller than the batch size {batch_size}")
    rows: list[torch.Tensor] = []
    while len(rows) < n_steps:
        order = torch.randperm(n_pairs, generator=generator)
        rows += [order[i * batch_size:(i + 1) * batch_size] for i in range(per_epoch)]
    return rows[:n_steps]


def count_step_flops(config: FusionConfig, setup: Setup) -> float:
    """FLOP of one training step (forward + backward of ``fusion_losses``; the optimiser update is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    def forward(q, k, v, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_flop_count(q, k, v)

    def backward(grad_out, q, k, v, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_backward_flop_count(grad_out, q, k, v)

    aten = torch.ops.aten
    custom = {}  # the CPU's fused attention kernels are not in torch's table: count them like the GPU ones
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", forward),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", backward)):
        if hasattr(aten, name):
            custom[getattr(aten, name)] = formula
    parts = new_trainable(config, setup)  # eager: the counter sees every aten call
    parts.train()
    images, rna, lineage = setup.batches.batch(batch_order(len(setup.data), config.batch_size, 1, config.seed)[0])
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with counter:
        losses = fusion_losses(parts, parts, images, rna, lineage, config, setup.device)
        losses["loss"].backward()
    flops = float(counter.get_total_flops())
    del parts, losses
    free_memory(setup.device)
    return flops


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def timed_training(config: FusionConfig, setup: Setup, warmup: int, steps: int, compile_rng: str,
                   host_rows: bool = False) -> dict[str, Any]:
    """Warm-up then timed optimiser steps as the trainer takes them; pairs/s, peak memory, first losses.

    The batch rows live on the device, as in :func:`gbhet_lib.training.fit` (so ``PairBatches.batch`` copies them
    back to the host at every step); ``host_rows`` keeps them on the host instead, to show what that copy costs.
    """
    device = setup.device
    if device.type == "cuda":
        free_memory(device)
        torch.cuda.reset_peak_memory_stats(device)
    parts = new_trainable(config, setup)
    torch.manual_seed(config.seed)  # dropout, as train_fusion (rank 0)
    trainable: torch.nn.Module = parts
    if config.compile:
        trainable = torch.compile(parts)
    optimizer = trainer_optimizer({"model": parts.fusion, "temperature": parts.temperature}, config, device)
    for group in optimizer.param_groups:
        group["lr"] = config.lr  # constant (the schedule does not change the work)
    generator = torch.Generator(device).manual_seed(config.seed + 1)
    order = batch_order(len(setup.data), config.batch_size, warmup + steps, config.seed)
    if not host_rows:
        order = [rows.to(device) for rows in order]
    parts.train()
    losses: list[torch.Tensor] = []
    sums: dict[str, torch.Tensor] = {}

    def step(rows: torch.Tensor) -> None:
        images, rna, lineage = setup.batches.batch(rows)
        out = fusion_losses(trainable, parts, images, rna, lineage, config, device, generator)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].detach())
        for k, v in out.items():  # the trainer's running sums
            sums[k] = sums.get(k, 0) + v.detach() * len(rows)

    rng = contextlib.nullcontext()
    if config.compile and compile_rng == "eager":
        import torch._inductor.config as inductor_config
        rng = inductor_config.patch(fallback_random=True)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with rng:
        began = time.perf_counter()
        for rows in order[:warmup]:
            step(rows)
        sync()
        warmup_s = time.perf_counter() - began
        began, step_seconds = time.perf_counter(), []
        for rows in order[warmup:]:
            start = time.perf_counter()
            step(rows)
            step_seconds.append(time.perf_counter() - start)  # meaningful on the CPU only (no GPU sync per step)
        sync()
        seconds = time.perf_counter() - began
    result = {"pairs_per_s": steps * config.batch_size / seconds, "steps_per_s": steps / seconds,
              "timed_seconds": seconds, "warmup_seconds": warmup_s,
              "losses": [float(x) for x in losses]}
    if device.type == "cpu":  # steps are synchronous there: the median step is robust to other load
        result["pairs_per_s_median_step"] = config.batch_size / float(np.median(step_seconds))
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    del trainable, parts, optimizer, losses, sums
    if config.compile:
        torch._dynamo.reset()
    free_memory(device)
    return result


def end_to_end(args: argparse.Namespace, setup: Setup, precision: str, batch_size: int) -> list[dict[str, Any]]:
    """``train_fusion`` for ``--e2e-epochs`` epochs: its own ``pairs_per_s`` per epoch."""
    config = config_for(args, precision, batch_size, False, epochs=args.e2e_epochs)
    with tempfile.TemporaryDirectory() as tmp:
        history = train_fusion(config, setup.data, setup.image_encoder, setup.rna_encoder, Path(tmp) / "run",
                               progress=False)
    free_memory(setup.device)
    return [{"epoch": int(r.epoch), "pairs_per_s": float(r.pairs_per_s), "train_seconds": float(r.train_seconds),
             "train_samples": int(r.train_samples), "train_loss": float(r.train_loss)} for r in history.itertuples()]


def training_part(args: argparse.Namespace, device: torch.device, report: dict[str, Any], save) -> None:
    sizes = token_sizes(args.genes, args.tokens, args.seed)
    torch.manual_seed(args.seed)
    if args.tiny:
        image_encoder = demo_encoder(img_size=args.img_size)
    else:
        image_encoder = PatchEncoder(args.arch, img_size=args.img_size)
    rna_encoder = ClusterTokenTransformer(sizes)
    rng = np.random.default_rng(args.seed)
    print(f"making {args.pairs} random {args.img_size}-px patches ...", flush=True)
    images = rng.integers(0, 256, (args.pairs, args.img_size, args.img_size, 3), dtype=np.uint8)
    data = paired(images, token_data(rna_table(args.lineages, args.genes, args.seed), sizes))
    setup = Setup(image_encoder, rna_encoder, data, PairBatches(data, device), device)
    peak = args.peak_flops or bf16_peak(device_name(device))
    counted = new_trainable(config_for(args, "fp32", args.batch_sizes[0], False), setup)
    counts = trainable_parameters(counted.fusion)  # as trained: the RNA decoders are off without c_rec
    del counted
    report["training"] = {
        "model": {"image_encoder": dict(image_encoder.hparams), "image_tokens": image_encoder.n_tokens,
                  "rna_token_sizes": sizes, "rna_genes": sum(sizes), "coattention_dim": 768, "heads": 8,
                  "proj_dim": 128, "trainable_parameters": counts,
                  "losses": "best variant: ITC + ITM (rolled negatives), c_rec = 0"},
        "data": {"pairs": len(data), "lineages": args.lineages, "images": "uniform random uint8",
                 "rna": "log1p(gamma(0.8, 20)) per gene and lineage"},
        "bf16_peak_flops": peak,
        "peak_note": ("share_of_bf16_peak = FLOP per step × steps/s / the dense bf16 tensor-core peak; fp32 rows "
                      "are divided by the same bf16 peak (TF32 matmul is "
                      f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}, the library's default)"),
        "flops_per_step": {}, "runs": [], "loss_check": [], "end_to_end": None}
    print(f"image encoder {image_encoder.hparams['arch']} @ {args.img_size} px ({image_encoder.n_tokens} tokens), "
          f"RNA tokens {sizes} ({sum(sizes)} genes), {len(data)} pairs, {args.lineages} lineages; "
          f"trainable parameters {sum(counts.values()) / 1e6:.1f} M; device {device_name(device)}; "
          f"bf16 peak {'unknown' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}", flush=True)
    section = report["training"]

    # train_fusion itself first: the library path, cold (epoch 0) and warm
    e2e_precision = args.precisions[0]
    print(f"train_fusion, {args.e2e_epochs} epoch(s), {e2e_precision}, batch {args.batch_sizes[0]}, eager ...",
          flush=True)
    rows = end_to_end(args, setup, e2e_precision, args.batch_sizes[0])
    section["end_to_end"] = {"precision": e2e_precision, "batch_size": args.batch_sizes[0], "compile": False,
                             "epochs": rows}
    for r in rows:
        print(f"  epoch {r['epoch']}: {r['pairs_per_s']:8.1f} pairs/s  ({r['train_samples']} pairs in "
              f"{r['train_seconds']:.1f} s; loss {r['train_loss']:.4f})", flush=True)
    save()

    for batch_size in args.batch_sizes:
        config = config_for(args, args.precisions[0], batch_size, False)
        section["flops_per_step"][str(batch_size)] = count_step_flops(config, setup)
        print(f"batch {batch_size}: {section['flops_per_step'][str(batch_size)] / 1e12:.3f} TFLOP per step "
              f"(forward + backward)", flush=True)
    save()
    compile_modes = [False] if args.no_compile else [False, True]
    # the paper's setting first (bf16, batch 64, eager then compiled): a run cut short loses the least useful rows;
    # last, on CUDA, that eager setting again with the batch rows kept on the host (fit keeps them on the device)
    settings = [(p, b, c, False) for p in args.precisions for b in args.batch_sizes for c in compile_modes]
    if device.type == "cuda":
        settings.append((args.precisions[0], args.batch_sizes[0], False, True))
    for precision, batch_size, compiled, host_rows in settings:
        config = config_for(args, precision, batch_size, compiled)
        label = (f"{precision:>4} batch {batch_size:>3} {'compiled' if compiled else 'eager':>8}"
                 f"{', rows on host' if host_rows else ''}")
        row: dict[str, Any] = {"precision": precision, "batch_size": batch_size, "compile": compiled,
                               "rows": "host" if host_rows else "device",
                               "warmup_steps": args.warmup, "timed_steps": args.steps}
        try:
            row.update(timed_training(config, setup, args.warmup, args.steps, args.compile_rng, host_rows))
        except torch.cuda.OutOfMemoryError as error:
            row["error"] = f"out of memory: {str(error).splitlines()[0]}"
            free_memory(device)
        except Exception as error:  # one failing setting (e.g. a compile error) must not lose the rest
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            free_memory(device)
        if "error" in row:
            print(f"{label}: FAILED ({row['error']})", flush=True)
        else:
            flops = section["flops_per_step"][str(batch_size)]
            row["tflops"] = flops * row["steps_per_s"] / 1e12
            row["share_of_bf16_peak"] = flops * row["steps_per_s"] / peak if peak else None
            share = "unknown" if peak is None else f"{100 * row['share_of_bf16_peak']:5.1f} %"
            memory = (f"{row['peak_memory_gib']:6.2f} GiB peak" if "peak_memory_gib" in row
                      else "peak memory n/a")
            median = (f" (median step {row['pairs_per_s_median_step']:.1f})"
                      if "pairs_per_s_median_step" in row else "")
            print(f"{label}: {row['pairs_per_s']:8.1f} pairs/s{median}  {row['tflops']:7.2f} TFLOP/s  "
                  f"{share} of bf16 peak  {memory}  (warm-up {row['warmup_seconds']:.1f} s)", flush=True)
        section["runs"].append(row)
        save()

    k = args.loss_steps
    for precision in args.precisions:
        for batch_size in args.batch_sizes:
            pair = {c: next((r for r in section["runs"] if r["precision"] == precision and r["rows"] == "device"
                             and r["batch_size"] == batch_size and r["compile"] == c and "losses" in r), None)
                    for c in (False, True)}
            if pair[False] is None or pair[True] is None:
                continue
            eager, compiled = (np.array(pair[c]["losses"][:k]) for c in (False, True))
            diff = np.abs(eager - compiled)
            check = {"precision": precision, "batch_size": batch_size, "steps": len(diff),
                     "compile_rng": args.compile_rng, "max_abs_diff": float(diff.max()),
                     "max_rel_diff": float((diff / np.abs(eager)).max()),
                     "eager_losses": eager.tolist(), "compiled_losses": compiled.tolist()}
            section["loss_check"].append(check)
            print(f"loss curve, {precision} batch {batch_size}, eager vs compiled, first {len(diff)} steps: max |diff| "
                  f"{check['max_abs_diff']:.3g} (max relative {check['max_rel_diff']:.3g}; eager "
                  f"{eager[0]:.4f} → {eager[-1]:.4f})", flush=True)
    save()
    del setup
    free_memory(device)


# ------------------------------------------------------------------------------------------- data-path part
def rates(run, batches: list[torch.Tensor], passes: int, sync) -> tuple[float, float]:
    """``run(rows)`` over the batches ``passes`` times: (items / total seconds, median over batches of items /
    seconds), the device synchronised after every batch."""
    per_batch = []
    began = time.perf_counter()
    for _ in range(passes):
        for rows in batches:
            start = time.perf_counter()
            run(rows)
            sync()
            per_batch.append(len(rows) / (time.perf_counter() - start))
    total = sum(len(rows) for rows in batches) * passes / (time.perf_counter() - began)
    return total, float(np.median(per_batch))


def data_path_part(args: argparse.Namespace, device: torch.device, report: dict[str, Any], save) -> None:
    try:
        from PIL import Image
    except ImportError:
        print("data path: skipped (PIL is not installed here; `pip install pillow` to measure it)", flush=True)
        report["data_path"] = {"skipped": "PIL is not installed"}
        save()
        return
    n, size, lineages = args.data_items, args.data_img_size, args.data_lineages
    sizes = token_sizes(args.data_genes, args.tokens, args.seed)
    genes = gene_ids(args.data_genes)
    bounds = np.cumsum([0] + sizes)
    tokens = {f"ppi_{k}": genes[a:b] for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))}
    values = rna_table(lineages, args.data_genes, args.seed)
    images = texture_patches(n, size, args.seed)
    patch_lineage = np.arange(n) % lineages
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)

    class AuthorsStyleDataset(torch.utils.data.Dataset):
        """Stand-in for the authors' RNATumorDataset: per item one PNG decode (→ ToTensor → CLIP Normalize) and one
        ``pd.read_csv`` of the lineage's TSV, whose rows are split into the token arrays with ``.loc``."""

        def __init__(self, png: list[Path], tsv: list[Path]) -> None:
            self.png, self.tsv = png, tsv

        def __len__(self) -> int:
            return len(self.png)

        def __getitem__(self, i: int):
            with Image.open(self.png[i]) as im:
                pixels = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
            image = (pixels.float().div(255) - mean) / std
            table = pd.read_csv(self.tsv[i], sep="\t", index_col=0)
            rna = {name: np.squeeze(table.loc[ids].to_numpy(copy=True), axis=1) for name, ids in tokens.items()}
            return image, rna, {"lineage": int(patch_lineage[i])}

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    batches = [order[s:s + DATA_BATCH] for s in range(0, n, DATA_BATCH)]
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        tsv = []
        for j in range(lineages):
            path = Path(tmp) / f"SR{j:03d}.tsv"
            pd.DataFrame({"tpm": values[j]}, index=pd.Index(genes, name="gene_id")).to_csv(path, sep="\t")
            tsv.append(path)
        png = []
        for i in range(n):
            path = Path(tmp) / f"patch_{i:05d}.png"
            Image.fromarray(images[i]).save(path)
            png.append(path)
        png_kb = float(np.mean([p.stat().st_size for p in png]) / 1e3)
        tsv_kb = float(np.mean([p.stat().st_size for p in tsv]) / 1e3)
        print(f"data path: {n} PNG patches ({size} px, {png_kb:.0f} KB each) and {lineages} RNA TSVs "
              f"({args.data_genes} genes, {tsv_kb:.0f} KB each) written in {time.perf_counter() - began:.1f} s",
              flush=True)
        dataset = AuthorsStyleDataset(png, [tsv[j] for j in patch_lineage])
        collate = torch.utils.data.default_collate

        def theirs_batch(rows: torch.Tensor) -> None:
            image, rna, _ = collate([dataset[int(i)] for i in rows])
            image = image.to(device, non_blocking=True)
            rna = {k: v.to(device, non_blocking=True) for k, v in rna.items()}
            assert image.shape == (len(rows), 3, size, size) and rna["ppi_0"].shape == (len(rows), sizes[0])

        dataset[0]  # warm the imports and caches
        theirs = rates(theirs_batch, batches, 1, sync)

    data = paired(images, token_data(values, sizes))
    ours_batches = PairBatches(data, device)
    mean_d, std_d = mean.view(1, 3, 1, 1).to(device), std.view(1, 3, 1, 1).to(device)

    def ours_batch(rows: torch.Tensor) -> None:
        ours_batches.batch(rows)

    def ours_normalised_batch(rows: torch.Tensor) -> None:
        images_d, _, _ = ours_batches.batch(rows)
        out = preprocess(images_d, size, mean_d, std_d)
        assert out.shape == (len(rows), 3, size, size)

    def numpy_gather_batch(rows: torch.Tensor) -> None:  # reference: the image rows gathered by numpy
        torch.from_numpy(data.images[rows.numpy()]).to(device, non_blocking=True)

    for run in (ours_batch, ours_normalised_batch, numpy_gather_batch):
        for rows in batches[:2]:  # warm-up
            run(rows)
    ours, ours_normalised, numpy_gather = (rates(run, batches, args.data_repeats, sync) for run in
                                           (ours_batch, ours_normalised_batch, numpy_gather_batch))
    report["data_path"] = {
        "items": n, "batch_size": DATA_BATCH, "img_size": size, "lineages": lineages, "genes": args.data_genes,
        "token_sizes": sizes, "png_kb_mean": png_kb, "tsv_kb_mean": tsv_kb, "device": str(device),
        "ours_repeats": args.data_repeats,
        "theirs_items_per_s": theirs[0], "ours_items_per_s": ours[0], "ratio_ours_over_theirs": ours[0] / theirs[0],
        "ours_normalised_items_per_s": ours_normalised[0],
        "ratio_ours_normalised_over_theirs": ours_normalised[0] / theirs[0],
        "reference_numpy_image_gather_items_per_s": numpy_gather[0],
        "median_batch": {"theirs_items_per_s": theirs[1], "ours_items_per_s": ours[1],
                         "ours_normalised_items_per_s": ours_normalised[1],
                         "reference_numpy_image_gather_items_per_s": numpy_gather[1],
                         "ratio_ours_over_theirs": ours[1] / theirs[1],
                         "ratio_ours_normalised_over_theirs": ours_normalised[1] / theirs[1]},
        "notes": ("items/s = all items / total time; median_batch: the median over batches of batch items / batch "
                  "time (less sensitive to other load on the machine). theirs: one process (DataLoader "
                  "num_workers=0), per item PIL PNG decode + ToTensor + CLIP Normalize + pd.read_csv(TSV, "
                  "index_col=0) + .loc per token, default_collate in batches of 64, moved to the device; files in "
                  "the page cache. ours: PairBatches(data, device).batch(rows) (uint8 images + float32 tokens on "
                  "the device); ours_normalised adds the encoder's preprocess (uint8 → normalised float32 on the "
                  "device), the same output as theirs; the reference gathers the same image rows with numpy fancy "
                  "indexing (no RNA), to show the cost of the torch indexing in PairBatches.batch")}
    print(f"data path, {n} items, batches of {DATA_BATCH}, device {device} (items/s overall; median batch):\n"
          f"  theirs (PNG + read_csv per item, 1 process): {theirs[0]:10.1f}; {theirs[1]:10.1f}\n"
          f"  ours PairBatches.batch:                      {ours[0]:10.1f}; {ours[1]:10.1f}  "
          f"({ours[0] / theirs[0]:.0f}x; {ours[1] / theirs[1]:.0f}x)\n"
          f"  ours batch + normalise on the device:        {ours_normalised[0]:10.1f}; {ours_normalised[1]:10.1f}  "
          f"({ours_normalised[0] / theirs[0]:.0f}x; {ours_normalised[1] / theirs[1]:.0f}x)\n"
          f"  reference: image rows gathered by numpy:     {numpy_gather[0]:10.1f}; {numpy_gather[1]:10.1f}",
          flush=True)
    save()


# ---------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:<n> or cpu")
    parser.add_argument("--pairs", type=int, help="synthetic training pairs in memory (default 4096; tiny 256)")
    parser.add_argument("--steps", type=int, help="timed optimiser steps per setting (default 30; tiny 6)")
    parser.add_argument("--warmup", type=int, help="untimed steps before them, the compile included (default 5; "
                                                   "tiny 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default 64 128 (paper: 64); tiny 16")
    parser.add_argument("--precisions", nargs="+", choices=("bf16", "fp32"),
                        help="default bf16 fp32 on CUDA, fp32 on the CPU (bf16 autocast is CUDA-only here)")
    parser.add_argument("--no-compile", action="store_true", help="eager runs only (no torch.compile)")
    parser.add_argument("--compile-rng", choices=("eager", "inductor"), default="eager",
                        help="dropout masks of compiled runs: eager's RNG (Inductor fallback_random, so the loss "
                             "check compares like with like; default) or Inductor's own")
    parser.add_argument("--loss-steps", type=int, default=10, help="first steps whose losses are compared")
    parser.add_argument("--e2e-epochs", type=int, help="epochs of the train_fusion run (default 2; tiny 1)")
    parser.add_argument("--arch", default=PAPER_ARCH, help="image encoder (timm ViT; ignored with --tiny)")
    parser.add_argument("--img-size", type=int, help="default 256; tiny 64")
    parser.add_argument("--genes", type=int, help="genes in the RNA tokens (default 15000; tiny 700)")
    parser.add_argument("--tokens", type=int, default=7, help="RNA tokens (PPI clusters)")
    parser.add_argument("--lineages", type=int, default=32, help="lineages (RNA profiles) of the training pairs")
    parser.add_argument("--peak-flops", type=float, help="dense bf16 peak FLOP/s (default: from the GPU name)")
    parser.add_argument("--data-path-only", action="store_true", help="only the data-path comparison")
    parser.add_argument("--no-data-path", action="store_true", help="skip the data-path comparison")
    parser.add_argument("--data-items", type=int, help="items read in the data-path comparison (default 512; "
                                                       "tiny 128)")
    parser.add_argument("--data-genes", type=int, default=15000, help="genes per RNA TSV")
    parser.add_argument("--data-lineages", type=int, default=8, help="RNA TSVs (lineages)")
    parser.add_argument("--data-img-size", type=int, default=256, help="PNG patch side")
    parser.add_argument("--data-repeats", type=int, default=5, help="passes over the items for our (fast) path")
    parser.add_argument("--tiny", action="store_true",
                        help="small models and sizes: the whole script in about 2 minutes on a 2-core CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="results JSON (default benchmarks/results/fusion-<device kind>.json)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    defaults = ({"pairs": 256, "steps": 6, "warmup": 2, "batch_sizes": [16], "e2e_epochs": 1, "img_size": 64,
                 "genes": 700, "data_items": 128} if args.tiny else
                {"pairs": 4096, "steps": 30, "warmup": 5, "batch_sizes": [64, 128], "e2e_epochs": 2,
                 "img_size": 256, "genes": 15000, "data_items": 512})
    defaults["precisions"] = ["bf16", "fp32"] if device.type == "cuda" else ["fp32"]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if "bf16" in args.precisions and device.type != "cuda":
        parser.error("bf16 autocast needs a CUDA device in gbhet_lib (TrainConfig: amp_bf16 needs CUDA)")
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    out = Path(args.out) if args.out else \
        Path(__file__).resolve().parent / "results" / f"fusion-{device_kind(device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    report: dict[str, Any] = {
        "benchmark": "fusion", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(device),
        "settings": vars(args), "complete": False}
    started = time.perf_counter()

    def save() -> None:
        report["wall_seconds"] = time.perf_counter() - started
        report["machine"]["load_average_at_save"] = os.getloadavg()
        out.write_text(json.dumps(report, indent=2) + "\n")

    m = report["machine"]
    print(f"{report['date']}  {m['device_name']}  torch {m['torch']}  "
          f"{m['cpu_count']} CPUs  → {out}", flush=True)
    if not args.no_data_path:
        data_path_part(args, device, report, save)
    if not args.data_path_only:
        training_part(args, device, report, save)
    report["complete"] = True
    save()
    print(f"done in {time.perf_counter() - started:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
