"""Training of the RNA encoder: masked-view + InfoNCE pre-training (spec §3.2–3.4) and the survival head (§3.5).

Both trainers share the package's checkpointed loop (:func:`gbhet_lib.training.fit`): AdamW with no weight decay on
biases and 1-D parameters, the authors' ALBEF-style schedule (:func:`~gbhet_lib.training.schedule.albef_lr`) set before
every step, seeded shuffling, optional bf16 autocast on CUDA, and an atomic checkpoint (``last.pt``) after every
epoch holding the model, optimiser, every random-number state, the epoch, the history and the config. Calling a
trainer again on the same ``checkpoint_dir`` resumes after the last finished epoch and gives bit-identical weights
to an uninterrupted run (on the CPU; on CUDA as far as its kernels are deterministic).
Weights are always loaded strictly (:func:`load_weights`).

Fixes of the authors' code (spec §10): the configured seed is used (theirs is always 0), resume works, loading is
strict, validation masks come from their own generator so they are the same every epoch, one return type.

Imports only torch, numpy, pandas and tqdm (plus this package's stdlib-only helpers): it runs on the GPU machine.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..training import Run, TrainConfig, albef_lr, bf16_autocast, fit, load_weights, require, resolve_device, \
    seed_everything
from ..training import read_checkpoint as _read_checkpoint
from .losses import Reduction, Temperature, cox_partial_likelihood, info_nce, mask_view, reconstruction_loss, \
    survival_mse
from .model import ClusterTokenTransformer, EncoderOutput, SurvivalHead

CHECKPOINT_FORMAT = "gbhet.rna_checkpoint/1"
PRETRAIN, SURVIVAL = "rna_pretrain", "rna_survival"
_MASK_SEED_OFFSET = 1  # the training mask generator: seed + 1 (shuffling uses seed)
_EVAL_SEED_OFFSET = 2  # evaluation masks: seed + 2, fresh at every evaluation


# ---------------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Pre-training settings (spec §3.2–3.3); the model fields define the encoder built by :func:`pretrain`.

    Attributes:
        dim, heads, mlp_ratio, dropout, proj_dim: the encoder (128, 8, 4, 0.5, 64).
        mask_prob: probability of zeroing each value of the masked view (0.3).
        temperature: InfoNCE τ (0.005); its starting value when ``learnable_temperature``.
        recon_weight, contrastive_weight: loss weights (1, 1).
        reconstruction: ``sum_genes`` (paper) or ``mean`` (per-gene mean: every token weighs the same).
        symmetric: symmetric InfoNCE instead of the paper's A→B only.
        learnable_temperature: learn τ (log-parameterised) instead of keeping it fixed.
    """

    dim: int = 128
    heads: int = 8
    mlp_ratio: float = 4
    dropout: float = 0.5
    proj_dim: int = 64
    mask_prob: float = 0.3
    temperature: float = 0.005
    recon_weight: float = 1.0
    contrastive_weight: float = 1.0
    reconstruction: Reduction = "sum_genes"
    symmetric: bool = False
    learnable_temperature: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.mask_prob < 1, f"mask_prob={self.mask_prob} must be in [0, 1)")
        require(self.temperature > 0, f"temperature={self.temperature} must be positive")
        require(self.recon_weight >= 0 and self.contrastive_weight >= 0, "loss weights must be non-negative")
        require(self.reconstruction in ("sum_genes", "mean"),
                 f"reconstruction={self.reconstruction!r} must be 'sum_genes' or 'mean'")


@dataclass(frozen=True)
class SurvivalConfig(TrainConfig):
    """Survival-head settings (spec §3.5; the authors never ran this variant, so only the head width is theirs).

    Attributes:
        hidden_dim: the head's hidden width (64).
        freeze_encoder: train the head only (the encoder also stays in evaluation mode).
        loss: ``cox`` (negative Cox partial likelihood; batches without an event are skipped) or ``mse`` (the
            authors' MSE on survival time, censoring ignored).
    """

    hidden_dim: int = 64
    freeze_encoder: bool = False
    loss: Literal["cox", "mse"] = "cox"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.loss in ("cox", "mse"), f"loss={self.loss!r} must be 'cox' or 'mse'")
        require(self.hidden_dim >= 1, f"hidden_dim={self.hidden_dim} must be at least 1")


