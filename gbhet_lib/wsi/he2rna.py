"""HE2RNA (Schmauch et al., Nat Commun 11:3877, 2020): gene expression from the tile features of a slide.

The model as the authors' code defines it (reference spec §1.2):

* a per-tile MLP written as 1×1 ``Conv1d`` layers, ``n_features`` → ``hidden`` … → ``n_genes`` (2048 → 1024 → 1024
  → G in the paper), ReLU and dropout (p = 0.25) after each hidden layer, the last layer linear with its bias
  starting at the mean training target of each gene;
* **top-k aggregation per gene** over a slide's valid tiles: for each gene, the mean of the k largest tile scores
  (k clipped to the bag's number of valid tiles). In training one k is drawn per batch from ``ks`` =
  (1, 2, 5, 10, 20, 50, 100); in evaluation the output is the mean of the k-aggregated outputs over all ``ks``;
* ReLU at the output (``nonnegative``): the paper's targets, log10(1 + FPKM-UQ), are ≥ 0.

One change: the authors find pads as tiles whose features are all ≤ 0. Our tile features can be negative, so the
valid tiles are given as an explicit mask (:func:`pad_bags` makes it).

:func:`topk_means` is the aggregation alone (the MRI model's "topk" readout reuses it). Imports only torch and numpy.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

#: the authors' k values (training draws one per batch; evaluation averages over all)
HE2RNA_KS = (1, 2, 5, 10, 20, 50, 100)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"ks={ks!r} must be a non-empty sequence of positive integers, e.g. {HE2RNA_KS}")
    return tuple(int(k) for k in ks)


def topk_means(scores: Tensor, mask: Tensor | None, ks: Sequence[int]) -> Tensor:
    """Per bag and gene, the mean of the k largest scores over the valid tiles, for every k of ``ks``.

    Args:
        scores: (B, G, N) tile scores (any float dtype; computed in float32).
        mask: (B, N) bool, True for valid tiles (pads are False), or None (every tile valid). Every bag needs at
            least one valid tile.
        ks: the k values; each is clipped to the bag's number of valid tiles (k ≥ n → the mean of the valid tiles).

    Returns:
        (len(ks), B, G) float32.
    """
    ks = _check_ks(ks)
    if scores.ndim != 3:
        raise ValueError(f"scores must be (batch, genes, tiles), got shape {tuple(scores.shape)}")
    b, _, n = scores.shape
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=scores.device)
    if mask.shape != (b, n) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool (batch, tiles) = {(b, n)} tensor, got {mask.dtype} "
                         f"{tuple(mask.shape)}; pad_bags makes it")
    n_valid = mask.sum(1)
    if bool((n_valid == 0).any()):
        raise ValueError(f"bag(s) {torch.nonzero(n_valid == 0).flatten().tolist()} have no valid tile; drop them")
    k_max = min(max(ks), n)
    filled = scores.float().masked_fill(~mask[:, None, :], float("-inf"))
    top = filled.topk(k_max, dim=-1).values  # (B, G, k_max), descending: pads (−inf) come last
    valid = torch.arange(k_max, device=scores.device)[None, :] < n_valid[:, None]  # (B, k_max)
    cumulative = top.masked_fill(~valid[:, None, :], 0.0).cumsum(-1)
    out = []
    for k in ks:
        kk = torch.clamp(n_valid, max=k)  # (B,), ≤ k_max
        index = (kk - 1)[:, None, None].expand(-1, cumulative.shape[1], 1)
        out.append(cumulative.gather(-1, index).squeeze(-1) / kk[:, None].float())
    return torch.stack(out)


class HE2RNA(nn.Module):
    """HE2RNA's per-tile MLP with top-k aggregation per gene.

    Args:
        n_features: D, features per tile (2048 for the paper's ResNet-50 tiles).
        n_genes: G, genes predicted.
        hidden: widths of the hidden 1×1 convolutions ((1024, 1024) as published; () for a linear per-tile model).
        dropout: dropout after each hidden layer (0.25).
        ks: k values of the aggregation (:data:`HE2RNA_KS`).
        nonnegative: ReLU at the output (for log10(1 + FPKM) targets, ≥ 0); False for centred targets.
        gene_means: (G,) mean training target per gene, the starting bias of the output layer (None: zeros). Pass
            the mean over the *training* patients only.
        generator: the CPU generator k is drawn from in training when ``forward`` gets none; None: torch's global
            generator (seeded by :func:`~gbhet_lib.training.seeds.seed_everything` and saved in every checkpoint
            by :func:`~gbhet_lib.training.loop.fit`, so a resumed run draws the same k).

    Parameters: D·h₁ + h₁·h₂ + h₂·G (+ biases): ≈ 2.1 M + 1.05 M + 1024·G as published.
    """

    def __init__(self, n_features: int, n_genes: int, hidden: tuple[int, ...] = (1024, 1024),
                 dropout: float = 0.25, ks: tuple[int, ...] = HE2RNA_KS, nonnegative: bool = True,
                 gene_means: Tensor | np.ndarray | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("n_features", n_features), ("n_genes", n_genes)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden={hidden} must hold positive widths (or be () for a linear per-tile model)")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")
        self.ks = _check_ks(ks)
        self.nonnegative = bool(nonnegative)
        self.generator = generator
        self.hparams = {"n_features": int(n_features), "n_genes": int(n_genes), "hidden": list(hidden),
                        "dropout": float(dropout), "ks": list(self.ks), "nonnegative": self.nonnegative}
        layers: list[nn.Module] = []
        width = int(n_features)
        for h in hidden:
            layers += [nn.Conv1d(width, h, kernel_size=1), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Conv1d(width, int(n_genes), kernel_size=1)
        init_output_bias(self.out, gene_means)

    @property
    def n_genes(self) -> int:
        return self.out.out_channels

    def tile_scores(self, x: Tensor) -> Tensor:
        """(B, D, N) tile features → (B, G, N) per-tile gene scores (before aggregation and ReLU)."""
        expected = self.hparams["n_features"]
        if x.ndim != 3 or x.shape[1] != expected:
            raise ValueError(f"x must be (batch, {expected} features, tiles), got shape {tuple(x.shape)}; "
                             "pad_bags turns (tiles, features) bags into this layout")
        return self.out(self.mlp(x))

    def forward(self, x: Tensor, mask: Tensor | None = None, k: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Predicted expression (B, G) from tile features ``x`` (B, D, N) and the valid-tile ``mask`` (B, N).

        ``k``: aggregate with this k only (training and evaluation). Otherwise in training one k is drawn from
        ``ks`` for the whole batch (from ``generator``, else the module's, else torch's global generator) and in
        evaluation the outputs for all ``ks`` are averaged.
        """
        scores = self.tile_scores(x)
        if k is not None:
            ks: tuple[int, ...] = _check_ks([k])
        elif self.training:
            gen = generator if generator is not None else self.generator
            ks = (self.ks[int(torch.randint(len(self.ks), (1,), generator=gen))],)
        else:
            ks = self.ks
        out = topk_means(scores, mask, ks).mean(0)
        return torch.relu(out) if self.nonnegative else out


def init_output_bias(layer: nn.Conv1d | nn.Linear, gene_means: Tensor | np.ndarray | None) -> None:
    """Set the output layer's bias to ``gene_means`` ((G,), finite), so the untrained model predicts each gene's
    mean training target (zeros when None)."""
    with torch.no_grad():
        if gene_means is None:
            layer.bias.zero_()
            return
        means = torch.as_tensor(np.asarray(gene_means, dtype=np.float32)).reshape(-1)
        if means.numel() != layer.bias.numel():
            raise ValueError(f"gene_means has {means.numel()} values for {layer.bias.numel()} genes; give the "
                             "mean training target of each gene, in the targets' column order")
        if not bool(torch.isfinite(means).all()):
            raise ValueError("gene_means holds NaN or infinite values; compute it from finite training targets")
        layer.bias.copy_(means)


def pad_bags(bags: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Stack bags of tile features of unequal length for :class:`HE2RNA`.

    Args:
        bags: B arrays (N_b, D): one row per tile, the same D for all, N_b ≥ 1.

    Returns:
        ``x`` (B, D, N_max) float32, pads zero, and ``mask`` (B, N_max) bool, True for the real tiles.
    """
    if len(bags) == 0:
        raise ValueError("bags is empty: give one (tiles, features) array per slide")
    arrays = [np.asarray(b, dtype=np.float32) for b in bags]
    bad = [i for i, a in enumerate(arrays) if a.ndim != 2 or a.shape[0] == 0]
    if bad:
        raise ValueError(f"bag(s) {bad[:10]} are not non-empty (tiles, features) arrays; drop slides without tiles")
    widths = sorted({a.shape[1] for a in arrays})
    if len(widths) > 1:
        raise ValueError(f"bags have different feature counts {widths}; extract every slide with one encoder")
    n_max = max(a.shape[0] for a in arrays)
    x = torch.zeros(len(arrays), widths[0], n_max)
    mask = torch.zeros(len(arrays), n_max, dtype=torch.bool)
    for i, a in enumerate(arrays):
        x[i, :, :a.shape[0]] = torch.from_numpy(a.T)
        mask[i, :a.shape[0]] = True
    return x, mask
