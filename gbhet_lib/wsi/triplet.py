"""Online hardest-negative triplet loss with lineage positives (reference spec §4.2).

The authors' miner (``HardestNegativeTripletSelector`` style), reproduced exactly:

1. pairwise **squared** Euclidean distances between the batch's features (L2-normalised in the model);
2. for every label with ≥ 2 samples (labels in ascending order), **all anchor–positive pairs** (i < j);
3. per pair, d(a,p) − d(a,n) + m against every negative n; keep the **hardest** negative (largest value; the
   first one on ties) if that value is > 0;
4. if no pair keeps a negative, one **fallback** triplet: the last pair of the last label with ≥ 2 samples and
   that label's first negative (its loss is 0, so it carries no gradient).

Loss = mean over the triplets of ReLU(d(a,p) − d(a,n) + m), m = 1e-4 (paper; negligible against distances in
[0, 4] — spec §10.20; :data:`IMPROVED_MARGIN` is the common choice for unit-norm features). Computed in float32.

Option ``mining="semihard"`` (FaceNet, Schroff et al. 2015): per pair, the closest negative that is still
farther than the positive (d(a,p) < d(a,n) < d(a,p) + m), else the hardest one. Hardest-negative mining from a
random initialisation can collapse all features onto one point (the loss then sits at m); semi-hard negatives
avoid that.
"""
from __future__ import annotations

import torch
from torch import Tensor

PAPER_MARGIN = 1e-4
IMPROVED_MARGIN = 0.2


def squared_distances(features: Tensor) -> Tensor:
    """(B, D) → (B, B) squared Euclidean distances, as the authors compute them (‖x‖² − 2 x·y + ‖y‖²)."""
    gram = features @ features.T
    norms = gram.diagonal()
    return norms[:, None] - 2 * gram + norms[None, :]


@torch.no_grad()
def mine_triplets(distances: Tensor, labels: Tensor, margin: float = PAPER_MARGIN,
                  mining: str = "hardest") -> Tensor:
    """The selected triplets (T, 3) int64 rows (anchor, positive, negative) for a (B, B) distance matrix.

    ``mining``: ``hardest`` (the paper's) or ``semihard`` (see the module docstring). Empty (0, 3) when no label
    has two samples or no sample has a negative (no triplet can be formed).
    """
    if mining not in ("hardest", "semihard"):
        raise ValueError(f"mining={mining!r} must be 'hardest' or 'semihard'")
    labels = labels.reshape(-1)
    n = labels.shape[0]
    same = labels[:, None] == labels[None, :]
    upper = torch.ones(n, n, dtype=torch.bool, device=labels.device).triu(1)
    anchors, positives = (same & upper).nonzero(as_tuple=True)
    if anchors.numel() == 0 or bool(same.all()):
        return torch.empty(0, 3, dtype=torch.long, device=labels.device)
    # the hardest negative of a pair maximises d(a,p) − d(a,n): it is the anchor's nearest other-label sample
    negative_distances = distances.masked_fill(same, float("inf"))
    chosen = negative_distances.argmin(dim=1)[anchors]
    if mining == "semihard":
        d_ap = distances[anchors, positives][:, None]
        d_an = negative_distances[anchors]
        window = (d_an > d_ap) & (d_an < d_ap + margin)
        semihard = d_an.masked_fill(~window, float("inf")).argmin(dim=1)
        chosen = torch.where(window.any(dim=1), semihard, chosen)
    values = distances[anchors, positives] - distances[anchors, chosen] + margin
    keep = values > 0
    if keep.any():
        return torch.stack([anchors[keep], positives[keep], chosen[keep]], dim=1)
    return _fallback(labels, same)


def _fallback(labels: Tensor, same: Tensor) -> Tensor:
    """The authors' single triplet: the last pair of the last label with ≥ 2 samples, its first negative."""
    counts = same.sum(dim=1)
    last_label = labels[counts >= 2].max()
    members = (labels == last_label).nonzero().reshape(-1)
    first_negative = (labels != last_label).nonzero()[0, 0]
    return torch.stack([members[-2], members[-1], first_negative]).reshape(1, 3)


def hardest_negative_triplet_loss(features: Tensor, labels: Tensor, margin: float = PAPER_MARGIN,
                                  mining: str = "hardest") -> tuple[Tensor, int]:
    """The batch's triplet loss and the number of triplets it averages.

    Args:
        features: (B, D) embeddings (L2-normalised by the encoder); cast to float32.
        labels: (B,) integer lineage labels.
        margin: m in ReLU(d(a,p) − d(a,n) + m).
        mining: ``hardest`` (paper) or ``semihard``.

    Returns:
        (loss, n_triplets): a scalar tensor (0 with a gradient path when no triplet can be formed: no label with two
        samples, or a single label) and the triplet count (1 for the fallback).
    """
    if features.ndim != 2 or labels.reshape(-1).shape[0] != features.shape[0]:
        raise ValueError(f"features must be (B, D) and labels (B,), got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    features = features.float()
    triplets = mine_triplets(squared_distances(features.detach()), labels.to(features.device), margin, mining)
    if triplets.shape[0] == 0:
        return features.sum() * 0, 0
    a, p, n = (features[triplets[:, k]] for k in range(3))
    losses = torch.relu((a - p).pow(2).sum(1) - (a - n).pow(2).sum(1) + margin)
    return losses.mean(), int(triplets.shape[0])
