"""The fusion model: bidirectional co-attention between image and RNA tokens (reference spec §5.1–5.2).

:class:`CoAttention` is the authors' "Coattention": one bidirectional cross-attention layer (no self-attention, no
FFN). Image tokens X (B, T, D_img) and RNA tokens R (B, K+1, D_rna) are projected without bias to queries, keys
and values of width ``dim`` (768, 8 heads); RNA queries attend over image keys and image queries over RNA keys;
each side's heads are projected back to its own width, added as a residual and LayerNorm-ed:

    R' = LN(R + rna_proj(softmax(Q_r K_xᵀ / √d_h) V_x)),    X' = LN(X + img_proj(softmax(Q_x K_rᵀ / √d_h) V_r)).

:class:`FusionModel` is the authors' "CoattentionModel": ITC embeddings from the *uni-modal* CLS tokens
(Linear → 128, L2-normalised), the co-attention on positive pairs and on negatives, an ITM head
Linear(D_img + D_rna → 2) on the fused CLS pair, and the RNA encoder's decoders on the fused RNA tokens.

Exactly the authors' arithmetic, computed with less work (nothing here changes a loss value or a gradient):

* the query/key/value projections of each side are computed **once** per batch and the negatives reuse them in
  their rolled (or sampled) order; the authors project X and R again for each of the three co-attention passes;
* during training only the image CLS query is attended (``image_queries="cls"``): the losses read X' only at
  CLS, and LayerNorm and attention rows are per token, so the other 256 image rows cannot change them. The full
  X' and the attention maps A_ir (B, 8, T, K+1) that Grad-CAM needs come with ``image_queries="all"``;
* attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
  kernels on the GPU) unless the maps are asked for.

Imports only torch (plus the RNA and WSI encoders): it runs on the GPU machine.
"""
from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..rna.model import LAYER_NORM_EPS, ClusterTokenTransformer

ImageQueries = Literal["cls", "all"]
NegativeSets = Sequence[tuple[Tensor, Tensor]]
Negatives = Union[NegativeSets, Callable[[Tensor, Tensor], NegativeSets]]


class Projected(NamedTuple):
    """One side's queries, keys and values, each (B, heads, T, head_dim)."""

    q: Tensor
    k: Tensor
    v: Tensor

    def take(self, rows: Tensor) -> Projected:
        """The same projections in another batch order (``rows``: B indices), e.g. rolled for negatives."""
        return Projected(self.q[rows], self.k[rows], self.v[rows])


class CoAttentionOutput(NamedTuple):
    """What :meth:`CoAttention.attend` returns.

    Attributes:
        image: X', (B, T, D_img), or (B, 1, D_img) (the CLS row only) with ``image_queries="cls"``.
        rna: R', (B, K+1, D_rna).
        image_attention: A_ir, image queries over RNA keys, (B, heads, T or 1, K+1), when maps were asked for;
            part of the autograd graph, so ``retain_grad()`` gives Grad-CAM its gradient. Else None.
        rna_attention: A_ri, RNA queries over image keys, (B, heads, K+1, T), when maps were asked for. Else None.
    """

    image: Tensor
    rna: Tensor
    image_attention: Tensor | None = None
    rna_attention: Tensor | None = None


