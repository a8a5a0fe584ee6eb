"""RNA Grad-CAM on the image→RNA co-attention (reference spec §7.1), a maintained attribution beside it, and the
per-patch quantities of the slide heat maps (§7.2).

For a batch of B (patch, lineage RNA) positive pairs the target is the ITM "match" logit (class 1) of each pair,
summed over the batch (pairs do not interact in the model, so each pair's gradient is its own):

* **cluster Grad-CAM**: the image-CLS row of the co-attention A_ir (B, heads, 1, K+1), without the RNA-CLS column,
  times its gradient clamped at 0, averaged over heads → (B, K), one score per gene token per patch;
* **gene gradients**: |∂ match / ∂ expression| of every gene of every token → (B, G) in the order of
  ``data.rna.genes`` (a gene in no token gets 0);
* **per-patch gene list** (:func:`top_genes_per_patch`): the genes of the patch's top token, ranked by their gradient,
  the first ``n`` kept. Tokens are addressed by position, so token keys of any form work (the authors rebuilt the key
  as the string of the arg-max, which assumed keys "0".."K-1", §10).

:func:`integrated_gradients` attributes the same target to the expression values with captum's
:class:`~captum.attr.IntegratedGradients` (baseline: every gene at 0, the pool's mean after chapter 2's per-gene
standardisation), from the patch's image tokens computed once.

Imports torch (and captum when :func:`integrated_gradients` is called); runs on the GPU machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PatchAttributions:
    """Grad-CAM quantities of n held-out patches.

    Attributes:
        rows: (n,) the patches' rows in the :class:`~gbhet_lib.fusion.data.PairedPatches`.
        token_scores: (n, K) cluster Grad-CAM per gene token.
        gene_gradients: (n, G) |∂ match logit / ∂ expression| per gene (``data.rna.genes`` order).
        match_logit: (n,) the ITM match logit of each positive pair.
    """

    rows: np.ndarray
    token_scores: np.ndarray
    gene_gradients: np.ndarray
    match_logit: np.ndarray


def _token_columns(data: Any) -> list[np.ndarray]:
    return [np.asarray(idx, dtype=np.int64) for idx in data.rna.token_index]


def _batches(rows: np.ndarray, batch_size: int):
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]


def rna_gradcam(model: Any, data: Any, rows: Sequence[int] | np.ndarray, batch_size: int = 64) -> PatchAttributions:
    """Cluster Grad-CAM and gene gradients of the pairs ``rows`` of ``data`` (module docstring).

    ``model``: a :class:`~gbhet_lib.fusion.model.FusionModel` (put in evaluation mode here); ``data``: a
    :class:`~gbhet_lib.fusion.data.PairedPatches` whose token set is the model's.
    """
    from ..fusion.data import PairBatches

    model.eval()
    device = next(model.parameters()).device
    batches = PairBatches(data, device)
    columns = _token_columns(data)
    n_genes = data.rna.values.shape[1]
    rows = np.asarray(rows, dtype=np.int64)
    cams, grads, logits = [], [], []
    for chunk in _batches(rows, batch_size):
        pixels, tokens, _ = batches.batch(chunk)
        tokens = [t.detach().clone().requires_grad_(True) for t in tokens]
        with torch.enable_grad():
            out = model(model.image_encoder.preprocess(pixels), tokens, image_queries="cls", return_attention=True,
                        reconstruct=False)
            attention = out.fused.image_attention  # (B, heads, 1, K+1)
            attention.retain_grad()
            match = model.itm_logits(out.fused)[:, 1]
            match.sum().backward()
        cam = (attention * attention.grad.clamp(min=0)).mean(dim=1)[:, 0, 1:]  # (B, K)
        gene = np.zeros((len(chunk), n_genes), dtype=np.float32)
        for idx, t in zip(columns, tokens):
            np.add.at(gene, (slice(None), idx), t.grad.abs().cpu().numpy())
        cams.append(cam.detach().cpu().numpy())
        grads.append(gene)
        logits.append(match.detach().cpu().numpy())
    return PatchAttributions(rows, np.concatenate(cams), np.concatenate(grads), np.concatenate(logits))


def top_genes_per_patch(attributions: PatchAttributions, token_index: Sequence[np.ndarray],
                        n_genes: int = 10) -> np.ndarray:
    """(n, n_genes) gene columns: per patch, the genes of its top Grad-CAM token ranked by gradient (the paper's
    top 10); -1 pads a token with fewer genes. Ties between tokens go to the first."""
    top_token = attributions.token_scores.argmax(axis=1)
    out = np.full((len(top_token), n_genes), -1, dtype=np.int64)
    for i, k in enumerate(top_token):
        idx = np.asarray(token_index[k], dtype=np.int64)
        order = idx[np.argsort(-attributions.gene_gradients[i, idx], kind="stable")][:n_genes]
        out[i, :len(order)] = order
    return out


def patch_weights(patch_lineage: np.ndarray, weighting: str = "lineage") -> np.ndarray:
    """(n,) weights summing to 1: ``lineage`` gives every lineage the same total weight (split over its patches),
    ``patch`` every patch the same (the paper's counting, which favours lineages with many patches)."""
    patch_lineage = np.asarray(patch_lineage)
    if weighting == "patch":
        return np.full(len(patch_lineage), 1.0 / len(patch_lineage))
    if weighting != "lineage":
        raise ValueError(f"weighting={weighting!r} must be 'lineage' or 'patch'")
    _, inverse, counts = np.unique(patch_lineage, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse] * len(counts))