# ------------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class TokenData:
    """Expression values of N samples and the gene tokens that split them into K model inputs.

    Attributes:
        values: (N, G) float32, finite.
        token_index: K integer arrays, the columns of ``values`` that form token k, in model input order.
        token_names: K names (default ``token_0``, ...).
        samples: N sample ids (default ``"0"``, ...).
        genes: G gene ids (default ``"0"``, ...).
    """

    values: np.ndarray
    token_index: Sequence[np.ndarray]
    token_names: Sequence[str] = ()
    samples: Sequence[str] = ()
    genes: Sequence[str] = ()

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        values = np.ascontiguousarray(self.values, dtype=np.float32)
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"values must be a non-empty samples × genes matrix, got shape {values.shape}")
        n, g = values.shape
        set_("values", values)
        set_("samples", tuple(str(s) for s in self.samples) or tuple(str(i) for i in range(n)))
        set_("genes", tuple(str(x) for x in self.genes) or tuple(str(j) for j in range(g)))
        set_("token_names", tuple(str(t) for t in self.token_names)
             or tuple(f"token_{k}" for k in range(len(self.token_index))))
        set_("token_index", tuple(np.asarray(idx, dtype=np.int64).reshape(-1) for idx in self.token_index))
        if len(self.samples) != n or len(self.genes) != g or len(self.token_names) != len(self.token_index):
            raise ValueError(f"{len(self.samples)} sample ids, {len(self.genes)} gene ids and "
                             f"{len(self.token_names)} token names for values of shape {values.shape} and "
                             f"{len(self.token_index)} tokens")
        if not self.token_index:
            raise ValueError("no tokens: give at least one list of gene columns")
        for name, idx in zip(self.token_names, self.token_index):
            if idx.size == 0 or idx.min() < 0 or idx.max() >= g:
                raise ValueError(f"token {name!r}: column indices must be non-empty and within [0, {g})")
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = (int(i[0]) for i in np.nonzero(bad))
            raise ValueError(f"{int(bad.sum())} missing or infinite values, e.g. sample {self.samples[row]!r}, gene "
                             f"{self.genes[col]!r}; impute or drop them first")

    @classmethod
    def from_frame(cls, expression: pd.DataFrame, tokens: Mapping[str, Sequence[str]]) -> TokenData:
        """From a samples × genes table and token name → genes (e.g. ``GeneTokens.tokens``), in token order."""
        if not isinstance(expression, pd.DataFrame):
            raise TypeError(f"expression must be a samples × genes DataFrame, got {type(expression).__name__}")
        duplicated = expression.columns[expression.columns.duplicated()].unique()
        if len(duplicated):
            raise ValueError(f"{len(duplicated)} gene column(s) appear more than once, e.g. {list(duplicated[:5])}; "
                             "merge duplicates first")
        present = set(expression.columns)
        problems = [f"token {name!r}: {len(miss)} gene(s) not in the expression columns, e.g. {miss[:10]}"
                    for name, genes in tokens.items() if (miss := [x for x in genes if x not in present])]
        if problems:
            raise KeyError("; ".join(problems) + ". Build the tokens from the genes of this expression table "
                           "(samples × genes) or subset the tokens to them.")
        genes = list(dict.fromkeys(x for token in tokens.values() for x in token))
        table = expression[genes]
        try:
            values = table.to_numpy(dtype=np.float32)
        except (TypeError, ValueError):
            bad = [c for c in genes if (pd.to_numeric(table[c], errors="coerce").isna() & table[c].notna()).any()]
            raise ValueError(f"{len(bad)} gene column(s) hold non-numeric values, e.g. {bad[:5]}") from None
        position = {x: j for j, x in enumerate(genes)}
        return cls(values, [[position[x] for x in token] for token in tokens.values()],
                   token_names=list(tokens), samples=[str(s) for s in expression.index], genes=genes)

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def token_sizes(self) -> list[int]:
        """n_k, the number of genes of each token."""
        return [int(idx.size) for idx in self.token_index]

    def tensors(self, device: str | torch.device = "cpu") -> list[Tensor]:
        """K float32 tensors (N, n_k) on ``device``."""
        return [torch.from_numpy(self.values[:, idx]).to(device) for idx in self.token_index]

    def subset(self, rows: Sequence[int] | np.ndarray) -> TokenData:
        """The same tokens for the given sample rows (e.g. a train/validation split)."""
        rows = np.asarray(rows)
        return TokenData(self.values[rows], self.token_index, self.token_names,
                         [self.samples[i] for i in np.arange(len(self))[rows]], self.genes)

    def gene_means(self) -> list[np.ndarray]:
        """Per token, the mean of each of its genes over the samples, (n_k,)."""
        means = self.values.mean(axis=0, dtype=np.float64).astype(np.float32)
        return [means[idx] for idx in self.token_index]

    def check_compatible(self, other: TokenData, what: str) -> None:
        """Raise unless ``other`` has the same tokens (sizes and genes)."""
        mine = [[self.genes[j] for j in idx] for idx in self.token_index]
        theirs = [[other.genes[j] for j in idx] for idx in other.token_index]
        if mine != theirs:
            raise ValueError(f"{what} has other tokens (sizes {other.token_sizes} vs {self.token_sizes}, or other "
                             "genes): build both from one GeneTokens")


