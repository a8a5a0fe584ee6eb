"""Benchmark of chapter 7's two deep models (gbhet_lib.wsi.he2rna, gbhet_lib.mri.model): patients/s of training steps
(forward, MSE, backward, Adam step) and of prediction, fp32 and (on CUDA) bf16 autocast, with peak GPU memory.

Paper size (GPU): HE2RNA with ResNet-50's 2,048 tile features, hidden (1024, 1024), 100 super-tiles per patient; the
Farooq et al. model at ``FarooqConfig.paper()`` (128³ crops of 4 sequences, R50-like CNN stages, 8-layer transformer
768 wide with 12 heads); 20,000 genes. Demo size (CPU): the chapter's defaults (64 tile features, hidden (128, 128),
24 tiles, about the demo's 23 a slide; 16³ crops, hidden 32) and 2,500 genes. Inputs are random tensors in memory,
so the figures are of the models, not of I/O. The first step of each measurement is a warm-up and is not counted.

GPU, paper size, one command:
    python benchmarks/expression.py --device cuda
CPU, the demo models (about a minute on 2 cores):
    .venv/bin/python benchmarks/expression.py --device cpu --demo
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gbhet_lib.mri.model import FarooqConfig, FarooqNet, count_parameters
from gbhet_lib.training import resolve_device
from gbhet_lib.wsi.he2rna import HE2RNA


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step: Callable[[], None], n: int, device: torch.device, repeats: int) -> float:
    """Patients/s of ``step()`` (``n`` patients each) over ``repeats`` timed calls after one warm-up call."""
    step()
    synchronise(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    synchronise(device)
    return n * repeats / (time.perf_counter() - start)


def measure(model: nn.Module, args: tuple[torch.Tensor, ...], targets: torch.Tensor, device: torch.device,
            bf16: bool, repeats: int) -> dict[str, float]:
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")

    def train() -> None:
        model.train()
        with autocast:
            out = model(*args)
        loss = nn.functional.mse_loss(out.float(), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def predict() -> None:
        model.eval()
        with torch.no_grad(), autocast:
            model(*args)

    n = len(targets)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = {"train_patients_per_s": rate(train, n, device, repeats),
           "predict_patients_per_s": rate(predict, n, device, repeats)}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--demo", action="store_true", help="the demo models (default: paper size)")
    parser.add_argument("--batch-size", type=int, default=16, help="patients per step (HE2RNA: 16)")
    parser.add_argument("--genes", type=int, default=None, help="default: 20,000 (paper) or 2,500 (demo)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    genes = args.genes or (2500 if args.demo else 20000)
    b = args.batch_size
    if args.demo:
        he2rna = HE2RNA(64, genes, hidden=(128, 128))
        tiles = torch.randn(b, 64, 24)
        farooq = FarooqNet(FarooqConfig(), genes)
    else:
        he2rna = HE2RNA(2048, genes, hidden=(1024, 1024))
        tiles = torch.randn(b, 2048, 100)
        farooq = FarooqNet(FarooqConfig.paper(), genes)
    crops = torch.randn(b, 4, *(farooq.config.input_size,) * 3)
    targets = torch.rand(b, genes, device=device)
    mask = torch.ones(b, tiles.shape[-1], dtype=torch.bool)
    results: dict[str, object] = {"device": str(device), "torch": torch.__version__, "genes": genes, "batch_size": b,
                                  "size": "demo" if args.demo else "paper"}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    for name, model, inputs in (("he2rna", he2rna, (tiles, mask)), ("farooq", farooq, (crops,))):
        model.to(device)
        inputs = tuple(t.to(device) for t in inputs)
        results[f"{name}_parameters"] = count_parameters(model)
        for precision in precisions:
            for key, value in measure(model, inputs, targets, device, precision == "bf16", args.repeats).items():
                results[f"{name}_{precision}_{key}"] = value
    for key, value in results.items():
        print(f"{key:40s} {value:.4g}" if isinstance(value, float) else f"{key:40s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
