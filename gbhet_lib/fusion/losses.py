"""Fusion losses (reference spec §5.3): image–RNA contrastive (ITC), image–RNA matching (ITM), reconstruction.

Paper-faithful defaults: ITC is the image→RNA InfoNCE over in-batch negatives with a fixed τ = 0.005, and every
off-diagonal pair is a negative, even when two patches of the batch share their lineage (and so their RNA
profile); ITM negatives are the batch rolled by one (:func:`rolled_negatives`), true matches included when
neighbours share a lineage (held-out ITM is scored with :func:`other_lineage_negatives`, which skip them). Fixes
behind options (spec §10.17):

* ``symmetric``: the mean of the image→RNA and RNA→image cross-entropies;
* ``groups`` (multi-positive targets): every pair of the same lineage is a positive, with the target mass spread
  evenly over them (SupCon-style soft targets);
* :func:`similarity_negatives`: ALBEF's hard negatives, drawn with probability softmax(similarity / τ) among
  pairs of *other* lineages only;
* a learnable temperature: :class:`gbhet_lib.rna.losses.Temperature`.

Under DDP the keys (the other side's embeddings) can be gathered from every rank
(:func:`gbhet_lib.fusion.distributed.gather_with_grad`) so the negatives span the global batch; the queries stay
local and ``offset`` says where they sit among the keys. Imports only torch.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _targets(query_groups: Tensor | None, key_groups: Tensor | None, n_queries: int, n_keys: int, offset: int,
             device: torch.device) -> Tensor:
    """(n_queries, n_keys) target distribution: the diagonal (shifted by ``offset``) or same-group columns."""
    if query_groups is None:
        return F.one_hot(torch.arange(n_queries, device=device) + offset, n_keys).float()
    same = (query_groups[:, None] == key_groups[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def itc_loss(image: Tensor, rna: Tensor, temperature: float | Tensor = 0.005, symmetric: bool = False,
             groups: Tensor | None = None, *, image_keys: Tensor | None = None, rna_keys: Tensor | None = None,
             key_groups: Tensor | None = None, offset: int = 0) -> Tensor:
    """Image–RNA contrastive loss of B pairs (image row i ↔ RNA row i), a scalar.

    Args:
        image, rna: L2-normalised embeddings (B, D) (not normalised here), float32 preferably.
        temperature: τ; the logits are similarities / τ.
        symmetric: also the RNA→image direction, and return the mean of both.
        groups: (B,) integer lineage of each pair: every same-lineage column is a positive (soft targets);
            None: the diagonal only (the paper).
        image_keys, rna_keys: the keys, (N, D) with N ≥ B, e.g. gathered over DDP ranks; default the batch.
        key_groups: (N,) lineages of the keys (with ``groups``).
        offset: the row of the keys where this batch's pairs start (rank · B under DDP).
    """
    if image.ndim != 2 or image.shape != rna.shape:
        raise ValueError(f"image and rna must be (batch, dim) of one shape, got {tuple(image.shape)} and "
                         f"{tuple(rna.shape)}")
    rna_keys = rna if rna_keys is None else rna_keys
    image_keys = image if image_keys is None else image_keys
    if groups is not None and key_groups is None:
        key_groups = groups
    logits = image @ rna_keys.T / temperature
    targets = _targets(groups, key_groups, len(image), len(rna_keys), offset, image.device)
    loss = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
    if symmetric:
        logits_rna = rna @ image_keys.T / temperature
        loss = 0.5 * (loss + torch.sum(-targets * F.log_softmax(logits_rna, dim=1), dim=1).mean())
    return loss


def itc_chance(groups: Tensor | None, batch_size: int) -> float:
    """The ITC loss of embeddings that carry no information (every similarity equal): log(B), with one-hot or
    multi-positive targets alike (the cross-entropy of any target distribution against a uniform row).

    With multi-positive targets the *lowest* reachable loss is no longer 0 but the mean over rows of
    log(same-lineage count); ``groups`` is accepted so callers need not special-case that option.
    """
    import math

    return math.log(batch_size)


def rolled_negatives(batch_size: int, device: torch.device | str = "cpu") -> list[tuple[Tensor, Tensor]]:
    """The paper's ITM negatives: (image i, RNA i−1) and (image i−1, RNA i) for every i, with wrap-around
    (``torch.roll`` by one), as ``(image_rows, rna_rows)`` index pairs for :meth:`FusionModel.forward`."""
    rows = torch.arange(batch_size, device=device)
    rolled = torch.roll(rows, 1)
    return [(rows, rolled), (rolled, rows)]


def other_lineage_negatives(groups: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Deterministic ITM negatives that are never true matches, for held-out scoring.

    The paper's rolled negatives with every same-lineage neighbour skipped: image i is paired with the RNA of the
    nearest *preceding* row (cyclically: i−1, i−2, …) whose lineage differs, and RNA i with that row's image. When
    all neighbours differ this is exactly :func:`rolled_negatives`. As in :func:`similarity_negatives`, rows with
    no other lineage in the batch get no negative (a row has one exactly when the batch holds two lineages).

    Args:
        groups: (B,) integer lineage of each row of the batch.

    Returns:
        ``[(rows, other), (other, rows)]``: two ``(image_rows, rna_rows)`` index pairs of equal length (B, or 0
        when the batch is one lineage).
    """
    size = len(groups)
    rows = torch.arange(size, device=groups.device)
    if size < 2:  # no other row at all
        none = rows[:0]
        return [(none, none), (none, none)]
    back = torch.arange(1, size, device=groups.device)
    candidates = (rows[:, None] - back[None, :]) % size  # (B, B−1): i−1, i−2, … cyclically
    differs = groups[candidates] != groups[:, None]
    has = differs.any(dim=1)
    other = candidates[rows, differs.int().argmax(dim=1)][has]  # the first differing candidate of each row
    rows = rows[has]
    return [(rows, other), (other, rows)]