# ----------------------------------------------------------------------------------------------- checkpoints
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by an RNA trainer here (tensors on the CPU)."""
    return _read_checkpoint(path, CHECKPOINT_FORMAT, "RNA")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the trained model of a checkpoint, in evaluation mode.

    Returns a :class:`ClusterTokenTransformer` for a pre-training checkpoint and a :class:`SurvivalHead` for a
    survival one.
    """
    state = read_checkpoint(path)
    model = _build_model(state["kind"], state["model_spec"], state["config"])
    load_weights(model, state["modules"]["model"], str(path))
    return model.to(device).eval()


def _build_model(kind: str, spec: Mapping[str, Any], config: Mapping[str, Any]) -> nn.Module:
    encoder = ClusterTokenTransformer(**spec)
    if kind == SURVIVAL:
        return SurvivalHead(encoder, config["hidden_dim"], config["freeze_encoder"])
    return encoder


# ------------------------------------------------------------------------------------------------ pre-training
def _forward_views(model: ClusterTokenTransformer, tokens: Sequence[Tensor], generator: torch.Generator,
                   config: PretrainConfig, device: torch.device) -> EncoderOutput:
    """The model on [A; B]: A the batch (B rows per token), B its masked copy; 2B output rows."""
    masked = mask_view(tokens, config.mask_prob, generator)
    with bf16_autocast(config.amp_bf16, device):
        return model([torch.cat([x, m]) for x, m in zip(tokens, masked)])


def _pretrain_losses(out: EncoderOutput, tokens: Sequence[Tensor], tau: Tensor,
                     config: PretrainConfig) -> dict[str, Tensor]:
    """Reconstruction of the unmasked values for both halves + InfoNCE between the halves' projections."""
    targets = [torch.cat([x, x]) for x in tokens]
    reconstruction = reconstruction_loss([r.float() for r in out.reconstruction], targets, config.reconstruction)
    a, b = out.projection.float().chunk(2)
    contrastive = info_nce(a, b, tau, config.symmetric)
    total = config.recon_weight * reconstruction + config.contrastive_weight * contrastive
    return {"loss": total, "reconstruction": reconstruction, "contrastive": contrastive}