class CoAttention(nn.Module):
    """One bidirectional cross-attention layer (the authors' "Coattention", spec §5.1).

    Args:
        image_dim: width of the image tokens (768 for ViT-B).
        rna_dim: width of the RNA tokens (128).
        dim: attention width (768); ``heads`` (8) must divide it (head dim 96).

    Parameter names follow the authors': ``img_qkv``, ``rna_qkv`` (no bias), ``img_proj``, ``rna_proj``,
    ``img_norm``, ``rna_norm``.
    """

    def __init__(self, image_dim: int = 768, rna_dim: int = 128, dim: int = 768, heads: int = 8) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"co-attention dim={dim} must be a multiple of heads={heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.img_qkv = nn.Linear(image_dim, 3 * dim, bias=False)
        self.rna_qkv = nn.Linear(rna_dim, 3 * dim, bias=False)
        self.img_proj = nn.Linear(dim, image_dim)
        self.rna_proj = nn.Linear(dim, rna_dim)
        self.img_norm = nn.LayerNorm(image_dim, eps=LAYER_NORM_EPS)
        self.rna_norm = nn.LayerNorm(rna_dim, eps=LAYER_NORM_EPS)

    def _split(self, qkv: Tensor) -> Projected:
        b, t, _ = qkv.shape
        q, k, v = qkv.reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return Projected(q, k, v)

    def project(self, image: Tensor, rna: Tensor) -> tuple[Projected, Projected]:
        """Queries, keys and values of image tokens (B, T, D_img) and RNA tokens (B, K+1, D_rna)."""
        return self._split(self.img_qkv(image)), self._split(self.rna_qkv(rna))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, maps: bool) -> tuple[Tensor, Tensor | None]:
        """(B, h, Tq, d) over (B, h, Tk, d) → (B, Tq, h·d) and, when ``maps``, the weights (B, h, Tq, Tk)."""
        if maps:
            weights = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
            out = weights @ v
        else:
            weights, out = None, F.scaled_dot_product_attention(q, k, v)
        b, h, t, d = out.shape
        return out.transpose(1, 2).reshape(b, t, h * d), weights

    def attend(self, image: Tensor, rna: Tensor, image_side: Projected, rna_side: Projected,
               image_queries: ImageQueries = "all", maps: bool = False) -> CoAttentionOutput:
        """Fuse pairs (image row i, RNA row i) from precomputed projections (:meth:`project`, maybe re-ordered).

        ``image``/``rna`` are the residual inputs in the same row order as their projections.
        """
        rna_heads, rna_attention = self._attend(rna_side.q, image_side.k, image_side.v, maps)
        fused_rna = self.rna_norm(rna + self.rna_proj(rna_heads))
        if image_queries == "cls":
            image, q_image = image[:, :1], image_side.q[:, :, :1]
        elif image_queries == "all":
            q_image = image_side.q
        else:
            raise ValueError(f"image_queries={image_queries!r} must be 'cls' or 'all'")
        image_heads, image_attention = self._attend(q_image, rna_side.k, rna_side.v, maps)
        fused_image = self.img_norm(image + self.img_proj(image_heads))
        return CoAttentionOutput(fused_image, fused_rna, image_attention, rna_attention)

    def forward(self, image: Tensor, rna: Tensor, return_attention: bool = False) -> CoAttentionOutput:
        """Image tokens (B, T, D_img) and RNA tokens (B, K+1, D_rna) → fused tokens of the same shapes (all rows).

        With ``return_attention`` the maps A_ir (B, heads, T, K+1) and A_ri (B, heads, K+1, T) come back too.
        """
        if image.shape[0] != rna.shape[0]:
            raise ValueError(f"image and RNA batches differ: {image.shape[0]} and {rna.shape[0]} rows")
        image_side, rna_side = self.project(image, rna)
        return self.attend(image, rna, image_side, rna_side, "all", return_attention)


class FusionOutput(NamedTuple):
    """What :meth:`FusionModel.forward` returns for a batch of B positive pairs.

    Attributes:
        image_embedding, rna_embedding: the ITC embeddings (B, proj_dim), L2-normalised, float32.
        itm_logits: (B·(1 + n_negative_sets), 2) match/no-match logits: the B positives first, then each set of
            B negatives in the order given; float32.
        reconstruction: K tensors (B, n_k), the RNA decoded from the fused RNA tokens of the positives.
        fused: the positives' co-attention output (image rows as asked for, maps when asked for).
        image_tokens, rna_tokens: the uni-modal encoder outputs, (B, T, D_img) and (B, K+1, D_rna).
        negatives: the negative sets used, as ``(image_rows, rna_rows)`` index pairs.
    """

    image_embedding: Tensor
    rna_embedding: Tensor
    itm_logits: Tensor | None
    reconstruction: list[Tensor]
    fused: CoAttentionOutput
    image_tokens: Tensor
    rna_tokens: Tensor
    negatives: NegativeSets = ()