def similarity_negatives(image: Tensor, rna: Tensor, groups: Tensor, temperature: float | Tensor,
                         generator: torch.Generator | None = None) -> list[tuple[Tensor, Tensor]]:
    """ALBEF-style hard ITM negatives that are never true matches (fix of spec §10.17).

    For each image i one RNA j is drawn with probability ∝ exp(sim(i, j) / τ) among the pairs whose lineage
    differs (and for each RNA one image likewise). Rows with no other lineage in the batch get no negative.
    Similarities are detached: the draw is not differentiated.

    Returns:
        Two ``(image_rows, rna_rows)`` index pairs: (i, drawn RNA) and (drawn image, j).
    """
    with torch.no_grad():
        logits = (image.float() @ rna.float().T) / temperature
        other = groups[:, None] != groups[None, :]
        sets = []
        for scores, allowed in ((logits, other), (logits.T, other.T)):
            has = allowed.any(dim=1)
            # subtract the row maximum over allowed entries so exp never overflows at τ = 0.005
            masked = scores.masked_fill(~allowed, float("-inf"))
            weights = (masked - masked.max(dim=1, keepdim=True).values.nan_to_num(0.0)).exp()
            weights = torch.where(has[:, None], weights.nan_to_num(0.0), torch.zeros_like(weights))
            rows = torch.nonzero(has).squeeze(1)
            drawn = (torch.multinomial(weights[rows], 1, generator=generator).squeeze(1) if len(rows)
                     else rows.clone())
            sets.append((rows, drawn))
        (image_rows, rna_drawn), (rna_rows, image_drawn) = sets
    return [(image_rows, rna_drawn), (image_drawn, rna_rows)]


def itm_loss(logits: Tensor, n_positive: int) -> Tensor:
    """Cross-entropy of match logits (N, 2): the first ``n_positive`` rows are matches (label 1), the rest not."""
    labels = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    labels[:n_positive] = 1
    return F.cross_entropy(logits.float(), labels)


def itm_accuracy(logits: Tensor, n_positive: int) -> Tensor:
    """Fraction of the (N, 2) logits whose arg-max is the right label (see :func:`itm_loss`)."""
    labels = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    labels[:n_positive] = 1
    return (logits.argmax(dim=1) == labels).float().mean()


def n_rows(negatives: Sequence[tuple[Tensor, Tensor]]) -> int:
    """Negative pairs in the sets."""
    return sum(len(image_rows) for image_rows, _ in negatives)
