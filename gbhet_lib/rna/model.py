"""The RNA encoder: one transformer block over gene-cluster tokens ("AttentionRNA", reference spec §3.1).

Each of the K gene tokens (a cluster of n_k genes) is embedded by its own Linear(n_k → dim) → ReLU → BatchNorm1d
→ Dropout; a learned CLS token is prepended and learned positions are added; one pre-LN transformer block (multi-head
self-attention with qkv bias, then a GELU MLP, both residual) and a final LayerNorm follow. Output token k+1 is
decoded back to token k's genes by its own Linear(dim → n_k); the CLS output is projected to ``proj_dim`` and
L2-normalised for the contrastive loss.

Differences from the authors' code, on purpose:

* the positional table has K+1 rows for any K (theirs is fixed at 25, capping the model at 24 tokens, §10.5);
* one return type, :class:`EncoderOutput`, in training and evaluation (theirs returns 2 values in training and
  3 in evaluation);
* the frozen survival variant keeps the frozen encoder in evaluation mode, so BatchNorm statistics and dropout
  are frozen too (§10.21).

Parameter names follow the authors' (``embedder.<k>``, ``attention_net.*``, ``decoder.<k>``, ``proj_head``).
Imports only torch, so it runs on the GPU machine.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_NORM_EPS = 1e-6
INIT_STD = 0.02


class EncoderOutput(NamedTuple):
    """What :meth:`ClusterTokenTransformer.forward` returns.

    Attributes:
        reconstruction: K tensors, token k's reconstructed genes, shape (B, n_k).
        tokens: the block's output tokens, CLS first, shape (B, K+1, dim).
        projection: the L2-normalised projection of the CLS output, shape (B, proj_dim).
        attention: the self-attention weights, shape (B, heads, K+1, K+1) (rows sum to 1), when asked for with
            ``return_attention=True``; part of the autograd graph, so ``attention.retain_grad()`` gives Grad-CAM
            its gradients. Otherwise None.
    """

    reconstruction: list[Tensor]
    tokens: Tensor
    projection: Tensor
    attention: Tensor | None = None


class _Attention(nn.Module):
    """Multi-head self-attention that also returns its attention weights."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, dim) → output (B, T, dim) and attention weights (B, heads, T, T)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        out = (attention @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out), attention


class _Mlp(nn.Module):
    """dim → hidden → dim with GELU (no dropout, as in the authors' block)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _TokenBlock(nn.Module):
    """CLS + positions, one pre-LN transformer block, final LayerNorm (trunc-normal 0.02 initialisation)."""

    def __init__(self, n_tokens: int, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens + 1, dim))
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        nn.init.trunc_normal_(self.cls_token, std=INIT_STD)
        nn.init.trunc_normal_(self.pos_embed, std=INIT_STD)
        self.apply(_init_block_weights)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Embedded tokens (B, K, dim) → output tokens (B, K+1, dim), CLS first, and attention (B, h, K+1, K+1)."""
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        attended, attention = self.attn(self.norm1(x))
        x = x + attended
        x = x + self.mlp(self.norm2(x))
        return self.norm(x), attention


