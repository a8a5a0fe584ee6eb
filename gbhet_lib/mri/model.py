"""Farooq et al.'s MRI → expression model (arXiv 2408.00311, reference spec §2): a TransUNet-style encoder (CNN
stages, then a transformer over the feature-map tokens) and a 1-D convolution head over the genes.

The paper gives the outline only (§2.2 lists what it leaves open); what we fix, with MONAI blocks:

* **input**: a cubic tumour-centred crop of the four co-registered sequences, (B, 4, S, S, S)
  (:func:`gbhet_lib.mri.preprocess.tumour_centred_crop`);
* **CNN**: one stride-2 MONAI ``ResidualUnit`` (3-D, instance norm, PReLU) per entry of ``cnn_channels``, so S³
  voxels become (S / 2^stages)³ tokens (demo: 16³ → 2³ = 8 tokens of 32 channels);
* **transformer**: a linear map to ``hidden`` plus a learned position embedding, ``layers`` pre-LN ViT blocks (8 as
  published; 2 in the demo), then LayerNorm. The block is torch's ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu")``,
  the same computation as ``monai.networks.blocks.TransformerBlock`` (x + attention(LN x), then x + MLP(LN x),
  GELU MLP, dropout on attention weights and outputs), because MONAI's needs ``einops``, which the project does not
  install (its flash path would also apply attention dropout in evaluation mode);
* **head** (the paper's "dropout and a 1-D convolution"): dropout, then ``Conv1d(hidden, G, kernel_size=1)``
  over the tokens, (B, G, T), read out over the tokens: ``mean`` (the paper-literal patient-level pooling) or
  ``topk`` (HE2RNA-style: per gene the mean of the k largest token scores, a k drawn from ``ks`` per batch in
  training and the outputs of all ``ks`` averaged in evaluation, :func:`gbhet_lib.wsi.he2rna.topk_means`). The
  head's bias starts at the mean training target of each gene, as HE2RNA's.

:meth:`FarooqNet.embed` is the patient embedding: the mean of the final tokens, (B, hidden).

Imports torch and numpy; MONAI (``ResidualUnit``, no einops needed) when a :class:`FarooqNet` is built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..wsi.he2rna import HE2RNA_KS, init_output_bias, topk_means

Readout = Literal["mean", "topk"]


@dataclass(frozen=True)
class FarooqConfig:
    """The architecture; the defaults are a CPU-sized demo, :meth:`paper` the published scale.

    Attributes:
        in_channels: MRI sequences stacked as channels (4: T1, T1-Gd, T2, FLAIR).
        input_size: S, voxels per side of the cubic crop (16 → 2³ tokens with three stages); divisible by
            2 ** len(cnn_channels).
        cnn_channels: output channels of the stride-2 CNN stages ((8, 16, 32)).
        hidden: transformer width (32; ViT-B: 768).
        layers: transformer blocks (2 in the demo; 8 as published, :meth:`paper`). On the demo's inner validation
            split (fold 0's training patients only, 64 train / 32 validation, two splits) two blocks at lr 3e-3
            reached a mean per-gene r of 0.081 and 0.099 after 40 epochs, eight blocks at 2e-3 0.054 and 0.076,
            at 1.6× the time per step: the deeper stack learns more slowly from ~86 patients.
        heads: attention heads (4; ``hidden`` must be divisible by it).
        mlp: transformer MLP width (64; ViT-B: 3072).
        dropout: dropout of the head, before the 1-D convolution (0.25, HE2RNA's rate; the paper gives none).
        transformer_dropout: dropout inside the transformer blocks and on the embedded tokens (TransUNet: 0.1; the
            demo: 0, because on two CPU cores its random draws cost a quarter of a training step, measured).
        readout: ``mean`` (paper-literal mean over tokens) or ``topk`` (HE2RNA-style top-k over tokens).
        ks: the k values of the ``topk`` readout (HE2RNA's; clipped to the token count).
    """

    in_channels: int = 4
    input_size: int = 16
    cnn_channels: tuple[int, ...] = (8, 16, 32)
    hidden: int = 32
    layers: int = 2
    heads: int = 4
    mlp: int = 64
    dropout: float = 0.25
    transformer_dropout: float = 0.0
    readout: Readout = "mean"
    ks: tuple[int, ...] = HE2RNA_KS

    def __post_init__(self) -> None:
        object.__setattr__(self, "cnn_channels", tuple(int(c) for c in self.cnn_channels))
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        for name in ("in_channels", "input_size", "hidden", "layers", "heads", "mlp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if not self.cnn_channels or min(self.cnn_channels) < 1:
            raise ValueError(f"cnn_channels={self.cnn_channels} must be one or more positive channel counts")
        factor = 2 ** len(self.cnn_channels)
        if self.input_size % factor:
            raise ValueError(f"input_size={self.input_size} must be divisible by 2 ** len(cnn_channels) = {factor} "
                             f"(each of the {len(self.cnn_channels)} CNN stages halves it); e.g. "
                             f"input_size={max(1, round(self.input_size / factor)) * factor}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads} (each head gets "
                             "hidden / heads channels)")
        for name in ("dropout", "transformer_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.readout not in ("mean", "topk"):
            raise ValueError(f"readout={self.readout!r} must be 'mean' (paper) or 'topk' (HE2RNA-style)")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks={self.ks} must be one or more positive integers")

    @property
    def grid(self) -> int:
        """Tokens per side after the CNN, S / 2^stages."""
        return self.input_size // 2 ** len(self.cnn_channels)

    @property
    def tokens(self) -> int:
        """T, the number of tokens (grid³)."""
        return self.grid ** 3

    @classmethod
    def paper(cls, **changes: object) -> FarooqConfig:
        """The published scale as we read it (reference spec §2.3, in 3-D): four stages on a 128³ crop (8³ = 512
        tokens, TransUNet's 1/16 map), ViT-B width 768, 12 heads, MLP 3072, 8 layers; ``changes`` override fields
        (e.g. ``readout="topk"``).

        The stage widths (64, 128, 256, 512) are R50's 3×3-convolution widths (its root and the bottleneck widths
        of its stages); 3-D residual units at R50's output widths (64, 256, 512, 1024) would hold 74 M CNN
        parameters (131 M in all), more than the whole 2-D R50-ViT. This setting: about 76 M + 769 · G.
        """
        return dataclasses.replace(cls(input_size=128, cnn_channels=(64, 128, 256, 512), hidden=768, heads=12,
                                       mlp=3072, layers=8, transformer_dropout=0.1), **changes)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-compatible values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class FarooqNet(nn.Module):
    """CNN stages → tokens → transformer → dropout + 1×1 ``Conv1d`` over tokens → readout; (B, C, S, S, S) → (B, G).

    Args:
        config: the architecture (:class:`FarooqConfig`).
        n_genes: G, genes predicted.
        gene_means: (G,) mean training target per gene, the head's starting bias (None: zeros); the training
            patients' mean only.
        generator: the CPU generator the ``topk`` readout draws k from in training (None: torch's global one,
            seeded and checkpointed by the training loop).
    """

    def __init__(self, config: FarooqConfig, n_genes: int, gene_means: Tensor | np.ndarray | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        from monai.networks.blocks import ResidualUnit

        if isinstance(n_genes, bool) or not isinstance(n_genes, (int, np.integer)) or n_genes < 1:
            raise ValueError(f"n_genes={n_genes!r} must be a positive integer")
        self.config, self.generator = config, generator
        self.hparams = {"config": config.to_dict(), "n_genes": int(n_genes)}
        stages, width = [], config.in_channels
        for channels in config.cnn_channels:
            stages.append(ResidualUnit(spatial_dims=3, in_channels=width, out_channels=channels, strides=2,
                                       kernel_size=3, subunits=2, act="PRELU", norm="INSTANCE"))
            width = channels
        self.cnn = nn.Sequential(*stages)
        self.embedding = nn.Linear(width, config.hidden)
        self.position = nn.Parameter(torch.zeros(1, config.tokens, config.hidden))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.embedding_dropout = nn.Dropout(config.transformer_dropout)
        # the pre-LN ViT block of monai.networks.blocks.TransformerBlock, from torch: MONAI's needs einops
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(config.hidden, config.heads, config.mlp,
                                                               dropout=config.transformer_dropout,
                                                               activation="gelu", batch_first=True,
                                                               norm_first=True)
                                    for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.hidden)
        self.head_dropout = nn.Dropout(config.dropout)
        self.head = nn.Conv1d(config.hidden, int(n_genes), kernel_size=1)
        init_output_bias(self.head, gene_means)

    @property
    def n_genes(self) -> int:
        return self.head.out_channels

    def tokens(self, x: Tensor) -> Tensor:
        """(B, C, S, S, S) crops → (B, T, hidden) final tokens (after the transformer's LayerNorm)."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.input_size, cfg.input_size, cfg.input_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must be (batch, {', '.join(map(str, expected))}) (channels, then a cubic crop), "
                             f"got shape {tuple(x.shape)}; crop with tumour_centred_crop(size={cfg.input_size})")
        features = self.cnn(x)  # (B, C_last, g, g, g)
        h = self.embedding(features.flatten(2).transpose(1, 2)) + self.position
        h = self.embedding_dropout(h)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def token_scores(self, x: Tensor) -> Tensor:
        """(B, G, T) per-token gene scores (before the readout)."""
        return self.head(self.head_dropout(self.tokens(x)).transpose(1, 2))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Predicted expression (B, G) of the crops ``x`` (B, C, S, S, S)."""
        scores = self.token_scores(x)
        if self.config.readout == "mean":
            return scores.float().mean(-1)
        if self.training:
            gen = generator if generator is not None else self.generator
            ks = (self.config.ks[int(torch.randint(len(self.config.ks), (1,), generator=gen))],)
        else:
            ks = self.config.ks
        return topk_means(scores, None, ks).mean(0)

    def embed(self, x: Tensor) -> Tensor:
        """The patient embedding: the mean of the final tokens, (B, hidden)."""
        return self.tokens(x).mean(1)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
