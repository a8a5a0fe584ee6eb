"""Dense (no sparsity) bf16 tensor-core peaks of the GPUs the benchmarks may meet, FLOP/s, from NVIDIA's data
sheets. The first pattern found in ``torch.cuda.get_device_name()`` wins, so the specific names come first."""
from __future__ import annotations

BF16_PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H200 NVL", 835e12),
    ("H100", 989e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12),  # SXM
    ("A100", 312e12),
)


def bf16_peak(name: str) -> float | None:
    """The dense bf16 peak of the GPU called ``name``, or None when it is not in the table."""
    for pattern, flops in BF16_PEAK_FLOPS:
        if pattern.lower() in name.lower():
            return flops
    return None
