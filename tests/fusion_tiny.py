"""Tiny fusion inputs shared by the fusion training tests and their torchrun worker (not a test module)."""
from __future__ import annotations

import numpy as np

from gbhet_lib.fusion.data import PairedPatches, pair_patches
from gbhet_lib.rna.model import ClusterTokenTransformer
from gbhet_lib.rna.train import TokenData
from gbhet_lib.wsi.encoder import PatchEncoder, demo_encoder

N_LINEAGES, PATCHES_PER_LINEAGE, SIZE = 6, 12, 32
TINY_FUSION = {"coattention_dim": 32, "heads": 4, "proj_dim": 16, "batch_size": 16, "epochs": 3, "lr": 1e-3}


def tiny_pairs(seed: int = 0) -> PairedPatches:
    """6 lineages (3 patients) × 12 patches; each lineage's patches share a tint, so images carry the lineage."""
    rng = np.random.default_rng(seed)
    lineages = [f"P{i // 2}-L{i % 2}" for i in range(N_LINEAGES)]
    rna = TokenData(rng.normal(size=(N_LINEAGES, 12)).astype(np.float32), [np.arange(5), np.arange(5, 12)],
                    samples=lineages)
    tint = rng.integers(40, 215, size=(N_LINEAGES, 3))
    images, slides, keys = [], [], []
    for i, lineage in enumerate(lineages):
        noise = rng.integers(-40, 40, size=(PATCHES_PER_LINEAGE, SIZE, SIZE, 3))
        images.append(np.clip(tint[i] + noise, 0, 255).astype(np.uint8))
        slides += [f"slide-{lineage}"] * PATCHES_PER_LINEAGE
        keys += [f"slide-{lineage}:{j}" for j in range(PATCHES_PER_LINEAGE)]
    return pair_patches(np.concatenate(images), slides, keys, {f"slide-{x}": x for x in lineages},
                        {x: x.split("-")[0] for x in lineages}, rna)


def tiny_encoders(seed: int = 0) -> tuple[PatchEncoder, ClusterTokenTransformer]:
    import torch

    torch.manual_seed(seed)
    return demo_encoder(img_size=SIZE, proj_dim=16, depth=1), ClusterTokenTransformer([5, 7], dim=16, heads=4)
