"""Benchmark of the patch encoder's SimCLR pre-training (gbhet_lib.wsi.pretrain): patches/s of real training epochs
(two views per patch, NT-Xent, AdamW steps, a checkpoint per epoch), fp32 and bf16, beside the triplet training of
the same encoder on the same patches (gbhet_lib.wsi.train), so the cost the pre-training adds to every split of
chapters 3–5 is one ratio.

The patches are random uint8 images held in memory (``PatchArrays``), so the figures are of the model and the loop,
not of patch I/O. The first epoch is a warm-up and is not counted.

GPU, paper size (DeiT-B/16 at 256 px, random weights):
    python benchmarks/wsi_pretrain.py --device cuda
CPU, the demo encoder (what chapter 3 trains; about a minute on 2 cores):
    .venv/bin/python benchmarks/wsi_pretrain.py --device cpu --demo --n 256 --epochs 3
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from gbhet_lib.training import resolve_device
from gbhet_lib.wsi.encoder import PAPER_ARCH, PatchEncoder, demo_encoder
from gbhet_lib.wsi.pretrain import SimCLRConfig, pretrain_simclr
from gbhet_lib.wsi.train import PatchArrays, TripletConfig, train_triplet


def patches_per_second(history, n: int) -> float:
    """Patches/s over the epochs after the first (warm-up)."""
    seconds = history["train_seconds"].to_numpy()[1:]
    return float(n * len(seconds) / seconds.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--demo", action="store_true", help="the demo encoder at 64 px (default: DeiT-B/16 at 256)")
    parser.add_argument("--n", type=int, default=2048, help="patches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is a warm-up)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is a warm-up)")

    device = resolve_device(args.device)
    size = 64 if args.demo else 256
    make = (lambda: demo_encoder(img_size=size)) if args.demo else (lambda: PatchEncoder(PAPER_ARCH, img_size=size))
    rng = np.random.default_rng(0)
    data = PatchArrays(rng.integers(0, 256, (args.n, 2 * size, 2 * size, 3), dtype=np.uint8),
                       rng.integers(0, 16, args.n))
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" else [])  # bf16 autocast is CUDA-only here
    results = {"device": str(device), "encoder": "demo (ViT-Tiny, 2 blocks, conv stem)" if args.demo else PAPER_ARCH,
               "img_size": size, "n": args.n, "batch_size": args.batch_size, "epochs_timed": args.epochs - 1}
    for precision in precisions:
        common = dict(epochs=args.epochs, batch_size=args.batch_size, device=str(device), seed=0,
                      amp_bf16=precision == "bf16")
        with tempfile.TemporaryDirectory() as tmp:
            began = time.perf_counter()
            simclr = pretrain_simclr(make, data, SimCLRConfig(**common), Path(tmp) / "simclr", progress=False)
            triplet = train_triplet(make, data, None, TripletConfig(**common, margin=0.2, mining="semihard",
                                                                    augment=True, stain_jitter=0.2),
                                    Path(tmp) / "triplet", progress=False)
            wall = time.perf_counter() - began
        row = {"simclr_patches_per_s": patches_per_second(simclr, args.n),
               "triplet_patches_per_s": patches_per_second(triplet, args.n), "wall_s": wall}
        row["simclr_over_triplet_time"] = row["triplet_patches_per_s"] / row["simclr_patches_per_s"]
        results[precision] = row
        print(f"{precision}: SimCLR {row['simclr_patches_per_s']:.1f} patches/s, triplet "
              f"{row['triplet_patches_per_s']:.1f} patches/s: an epoch of pre-training costs "
              f"{row['simclr_over_triplet_time']:.2f}× a triplet epoch", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