class FusionModel(nn.Module):
    """Image encoder + RNA encoder + co-attention + ITC projections + ITM head (the authors' "CoattentionModel").

    Args:
        image_encoder: a module mapping normalised pixels (B, 3, S, S) to ``(tokens (B, T, D_img), _)``, e.g.
            :class:`~gbhet_lib.wsi.encoder.PatchEncoder`; it must have ``embed_dim`` on ``.vit`` or an
            ``image_dim`` argument here. Its own projection output is ignored (as the authors').
        rna_encoder: a :class:`~gbhet_lib.rna.model.ClusterTokenTransformer`; its 64-d head is ignored and its
            decoders reconstruct the RNA from the fused tokens.
        dim, heads: co-attention width and heads (768, 8).
        proj_dim: ITC embedding width (128).
        freeze_encoders: both encoders' parameters get no gradient (``requires_grad=False``); gradients with
            respect to the inputs (pixels, expression) still pass through them when the inputs require one.
        frozen_mode: with frozen encoders, ``eval`` keeps them in evaluation mode whatever ``train()`` says
            (BatchNorm statistics and dropout frozen too: really frozen), ``train`` leaves them following
            ``train()`` as the authors' code did (BatchNorm statistics keep updating and the RNA dropout of 0.5
            stays active, spec §5.4 / §10.21).

    The encoders' unused heads (the image ``vision_proj`` and the RNA ``proj_head``) are kept (so checkpoints
    round-trip) but never trained: ``requires_grad=False``.
    """

    def __init__(self, image_encoder: nn.Module, rna_encoder: ClusterTokenTransformer, dim: int = 768,
                 heads: int = 8, proj_dim: int = 128, freeze_encoders: bool = False,
                 frozen_mode: Literal["eval", "train"] = "eval", image_dim: int | None = None) -> None:
        super().__init__()
        if frozen_mode not in ("eval", "train"):
            raise ValueError(f"frozen_mode={frozen_mode!r} must be 'eval' or 'train'")
        image_dim = image_dim or image_encoder.vit.embed_dim
        self.image_encoder, self.rna_encoder = image_encoder, rna_encoder
        self.image_dim, self.rna_dim = image_dim, rna_encoder.dim
        self.freeze_encoders, self.frozen_mode = freeze_encoders, frozen_mode
        self.coattention = CoAttention(image_dim, rna_encoder.dim, dim, heads)
        self.image_itc = nn.Linear(image_dim, proj_dim)
        self.rna_itc = nn.Linear(rna_encoder.dim, proj_dim)
        self.itm_head = nn.Linear(image_dim + rna_encoder.dim, 2)
        for unused in ("vision_proj",):
            if hasattr(image_encoder, unused):
                getattr(image_encoder, unused).requires_grad_(False)
        rna_encoder.proj_head.requires_grad_(False)
        if freeze_encoders:
            image_encoder.requires_grad_(False)
            rna_encoder.requires_grad_(False)
            if frozen_mode == "eval":
                image_encoder.eval()
                rna_encoder.eval()

    def train(self, mode: bool = True) -> FusionModel:
        """Set training mode; encoders frozen in ``eval`` mode stay in evaluation mode."""
        super().train(mode)
        if self.freeze_encoders and self.frozen_mode == "eval":
            self.image_encoder.eval()
            self.rna_encoder.eval()
        return self

    def encode_image(self, pixels: Tensor) -> Tensor:
        """Normalised pixels (B, 3, S, S) → image tokens (B, T, D_img).

        Frozen encoders are not run under ``no_grad``: their parameters do not require gradients, so autograd
        records nothing inside them unless ``pixels`` requires a gradient (then ∂/∂pixels flows through, for
        saliency), and frozen training costs what it did under ``no_grad``.
        """
        return self.image_encoder(pixels)[0]

    def encode_rna(self, tokens: Sequence[Tensor]) -> Tensor:
        """K tensors (B, n_k) → RNA tokens (B, K+1, D_rna); like :meth:`encode_image`, a gradient reaches the
        expression values through frozen encoders when they require one (gene ranking)."""
        return self.rna_encoder.encode(tokens)[0]

    def image_embedding(self, image_tokens: Tensor) -> Tensor:
        """ITC embedding of images from their CLS token: (B, T, D_img) → (B, proj_dim), float32, norm 1."""
        with torch.autocast(device_type=image_tokens.device.type, enabled=False):
            return F.normalize(self.image_itc(image_tokens[:, 0].float()), dim=-1)

    def rna_embedding(self, rna_tokens: Tensor) -> Tensor:
        """ITC embedding of RNA profiles from their CLS token: (B, K+1, D_rna) → (B, proj_dim), float32, norm 1."""
        with torch.autocast(device_type=rna_tokens.device.type, enabled=False):
            return F.normalize(self.rna_itc(rna_tokens[:, 0].float()), dim=-1)

    def itm_logits(self, fused: CoAttentionOutput) -> Tensor:
        """Match logits (B, 2) from the fused CLS pair [X'[:, 0], R'[:, 0]]."""
        return self.itm_head(torch.cat([fused.image[:, 0], fused.rna[:, 0]], dim=-1)).float()

    def forward(self, pixels: Tensor, rna: Sequence[Tensor], negatives: Negatives = (),
                image_queries: ImageQueries = "cls", return_attention: bool = False,
                reconstruct: bool = True) -> FusionOutput:
        """Encode a batch of B positive pairs and fuse them and their negatives.

        Args:
            pixels: (B, 3, S, S) normalised images.
            rna: K tensors (B, n_k), the paired RNA profiles.
            negatives: sets of negative pairs, each ``(image_rows, rna_rows)``: two index tensors into the batch
                (the paper's two sets: (arange, roll(arange, 1)) and (roll(arange, 1), arange); see
                :func:`gbhet_lib.fusion.losses.rolled_negatives`), or a function of the ITC embeddings
                (image, RNA) that returns them (e.g. :func:`~gbhet_lib.fusion.losses.similarity_negatives`).
            image_queries: ``cls`` (training: only X'[:, 0] is computed) or ``all`` (every image row, Grad-CAM).
            return_attention: keep the positives' attention maps (see :class:`CoAttentionOutput`).
            reconstruct: decode the fused RNA tokens of the positives.
        """
        image_tokens = self.encode_image(pixels)
        rna_tokens = self.encode_rna(rna)
        image_embedding, rna_embedding = self.image_embedding(image_tokens), self.rna_embedding(rna_tokens)
        if callable(negatives):
            negatives = negatives(image_embedding, rna_embedding)
        image_side, rna_side = self.coattention.project(image_tokens, rna_tokens)
        fused = self.coattention.attend(image_tokens, rna_tokens, image_side, rna_side, image_queries,
                                        return_attention)
        logits = None
        if negatives:
            parts = [self.itm_logits(fused)]
            for image_rows, rna_rows in negatives:
                negative = self.coattention.attend(image_tokens[image_rows], rna_tokens[rna_rows],
                                                   image_side.take(image_rows), rna_side.take(rna_rows), "cls")
                parts.append(self.itm_logits(negative))
            logits = torch.cat(parts)
        reconstruction = ([decode(fused.rna[:, k + 1]) for k, decode in enumerate(self.rna_encoder.decoder)]
                          if reconstruct else [])
        return FusionOutput(image_embedding, rna_embedding, logits, reconstruction, fused, image_tokens, rna_tokens,
                            tuple(negatives))
