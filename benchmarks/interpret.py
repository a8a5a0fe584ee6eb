"""Benchmark of chapter 6's attributions (gbhet_lib.interpret.gradcam): patches/s of RNA Grad-CAM (one forward and
backward per batch, attention maps kept), of integrated gradients over the expression (captum, ``--ig-steps``
interpolation steps from image tokens computed once), of pixel saliency (one patch at a time, as the heat maps use
it) and of the heat maps' match scores (forward only), on one fusion model with random weights.

Paper size (GPU): DeiT-B/16 at 256 px, co-attention 768 wide with 8 heads, RNA encoder over 7 PPI-like tokens of
15,000 genes in all (the sizes of benchmarks/fusion.py). The demo size (CPU): chapter 3's encoder at 64 px and 2,500
genes. The patches are random textures in memory, so the figures are of the model, not of patch I/O. The first
pass of each method is a warm-up and is not counted.

GPU, paper size, one command:
    python benchmarks/interpret.py --device cuda
CPU, the demo model (about a minute on 2 cores):
    .venv/bin/python benchmarks/interpret.py --device cpu --demo --n 64
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion import paired, rna_table, texture_patches, token_data, token_sizes  # noqa: E402

from gbhet_lib.fusion.model import FusionModel  # noqa: E402
from gbhet_lib.interpret import gradcam  # noqa: E402
from gbhet_lib.rna.model import ClusterTokenTransformer  # noqa: E402
from gbhet_lib.training import resolve_device  # noqa: E402
from gbhet_lib.wsi.encoder import PAPER_ARCH, PatchEncoder, demo_encoder  # noqa: E402


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(run, n: int, device: torch.device, repeats: int) -> float:
    """Items/s of ``run()`` (which handles ``n`` items) over ``repeats`` timed passes after one warm-up pass."""
    run()
    synchronise(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    synchronise(device)
    return n * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--demo", action="store_true", help="the demo model (default: paper size)")
    parser.add_argument("--n", type=int, default=256, help="patches explained per pass")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per method")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    size, n_genes, dim = (64, 2500, 768) if args.demo else (256, 15_000, 768)
    torch.manual_seed(0)
    image = demo_encoder(img_size=size) if args.demo else PatchEncoder(PAPER_ARCH, img_size=size)
    sizes = token_sizes(n_genes, 7, 0)
    model = FusionModel(image, ClusterTokenTransformer(sizes), dim=dim, heads=8).to(device).eval()
    data = paired(texture_patches(args.n, size, 0), token_data(rna_table(16, n_genes, 0), sizes))
    rows = np.arange(len(data))
    results = {"device": str(device), "torch": torch.__version__, "img_size": size, "genes": n_genes,
               "encoder": "demo (ViT-Tiny, conv stem)" if args.demo else PAPER_ARCH, "n": args.n,
               "batch_size": args.batch_size, "ig_steps": args.ig_steps, "repeats": args.repeats}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
        torch.cuda.reset_peak_memory_stats(device)
    results["gradcam_patches_per_s"] = rate(lambda: gradcam.rna_gradcam(model, data, rows, args.batch_size),
                                            args.n, device, args.repeats)
    results["ig_patches_per_s"] = rate(lambda: gradcam.integrated_gradients(model, data, rows, args.ig_steps,
                                                                            max(1, args.batch_size // 2)),
                                       args.n, device, args.repeats)
    few = rows[:16]
    results["saliency_patches_per_s"] = rate(lambda: [gradcam.pixel_saliency(model, data, int(r)) for r in few],
                                             len(few), device, args.repeats)
    results["match_scores_patches_per_s"] = rate(lambda: gradcam.match_scores(model, data, rows, 128),
                                                 args.n, device, args.repeats)
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    results["ig_cost_vs_gradcam"] = results["gradcam_patches_per_s"] / results["ig_patches_per_s"]
    for key, value in results.items():
        print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
