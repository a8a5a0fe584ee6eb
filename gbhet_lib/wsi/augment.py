"""Training-time augmentations of H&E patches: dihedral transforms and stain (HED) jitter.

Stain jitter (Tellez et al. 2018, "H and E stain augmentation improves generalization of convolutional networks
for histopathological mitosis detection"): each image's RGB is turned into optical density, unmixed into
haematoxylin, eosin and a residual channel with the Ruifrok–Johnston stain matrix, every channel's amount is scaled
by ``1 + U(−σ, σ)`` and shifted by ``U(−β, β)``, and the result is mixed back. Two sections stained on different
days differ in just this way, so a model trained with it cannot tell lineages apart by their slides' staining.

Imports only torch: it runs on the GPU machine.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: Ruifrok & Johnston (2001) haematoxylin, eosin, DAB optical-density vectors (rows), as scikit-image's rgb_from_hed
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float32)
_MIN_INTENSITY = 1.0 / 255.0


def dihedral(pixels: Tensor, generator: torch.Generator) -> Tensor:
    """Each image of (B, C, S, S) flipped horizontally or not and rotated by k · 90°, drawn from ``generator``."""
    k = torch.randint(0, 4, (len(pixels),), generator=generator).tolist()
    flip = torch.randint(0, 2, (len(pixels),), generator=generator).tolist()
    return torch.stack([torch.rot90(x.flip(-1) if f else x, r, dims=(-2, -1)) for x, r, f in zip(pixels, k, flip)])


def hed_jitter(images: Tensor, sigma: float, generator: torch.Generator, bias: float | None = None) -> Tensor:
    """Stain-jittered copies of RGB images (B, 3, H, W) in [0, 1] (see the module docstring).

    Args:
        sigma: per-image, per-stain relative change of the stain amount, drawn from U(−sigma, sigma) (0.05 is
            Tellez et al.'s "light", 0.2 their "strong" setting).
        generator: the CPU generator the draws come from (reproducible augmentation).
        bias: per-image, per-stain optical-density shift, U(−bias, bias); default ``sigma`` / 5.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    if sigma < 0:
        raise ValueError(f"sigma={sigma} must be non-negative")
    bias = sigma / 5 if bias is None else bias
    n = images.shape[0]
    scale = 1 + (torch.rand(n, 3, generator=generator) * 2 - 1) * sigma
    shift = (torch.rand(n, 3, generator=generator) * 2 - 1) * bias
    rgb_from_hed = RGB_FROM_HED / RGB_FROM_HED.norm(dim=1, keepdim=True)
    hed_from_rgb = torch.linalg.inv(rgb_from_hed)
    od = -torch.log(images.float().clamp_min(_MIN_INTENSITY))  # (B, 3, H, W)
    hed = torch.einsum("bchw,cs->bshw", od, hed_from_rgb.to(images.device))
    hed = hed * scale.to(images.device)[:, :, None, None] + shift.to(images.device)[:, :, None, None]
    od = torch.einsum("bshw,sc->bchw", hed, rgb_from_hed.to(images.device))
    return torch.exp(-od).clamp(0.0, 1.0)