def pretrain(config: PretrainConfig, train: TokenData, val: TokenData | None, checkpoint_dir: str | Path,
             progress: bool = True) -> pd.DataFrame:
    """Pre-train a :class:`ClusterTokenTransformer` with masked-view reconstruction + InfoNCE (spec §3.2).

    Each batch of B samples becomes [A; B] (2B rows): A unmasked, B with values zeroed with probability
    ``mask_prob``; the loss is ``recon_weight`` · reconstruction of the unmasked values (both halves) +
    ``contrastive_weight`` · InfoNCE(A → B). A checkpoint is written after every epoch; an existing one in
    ``checkpoint_dir`` is resumed (same config and tokens required). Get the model with
    ``load_model(checkpoint_dir / "last.pt")``.

    Returns:
        The history, one row per epoch: ``epoch``, ``lr`` (of the epoch's last step), ``train_loss``,
        ``train_reconstruction``, ``train_contrastive`` (means over samples), ``train_temperature`` (τ, mean),
        ``skipped_batches``, ``train_seconds``, and with ``val`` the metrics of :func:`evaluate_pretraining`
        prefixed ``val_``.
    """
    device = resolve_device(config.device)
    if val is not None:
        train.check_compatible(val, "the validation data")
    seed_everything(config.seed)
    model = ClusterTokenTransformer(train.token_sizes, config.dim, config.heads, config.mlp_ratio, config.dropout,
                                    config.proj_dim).to(device)
    temperature = Temperature(config.temperature, config.learnable_temperature).to(device)
    mask_generator = torch.Generator(device).manual_seed(config.seed + _MASK_SEED_OFFSET)
    tokens = train.tensors(device)

    def step(rows: Tensor) -> dict[str, Tensor]:
        batch = [t[rows] for t in tokens]
        tau = temperature()
        losses = _pretrain_losses(_forward_views(model, batch, mask_generator, config, device), batch, tau, config)
        return {**losses, "temperature": tau}

    def evaluate() -> dict[str, float]:
        return evaluate_pretraining(model, val, train, config, temperature=float(temperature().detach()))

    run = Run(CHECKPOINT_FORMAT, "RNA", PRETRAIN, config, model.hparams, {"model": model, "temperature": temperature},
               {"mask": mask_generator})
    return fit(run, len(train), step, evaluate if val is not None else None, checkpoint_dir, progress, albef_lr)


@torch.no_grad()
def evaluate_pretraining(model: ClusterTokenTransformer, data: TokenData, train: TokenData,
                         config: PretrainConfig = PretrainConfig(), temperature: float | None = None,
                         batch_size: int | None = None) -> dict[str, float]:
    """Pre-training losses on held-out ``data`` (evaluation mode, the model's device), and baselines.

    Batches of ``batch_size`` (default ``config.batch_size``) samples are masked with a generator seeded from
    ``config.seed``, so the numbers are the same at every call. Returned (means over samples):

    * ``loss``, ``reconstruction``, ``contrastive``: as in training (``temperature`` defaults to the config's;
      pass the learned one when it was learned);
    * ``reconstruction_masked``: reconstruction error of the masked half only (imputation);
    * ``baseline_reconstruction``: the error of predicting each gene's mean over ``train`` (same reduction);
    * ``contrastive_chance``: InfoNCE of embeddings that carry no information, log(batch size).
    """
    train.check_compatible(data, "the evaluation data")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    tau = torch.tensor(config.temperature if temperature is None else temperature, device=device)
    generator = torch.Generator(device).manual_seed(config.seed + _EVAL_SEED_OFFSET)
    means = [torch.from_numpy(m).to(device) for m in train.gene_means()]
    tokens, size = data.tensors(device), batch_size or config.batch_size
    sums: dict[str, float] = {}
    for start in range(0, len(data), size):
        batch = [t[start:start + size] for t in tokens]
        n = batch[0].shape[0]
        out = _forward_views(model, batch, generator, config, device)
        metrics = {k: float(v) for k, v in _pretrain_losses(out, batch, tau, config).items()}
        metrics["reconstruction_masked"] = float(reconstruction_loss(
            [r[n:].float() for r in out.reconstruction], batch, config.reconstruction))
        metrics["baseline_reconstruction"] = float(reconstruction_loss(
            [m.expand_as(x) for m, x in zip(means, batch)], batch, config.reconstruction))
        metrics["contrastive_chance"] = math.log(n)
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v * n
    model.train(was_training)
    return {k: v / len(data) for k, v in sums.items()}