def gene_frequency(top_genes: np.ndarray, weights: np.ndarray, n_genes: int) -> np.ndarray:
    """(G,) the weighted share of patches whose top list names each gene (0–1 with weights summing to 1)."""
    out = np.zeros(n_genes)
    for column in top_genes.T:
        named = column >= 0
        np.add.at(out, column[named], weights[named])
    return out


def integrated_gradients(model: Any, data: Any, rows: Sequence[int] | np.ndarray, n_steps: int = 16,
                         batch_size: int = 32) -> np.ndarray:
    """(n, G) integrated gradients (captum) of the ITM match logit with respect to the expression values of the
    pairs ``rows``, from the all-zero profile; image tokens are computed once per batch and held fixed."""
    from captum.attr import IntegratedGradients

    from ..fusion.data import PairBatches

    model.eval()
    device = next(model.parameters()).device
    batches = PairBatches(data, device)
    columns = _token_columns(data)
    n_genes = data.rna.values.shape[1]
    values = torch.from_numpy(data.rna.values).to(device)
    rows = np.asarray(rows, dtype=np.int64)

    def match_logit(expression: Tensor, image_tokens: Tensor) -> Tensor:
        tokens = [expression[:, idx] for idx in columns]
        rna_tokens = model.encode_rna(tokens)
        image_side, rna_side = model.coattention.project(image_tokens, rna_tokens)
        fused = model.coattention.attend(image_tokens, rna_tokens, image_side, rna_side, "cls")
        return model.itm_logits(fused)[:, 1]

    explainer = IntegratedGradients(match_logit)
    out = []
    for chunk in _batches(rows, batch_size):
        pixels, _, lineage = batches.batch(chunk)
        with torch.no_grad():
            image_tokens = model.encode_image(model.image_encoder.preprocess(pixels))
        expression = values[lineage]
        attribution = explainer.attribute(expression, baselines=torch.zeros_like(expression),
                                          additional_forward_args=(image_tokens,), n_steps=n_steps)
        out.append(attribution.detach().cpu().numpy().reshape(len(chunk), n_genes))
    return np.concatenate(out)


def match_scores(model: Any, data: Any, rows: Sequence[int] | np.ndarray, batch_size: int = 128) -> np.ndarray:
    """(n,) cosine between each patch's ITC image embedding and its own lineage's ITC RNA embedding (the heat maps'
    matching score, §7.2)."""
    from ..fusion.retrieval import itc_embeddings

    rows = np.asarray(rows, dtype=np.int64)
    image, rna = itc_embeddings(model, data, rows, batch_size)
    return np.einsum("nd,nd->n", image, rna[data.patch_lineage[rows]])


def pixel_saliency(model: Any, data: Any, row: int) -> np.ndarray:
    """(3, S, S) the gradient of the pair's ITM match logit with respect to the patch's normalised pixels."""
    from ..fusion.data import PairBatches

    model.eval()
    device = next(model.parameters()).device
    pixels, tokens, _ = PairBatches(data, device).batch(np.array([row]))
    inputs = model.image_encoder.preprocess(pixels).detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(inputs, tokens, image_queries="cls", reconstruct=False)
        model.itm_logits(out.fused)[:, 1].sum().backward()
    return inputs.grad[0].cpu().numpy()