def _init_block_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ClusterTokenTransformer(nn.Module):
    """The RNA encoder over K gene-cluster tokens (the authors' "AttentionRNA").

    Args:
        token_sizes: n_k, the number of genes of each token, in input order (any K ≥ 1).
        dim: token width (128 in the paper).
        heads: attention heads; must divide ``dim`` (8).
        mlp_ratio: MLP hidden width as a multiple of ``dim`` (4).
        dropout: dropout after each token embedder (0.5).
        proj_dim: width of the contrastive projection (64).

    Embedders, decoders and the projection keep PyTorch's default initialisation; the transformer block (CLS,
    positions, linears, LayerNorms) is initialised as in the authors' code.
    """

    def __init__(self, token_sizes: Sequence[int], dim: int = 128, heads: int = 8, mlp_ratio: float = 4,
                 dropout: float = 0.5, proj_dim: int = 64) -> None:
        super().__init__()
        sizes = [int(n) for n in token_sizes]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"token_sizes must list at least one token, each with at least one gene; got {sizes}")
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.token_sizes = tuple(sizes)
        self.dim, self.heads, self.mlp_ratio, self.dropout, self.proj_dim = dim, heads, mlp_ratio, dropout, proj_dim
        self.embedder = nn.ModuleList(
            nn.Sequential(nn.Linear(n, dim), nn.ReLU(), nn.BatchNorm1d(dim), nn.Dropout(dropout)) for n in sizes)
        self.attention_net = _TokenBlock(len(sizes), dim, heads, mlp_ratio)
        self.decoder = nn.ModuleList(nn.Linear(dim, n) for n in sizes)
        self.proj_head = nn.Linear(dim, proj_dim)

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor arguments: ``ClusterTokenTransformer(**model.hparams)`` rebuilds the architecture."""
        return {"token_sizes": list(self.token_sizes), "dim": self.dim, "heads": self.heads,
                "mlp_ratio": self.mlp_ratio, "dropout": self.dropout, "proj_dim": self.proj_dim}

    def encode(self, tokens: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """K tensors (B, n_k) → output tokens (B, K+1, dim) and attention weights (B, heads, K+1, K+1)."""
        self._check_inputs(tokens)
        embedded = torch.stack([embed(x) for embed, x in zip(self.embedder, tokens)], dim=1)
        return self.attention_net(embedded)

    def forward(self, tokens: Sequence[Tensor], return_attention: bool = False) -> EncoderOutput:
        """K tensors (B, n_k) → reconstruction, output tokens, normalised projection (see :class:`EncoderOutput`)."""
        out, attention = self.encode(tokens)
        reconstruction = [decode(out[:, k + 1]) for k, decode in enumerate(self.decoder)]
        # float32 even under autocast: a temperature of 0.005 multiplies similarity errors by 200
        with torch.autocast(device_type=out.device.type, enabled=False):
            projection = F.normalize(self.proj_head(out[:, 0].float()), dim=-1)
        return EncoderOutput(reconstruction, out, projection, attention if return_attention else None)

    def _check_inputs(self, tokens: Sequence[Tensor]) -> None:
        if len(tokens) != len(self.token_sizes):
            raise ValueError(f"expected {len(self.token_sizes)} token tensors, got {len(tokens)}")
        for k, (x, n) in enumerate(zip(tokens, self.token_sizes)):
            if x.ndim != 2 or x.shape[1] != n:
                raise ValueError(f"token {k}: expected shape (batch, {n}), got {tuple(x.shape)}")


class SurvivalHead(nn.Module):
    """The survival variant (the authors' "AttentionRNASurvivalTime", spec §3.5): encoder CLS → a scalar.

    CLS (dim) → Linear(dim, hidden_dim) → ReLU → Linear(hidden_dim, 1). With a Cox loss the output is a log-risk
    (higher = shorter survival); with the paper's MSE loss it is a predicted survival time.

    Args:
        encoder: the (pre-trained) encoder; its decoders and projection are not used. It becomes a sub-module:
            freezing changes its ``requires_grad`` flags.
        hidden_dim: the head's hidden width (the paper uses its projection dim, 64).
        freeze_encoder: train the head only. The frozen encoder stays in evaluation mode whatever ``train()``
            is called with, so its BatchNorm statistics and dropout are frozen as well (fixes §10.21).
    """

    def __init__(self, encoder: ClusterTokenTransformer, hidden_dim: int = 64, freeze_encoder: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.freeze_encoder = freeze_encoder
        self.head = nn.Sequential(nn.Linear(encoder.dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        if freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True) -> SurvivalHead:
        """Set training mode, except for a frozen encoder, which stays in evaluation mode."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, tokens: Sequence[Tensor]) -> Tensor:
        """K tensors (B, n_k) → one score per sample, shape (B,)."""
        out, _ = self.encoder.encode(tokens)
        return self.head(out[:, 0]).squeeze(-1)