@torch.no_grad()
def embed(model: ClusterTokenTransformer, data: TokenData, batch_size: int = 256,
          device: str | torch.device = "cpu", output: Literal["cls", "projection", "tokens"] = "cls") -> np.ndarray:
    """Sample embeddings in evaluation mode: the CLS output (N, dim), the normalised projection (N, proj_dim), or
    the K gene-token outputs concatenated in token order (``tokens``: N, K · dim; what the decoders read).

    Moves ``model`` to ``device``; its training mode is restored afterwards.
    """
    if output not in ("cls", "projection", "tokens"):
        raise ValueError(f"output={output!r} must be 'cls', 'projection' or 'tokens'")
    if list(model.token_sizes) != data.token_sizes:
        raise ValueError(f"the model takes tokens of sizes {list(model.token_sizes)}, the data has "
                         f"{data.token_sizes}")
    was_training = model.training
    model.to(device).eval()
    tokens = data.tensors(device)
    parts = []
    for start in range(0, len(data), batch_size):
        out = model([t[start:start + batch_size] for t in tokens])
        if output == "cls":
            chosen = out.tokens[:, 0]
        elif output == "projection":
            chosen = out.projection
        else:
            chosen = out.tokens[:, 1:].flatten(1)
        parts.append(chosen.float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------------- survival
def train_survival(config: SurvivalConfig, data: TokenData, time: np.ndarray, event: np.ndarray,
                   encoder: ClusterTokenTransformer, checkpoint_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Train a :class:`SurvivalHead` on ``encoder`` (a copy; the argument is not modified).

    Args:
        config: see :class:`SurvivalConfig` (Cox loss by default; ``loss="mse"`` is the paper's).
        data: the samples' tokens.
        time: (N,) survival or censoring times, finite and non-negative (any unit; the authors used years).
        event: (N,) 1 = event observed, 0 = censored.
        encoder: the starting encoder, e.g. ``load_model(pretrain_dir / "last.pt")``; on resume its weights are
            replaced by the checkpoint's.
        checkpoint_dir: where ``last.pt`` is written every epoch (and resumed from).

    Returns:
        The history: ``epoch``, ``lr``, ``train_loss``, ``skipped_batches`` (batches of one sample, which
        BatchNorm cannot train on, and with Cox batches without an event), ``train_seconds``. Get the model with
        ``load_model(checkpoint_dir / "last.pt")``.
    """
    device = resolve_device(config.device)
    time_t, event_t = _survival_targets(time, event, len(data), device)
    if list(encoder.token_sizes) != data.token_sizes:
        raise ValueError(f"the encoder takes tokens of sizes {list(encoder.token_sizes)}, the data has "
                         f"{data.token_sizes}")
    seed_everything(config.seed)
    model = SurvivalHead(copy.deepcopy(encoder), config.hidden_dim, config.freeze_encoder).to(device)
    tokens = data.tensors(device)

    def step(rows: Tensor) -> dict[str, Tensor] | None:
        t, e = time_t[rows], event_t[rows]
        if len(rows) < 2 or (config.loss == "cox" and not bool(e.any())):
            return None
        with bf16_autocast(config.amp_bf16, device):
            score = model([x[rows] for x in tokens])
        loss = cox_partial_likelihood(score, t, e) if config.loss == "cox" else survival_mse(score, t)
        return {"loss": loss}

    run = Run(CHECKPOINT_FORMAT, "RNA", SURVIVAL, config, encoder.hparams, {"model": model})
    return fit(run, len(data), step, None, checkpoint_dir, progress, albef_lr)


def _survival_targets(time: np.ndarray, event: np.ndarray, n: int,
                      device: torch.device) -> tuple[Tensor, Tensor]:
    time, event = np.asarray(time, dtype=np.float64).reshape(-1), np.asarray(event).reshape(-1)
    if time.shape != (n,) or event.shape != (n,):
        raise ValueError(f"time ({time.size}) and event ({event.size}) need one value per sample ({n})")
    if not np.isfinite(time).all() or (time < 0).any():
        raise ValueError("survival times must be finite and non-negative; drop samples without follow-up")
    if not np.isin(event, (0, 1)).all():
        raise ValueError("event must be 1 (observed) or 0 (censored) for every sample")
    return (torch.as_tensor(time, dtype=torch.float32, device=device),
            torch.as_tensor(event.astype(bool), device=device))


@torch.no_grad()
def predict_survival(model: SurvivalHead, data: TokenData, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """The head's score per sample, (N,): a log-risk (Cox) or a predicted time (MSE). Evaluation mode."""
    was_training = model.training
    model.to(device).eval()
    tokens = data.tensors(device)
    scores = [model([t[s:s + batch_size] for t in tokens]).float().cpu().numpy()
              for s in range(0, len(data), batch_size)]
    model.train(was_training)
    return np.concatenate(scores)
