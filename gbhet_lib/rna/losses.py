"""Losses of the RNA encoder: masked view, reconstruction, InfoNCE (reference spec §3.2) and survival (§3.5).

Paper-faithful defaults: element-wise Bernoulli masking with p = 0.3, reconstruction error summed over a token's
genes, one-directional InfoNCE with a fixed temperature 0.005. Options (spec §10.17–18): per-gene mean
reconstruction (every token weighs the same whatever its size), symmetric InfoNCE, a learnable temperature
(:class:`Temperature`), and a Cox partial likelihood for survival instead of the paper's MSE on time.
Imports only torch.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Reduction = Literal["sum_genes", "mean"]


def mask_view(x_list: Sequence[Tensor], p: float = 0.3, generator: torch.Generator | None = None) -> list[Tensor]:
    """Copies of the K token tensors (B, n_k) with each value independently set to 0 with probability ``p``.

    ``generator`` (on the tensors' device) makes the masks reproducible.
    """
    if not 0 <= p < 1:
        raise ValueError(f"mask probability must be in [0, 1), got {p}")
    return [x.masked_fill(torch.rand(x.shape, generator=generator, device=x.device) < p, 0.0) for x in x_list]


def reconstruction_loss(pred: Sequence[Tensor], target: Sequence[Tensor], reduction: Reduction = "sum_genes") -> Tensor:
    """Squared error between K predicted and target token tensors (B, n_k), a scalar.

    ``"sum_genes"`` (paper): per token, the squared error summed over its genes and averaged over rows; then the
    mean over tokens (large tokens dominate and the scale grows with n_k). ``"mean"``: per token, the mean over
    genes and rows; then the mean over tokens (each token weighs the same).
    """
    if len(pred) != len(target) or not pred:
        raise ValueError(f"need the same non-zero number of predicted and target tokens, got {len(pred)} and "
                         f"{len(target)}")
    if reduction not in ("sum_genes", "mean"):
        raise ValueError(f"reduction must be 'sum_genes' or 'mean', got {reduction!r}")
    per_token = []
    for k, (p, t) in enumerate(zip(pred, target)):
        if p.shape != t.shape:
            raise ValueError(f"token {k}: prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
        error = (p - t).pow(2)
        per_token.append(error.sum(dim=1).mean() if reduction == "sum_genes" else error.mean())
    return torch.stack(per_token).mean()


def info_nce(a: Tensor, b: Tensor, temperature: float | Tensor = 0.005, symmetric: bool = False) -> Tensor:
    """InfoNCE between paired embeddings a, b (B, D): row i of ``a`` should pick row i of ``b``.

    Logits are ``a @ b.T / temperature`` (the inputs are expected L2-normalised; they are not normalised here);
    the loss is the cross-entropy with the diagonal as target over rows (A→B, the paper), or the mean of the A→B
    and B→A cross-entropies when ``symmetric``. Other rows of the batch are the negatives.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be (batch, dim) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    logits = a @ b.T / temperature
    targets = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, targets)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, targets))
    return loss


class Temperature(nn.Module):
    """The InfoNCE temperature τ: a fixed buffer (paper) or a learnable, log-parameterised scalar.

    When learnable, τ = exp(log_tau) is clamped to [``min_value``, ``max_value``] so that it cannot collapse.
    """

    def __init__(self, initial: float = 0.005, learnable: bool = False, min_value: float = 1e-4,
                 max_value: float = 1.0) -> None:
        super().__init__()
        if not min_value <= initial <= max_value:
            raise ValueError(f"temperature {initial} outside [{min_value}, {max_value}]")
        self.min_value, self.max_value = min_value, max_value
        log_tau = torch.tensor(math.log(initial))
        if learnable:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    def forward(self) -> Tensor:
        """τ, a 0-d tensor."""
        return self.log_tau.exp().clamp(self.min_value, self.max_value)


def cox_partial_likelihood(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative mean log partial likelihood of a Cox model (Breslow's handling of ties), a scalar.

    Args:
        risk: log-risk scores (B,) or (B, 1); higher means shorter survival.
        time: survival or censoring times (B,).
        event: 1/True where the event was observed, 0/False where censored (B,).

    For each observed event i the risk set is every sample with time ≥ time_i (tied samples included):
    loss = −mean_i [risk_i − log Σ_{j: t_j ≥ t_i} exp(risk_j)]. A batch without an event has no partial
    likelihood: that is an error.
    """
    risk = risk.reshape(-1).float()
    if time.shape != risk.shape or event.shape != risk.shape:
        raise ValueError(f"risk {tuple(risk.shape)}, time {tuple(time.shape)} and event {tuple(event.shape)} "
                         "must have one length")
    observed = event.bool()
    if not observed.any():
        raise ValueError("no observed event among these samples: the Cox partial likelihood is undefined; use "
                         "larger batches or a data set with events")
    at_risk = time[None, :] >= time[:, None]  # row i: who is still at risk at time_i
    log_denominator = torch.logsumexp(risk[None, :].masked_fill(~at_risk, float("-inf")), dim=1)
    return -(risk - log_denominator)[observed].mean()


def survival_mse(predicted_time: Tensor, time: Tensor) -> Tensor:
    """The paper's survival loss: mean squared error between predicted and recorded times (censoring ignored)."""
    predicted_time = predicted_time.reshape(-1).float()
    if predicted_time.shape != time.shape:
        raise ValueError(f"prediction {tuple(predicted_time.shape)} and time {tuple(time.shape)} differ in shape")
    return F.mse_loss(predicted_time, time.float())
