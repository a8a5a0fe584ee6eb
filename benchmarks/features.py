"""Benchmark of patch-feature extraction: patches/s, bf16 vs fp32, model only vs end to end from a patch store.

* model only: the encoder on normalised pixels already on the device (inference mode);
* end to end: :func:`gbhet_lib.wsi.features.extract_features` on a patch-store HDF5 (``patches`` (N, 256, 256, 3)
  uint8): read (in a background thread), copy to the device, resize/normalise, encode, copy the features back.

The share of peak is (FLOP per patch × patches/s) / ``--peak-flops`` (default: the dense bf16 peak of the GPU
found by name in ``gpu_peaks.py``, e.g. 989e12 for an H100 SXM; unknown GPUs get no share rather than a guess). FLOP per patch is counted from the model (2 per multiply-add: patch embedding, the
blocks' linear layers and attention products, the projection): 46.4 GFLOP for ViT-B/16 at 256 px.

GPU:   python benchmarks/features.py --device cuda --n 4096
CPU smoke check:   python benchmarks/features.py --device cpu --n 64 --arch vit_tiny_patch16_224 --batch-size 32
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from gpu_peaks import bf16_peak  # benchmarks/ is on sys.path

from gbhet_lib.training import bf16_autocast, resolve_device
from gbhet_lib.wsi.encoder import PAPER_ARCH, PatchEncoder
from gbhet_lib.wsi.features import extract_features


def flops_per_patch(encoder: PatchEncoder) -> float:
    """Forward FLOP of one patch (2 per multiply-add; norms, softmax and activations not counted)."""
    vit = encoder.vit
    d, tokens = vit.embed_dim, encoder.n_tokens
    patch_embed = vit.patch_embed.num_patches * vit.patch_embed.proj.weight[0].numel() * d
    macs = patch_embed + d * encoder.proj_dim
    for block in vit.blocks:
        linear = sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Linear))
        macs += tokens * linear + 2 * tokens * tokens * d  # QKᵀ and attention × V
    return 2.0 * macs


def _timed(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds per call of ``run`` (after one warm-up call), waiting for the device."""
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def _write_store(path: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset("patches", data=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                         chunks=(min(n, 16), size, size, 3))
        f.create_dataset("coords", data=np.zeros((n, 2), dtype=np.int64))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default=PAPER_ARCH)
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--n", type=int, default=4096, help="patches per measurement")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the n patches")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="the device's dense bf16 peak, FLOP/s (default: from the GPU name, gpu_peaks.py)")
    parser.add_argument("--store", help="an existing patch-store HDF5 (default: a random one of n patches)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.peak_flops is None:
        args.peak_flops = bf16_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    peak = args.peak_flops or float("nan")  # unknown device: the share of peak is NaN, not a guess
    torch.manual_seed(0)
    encoder = PatchEncoder(args.arch, img_size=args.img_size).to(device).eval()
    flops = flops_per_patch(encoder)
    batches = -(-args.n // args.batch_size)
    pixels = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store) if args.store else _write_store(Path(tmp) / "store.h5", args.n, args.img_size)
        with h5py.File(store, "r") as f:
            patches = f["patches"]
            n_store = len(patches)
            for precision in ("bf16", "fp32"):
                bf16 = precision == "bf16"

                @torch.inference_mode()
                def model_only() -> None:
                    for _ in range(batches):
                        with bf16_autocast(bf16, device):
                            encoder(pixels)

                def end_to_end() -> None:
                    extract_features(encoder, patches, args.batch_size, device, bf16)

                for mode, run, n in (("model", model_only, batches * args.batch_size),
                                     ("end-to-end", end_to_end, n_store)):
                    rate = n / _timed(run, device, args.repeats)
                    rows.append({"precision": precision, "mode": mode, "patches_per_s": rate,
                                 "tflops": rate * flops / 1e12, "share_of_bf16_peak": rate * flops / peak})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.arch} @ {args.img_size} px, {encoder.n_tokens} tokens, {flops / 1e9:.1f} GFLOP/patch, "
          f"batch {args.batch_size}, device {name}, peak {'%.3g FLOP/s' % args.peak_flops if args.peak_flops else 'unknown'}")
    for r in rows:
        print(f"{r['precision']:>5} {r['mode']:>11}: {r['patches_per_s']:9.1f} patches/s  {r['tflops']:8.3f} TFLOP/s  "
              f"{100 * r['share_of_bf16_peak']:6.2f} % of peak")
    if args.json:
        Path(args.json).write_text(json.dumps({"arch": args.arch, "img_size": args.img_size, "device": name,
                                               "batch_size": args.batch_size, "gflop_per_patch": flops / 1e9,
                                               "peak_flops": args.peak_flops, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
