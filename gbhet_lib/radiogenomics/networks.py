"""Smedley et al.'s networks (reference spec §3.3–3.4): the gene autoencoder and the supervised trait network.

* :class:`GeneAutoencoder`: a symmetric stack G → h1 → h2 → h3 → h2 → h1 → G in which **every** layer, the
  reconstruction layer included, is Linear → BatchNorm1d → tanh (so reconstructions of standardised genes lie in
  (−1, 1), as in the paper). Trained with MAE (:func:`~gbhet_lib.radiogenomics.training.fit_autoencoder`).
* :class:`TraitNet`: Input → Dropout(p) → [Linear → BatchNorm1d → act → Dropout(p)] × 3 → Linear(n_out). It returns
  **logits**: (B,) for a binary trait (the sigmoid lives in the loss, BCE with logits), (B, C) for C classes
  (softmax cross-entropy). :meth:`TraitNet.from_autoencoder` copies the three encoder Linear layers (weights and
  biases; not the BatchNorm statistics, as the paper) and freezes the first ``frozen_layers`` of them.
* :class:`AutoencoderConfig`, :class:`ClassifierConfig`: settings with checks; defaults are a CPU demo,
  :meth:`AutoencoderConfig.paper` / :meth:`ClassifierConfig.paper` / :meth:`ClassifierConfig.subtype_paper` the
  published ones; :data:`PAPER_TRAIT_SETTINGS` the per-trait dropout and freezing of §3.4.

The paper's ``num_ae_layers``/``freeze`` pair always copied all three encoder layers and only decided freezing;
here that is said directly: ``ae_init`` (copy all three) and ``frozen_layers`` (0–2: freeze the first k; the
third layer was never frozen).

Linear layers start as Keras' Dense (Glorot-uniform weights, zero biases). Imports torch (and the trait names of
:mod:`gbhet_lib.mri.traits`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..mri.traits import TRAITS
from ..training.config import require

Activation = Literal["tanh", "sigmoid"]
Optimizer = Literal["adadelta", "adam", "nadam"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
OPTIMIZERS = ("adadelta", "adam", "nadam")
DEMO_HIDDEN = (256, 128, 64)
PAPER_HIDDEN = (4000, 2000, 1000)

#: trait → (dropout, frozen_layers) of the published models (§3.4; all 4000-2000-1000, tanh, AE-initialised),
#: keyed and ordered by :data:`~gbhet_lib.mri.traits.TRAITS` (a renamed trait there fails here, at import).
PAPER_TRAIT_SETTINGS: dict[str, tuple[float, int]] = {trait: {
    "enhancing": (0.6, 0),  # f5: num_ae_layers 3, freeze 0
    "ncet": (0.0, 1),  # f6: layer 1 frozen
    "necrosis": (0.0, 1),  # f7
    "focal": (0.6, 0),  # f9
    "infiltrative": (0.0, 2),  # f10: layers 1-2 frozen
    "edema": (0.0, 1),  # f14
}[trait] for trait in TRAITS}


def _check_common(hidden: tuple[int, ...], activation: str, epochs: int, batch_size: int, patience: int,
                  min_delta: float, seed: int, optimizer: str, lr: float) -> None:
    require(isinstance(hidden, tuple) and len(hidden) >= 1 and
            all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden),
            f"hidden={hidden!r} must be a non-empty tuple of positive layer widths, e.g. (256, 128, 64)")
    require(activation in ACTIVATIONS, f"activation={activation!r} must be one of {sorted(ACTIVATIONS)}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name}={value!r} must be a positive integer")
    require(batch_size >= 2, f"batch_size={batch_size} must be at least 2 (BatchNorm needs two patients per batch)")
    require(min_delta >= 0, f"min_delta={min_delta!r} must be non-negative (the smallest improvement that counts)")
    require(isinstance(seed, int) and seed >= 0, f"seed={seed!r} must be a non-negative integer")
    require(optimizer in OPTIMIZERS, f"optimizer={optimizer!r} must be one of {OPTIMIZERS}")
    require(lr > 0, f"lr={lr!r} must be positive (Adadelta's Keras default is 1.0)")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Settings of :class:`GeneAutoencoder` and :func:`~gbhet_lib.radiogenomics.training.fit_autoencoder`;
    defaults are a CPU demo, :meth:`paper` the published ones (§3.3).

    Attributes:
        hidden: encoder widths h1, h2, h3 (demo (256, 128, 64); paper (4000, 2000, 1000)); the decoder mirrors them.
        activation: ``tanh`` (the paper's) or ``sigmoid``.
        epochs: at most this many epochs (demo 60; paper 500).
        batch_size: patients per step (50, the paper's).
        patience: stop after this many epochs without a validation R² better by more than ``min_delta``
            (demo 15; paper 200).
        min_delta: the smallest R² improvement that counts (0.005, the paper's).
        seed: seeds the initialisation, the inner validation split and the batch order.
        optimizer, lr: ``adadelta`` at lr 1.0 (Keras' defaults, rho 0.95, eps 1e-7: the paper's), or ``adam``/
            ``nadam`` at ``lr``.
    """

    hidden: tuple[int, ...] = DEMO_HIDDEN
    activation: Activation = "tanh"
    epochs: int = 60
    batch_size: int = 50
    patience: int = 15
    min_delta: float = 0.005
    seed: int = 0
    optimizer: Optimizer = "adadelta"
    lr: float = 1.0

    def __post_init__(self) -> None:
        _check_common(self.hidden, self.activation, self.epochs, self.batch_size, self.patience, self.min_delta,
                      self.seed, self.optimizer, self.lr)

    @classmethod
    def paper(cls, **changes: Any) -> AutoencoderConfig:
        """The published autoencoder: 4000-2000-1000, tanh, Adadelta, MAE, batch 50, 500 epochs, patience 200."""
        return dataclasses.replace(cls(hidden=PAPER_HIDDEN, epochs=500, patience=200), **changes)


@dataclass(frozen=True)
class ClassifierConfig:
    """Settings of :class:`TraitNet` and :func:`~gbhet_lib.radiogenomics.training.fit_classifier`; defaults are a
    CPU demo, :meth:`paper` (per trait) and :meth:`subtype_paper` the published ones (§3.4).

    Attributes:
        hidden: widths h1, h2, h3 (must equal the autoencoder's when ``ae_init``).
        activation: ``tanh`` (traits) or ``sigmoid`` (the subtype model).
        dropout: p of the dropout on the input and after every hidden layer (0 ≤ p < 1).
        ae_init: copy all encoder Linear layers from the autoencoder (the paper always did for traits).
        frozen_layers: freeze the first k encoder Linear layers (0 ≤ k < len(hidden); needs ``ae_init``).
        n_classes: 1 for a binary trait (one logit, BCE); C ≥ 3 for C classes (C logits, softmax CE).
        epochs: at most this many epochs (demo 60; paper 500, subtype 200).
        batch_size: patients per step (10, the paper's).
        lr, optimizer: see :class:`AutoencoderConfig` (the subtype model used Nadam, Keras lr 0.002).
        patience, min_delta: early stopping on validation ROC AUC (demo 15, 0.005; paper 200, 0.005).
        seed: seeds the initialisation, dropout and the batch order.
        balanced: class-balanced loss weights n / (C · n_c) (the paper's CV used them; its final retrain did not).
    """

    hidden: tuple[int, ...] = DEMO_HIDDEN
    activation: Activation = "tanh"
    dropout: float = 0.0
    ae_init: bool = True
    frozen_layers: int = 0
    n_classes: int = 1
    epochs: int = 60
    batch_size: int = 10
    lr: float = 1.0
    optimizer: Optimizer = "adadelta"
    patience: int = 15
    min_delta: float = 0.005
    seed: int = 0
    balanced: bool = True

    def __post_init__(self) -> None:
        _check_common(self.hidden, self.activation, self.epochs, self.batch_size, self.patience, self.min_delta,
                      self.seed, self.optimizer, self.lr)
        require(0 <= self.dropout < 1, f"dropout={self.dropout!r} must lie in [0, 1)")
        require(isinstance(self.frozen_layers, int) and 0 <= self.frozen_layers < len(self.hidden),
                f"frozen_layers={self.frozen_layers!r} must lie in [0, {len(self.hidden) - 1}] (the last hidden "
                "layer is never frozen)")
        require(self.frozen_layers == 0 or self.ae_init,
                f"frozen_layers={self.frozen_layers} freezes autoencoder weights; set ae_init=True or frozen_layers=0")
        require(isinstance(self.n_classes, int) and (self.n_classes == 1 or self.n_classes >= 3),
                f"n_classes={self.n_classes!r} must be 1 (binary, one logit) or at least 3")

    @classmethod
    def paper(cls, trait: str, **changes: Any) -> ClassifierConfig:
        """The published network of ``trait`` (one of :data:`~gbhet_lib.mri.traits.TRAITS`): 4000-2000-1000,
        tanh, AE-initialised, Adadelta, batch 10, 500 epochs, patience 200, with its dropout and freezing."""
        if trait not in PAPER_TRAIT_SETTINGS:
            raise ValueError(f"trait={trait!r} has no published settings; use one of {list(PAPER_TRAIT_SETTINGS)}")
        dropout, frozen = PAPER_TRAIT_SETTINGS[trait]
        return dataclasses.replace(cls(hidden=PAPER_HIDDEN, dropout=dropout, frozen_layers=frozen, epochs=500,
                                       patience=200), **changes)

    @classmethod
    def subtype_paper(cls, n_classes: int = 4, **changes: Any) -> ClassifierConfig:
        """The published subtype network: 3000-1500-750, sigmoid, dropout 0.4, no autoencoder, Nadam (lr 0.002,
        Keras' default), softmax over ``n_classes`` (4 Verhaak subtypes), batch 10, 200 epochs."""
        return dataclasses.replace(cls(hidden=(3000, 1500, 750), activation="sigmoid", dropout=0.4, ae_init=False,
                                       n_classes=n_classes, epochs=200, patience=200, optimizer="nadam", lr=0.002),
                                   **changes)


def _dense(n_in: int, n_out: int) -> nn.Linear:
    """A Linear layer initialised as Keras' Dense (Glorot-uniform weights, zero bias)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _block(n_in: int, n_out: int, activation: str) -> list[nn.Module]:
    return [_dense(n_in, n_out), nn.BatchNorm1d(n_out), ACTIVATIONS[activation]()]


class GeneAutoencoder(nn.Module):
    """Symmetric autoencoder of standardised expression: (B, G) → (B, G), every layer Linear → BN → act.

    Args:
        n_genes: G, the input width.
        hidden: encoder widths (h1, …, hk); the decoder is (h_{k-1}, …, h1, G).
        activation: ``tanh`` (the paper's) or ``sigmoid``.
    """

    def __init__(self, n_genes: int, hidden: tuple[int, ...] = DEMO_HIDDEN, activation: Activation = "tanh"):
        super().__init__()
        if n_genes < 1:
            raise ValueError(f"n_genes={n_genes} must be positive")
        widths = (n_genes, *hidden)
        self.n_genes, self.hidden, self.activation = n_genes, tuple(hidden), activation
        self.encoder = nn.Sequential(*[m for a, b in zip(widths[:-1], widths[1:]) for m in _block(a, b, activation)])
        back = widths[::-1]
        self.decoder = nn.Sequential(*[m for a, b in zip(back[:-1], back[1:]) for m in _block(a, b, activation)])

    @classmethod
    def from_config(cls, n_genes: int, config: AutoencoderConfig) -> GeneAutoencoder:
        return cls(n_genes, config.hidden, config.activation)

    def encoder_linears(self) -> list[nn.Linear]:
        """The encoder's Linear layers, input side first (three for the paper's architecture)."""
        return [m for m in self.encoder if isinstance(m, nn.Linear)]

    def encode(self, x: Tensor) -> Tensor:
        """(B, G) → (B, h_k) code."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, G) standardised expression → (B, G) reconstruction in the activation's range."""
        return self.decoder(self.encoder(x))


class TraitNet(nn.Module):
    """Supervised network: (B, G) standardised expression → logits, (B,) when ``n_classes`` is 1, else (B, C).

    Layout: Dropout(p) on the input, then per hidden width Linear → BN → act → Dropout(p), then Linear(n_out) (the
    paper's ``preds`` layer, before its sigmoid/softmax).
    """

    def __init__(self, n_genes: int, hidden: tuple[int, ...] = DEMO_HIDDEN, dropout: float = 0.0,
                 activation: Activation = "tanh", n_classes: int = 1):
        super().__init__()
        if n_genes < 1 or not 0 <= dropout < 1 or not (n_classes == 1 or n_classes >= 3):
            raise ValueError(f"need n_genes ≥ 1, dropout in [0, 1) and n_classes 1 or ≥ 3; got {n_genes}, "
                             f"{dropout}, {n_classes}")
        self.n_genes, self.hidden, self.n_classes = n_genes, tuple(hidden), n_classes
        widths = (n_genes, *hidden)
        self.input_dropout = nn.Dropout(dropout)
        self.linears = nn.ModuleList(_dense(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in hidden)
        self.activations = nn.ModuleList(ACTIVATIONS[activation]() for _ in hidden)
        self.dropouts = nn.ModuleList(nn.Dropout(dropout) for _ in hidden)
        self.head = _dense(hidden[-1], n_classes)

    @classmethod
    def from_config(cls, n_genes: int, config: ClassifierConfig) -> TraitNet:
        """A freshly initialised network (no autoencoder weights) of ``config``'s shape."""
        return cls(n_genes, config.hidden, config.dropout, config.activation, config.n_classes)

    @classmethod
    def from_autoencoder(cls, ae: GeneAutoencoder, config: ClassifierConfig) -> TraitNet:
        """A network whose encoder Linear layers (weights and biases) are copies of ``ae``'s; BatchNorm layers start
        fresh. The first ``config.frozen_layers`` of them are frozen (``requires_grad=False``)."""
        if tuple(ae.hidden) != tuple(config.hidden):
            raise ValueError(f"the autoencoder's hidden widths {ae.hidden} differ from config.hidden "
                             f"{config.hidden}; build the ClassifierConfig with hidden={ae.hidden}")
        net = cls.from_config(ae.n_genes, config)
        with torch.no_grad():
            for mine, theirs in zip(net.linears, ae.encoder_linears()):
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        net.freeze(config.frozen_layers)
        return net

    def freeze(self, k: int) -> None:
        """Freeze the first ``k`` Linear layers (their BatchNorm layers still train, as in Keras)."""
        if not 0 <= k < len(self.linears):
            raise ValueError(f"k={k} must lie in [0, {len(self.linears) - 1}]")
        for i, layer in enumerate(self.linears):
            for p in layer.parameters():
                p.requires_grad_(i >= k)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_from_first_linear(self.linears[0](self.input_dropout(x)))

    def forward_from_first_linear(self, z: Tensor) -> Tensor:
        """The rest of :meth:`forward` from the first Linear layer's output ``z`` (B, h1): single-gene masking
        computes ``z`` as bias + x_g·W[:, g] instead of multiplying a (B, G) matrix with one non-zero column."""
        h = z
        for i, (norm, act, drop) in enumerate(zip(self.norms, self.activations, self.dropouts)):
            if i:
                h = self.linears[i](h)
            h = drop(act(norm(h)))
        logits = self.head(h)
        return logits.squeeze(1) if self.n_classes == 1 else logits


def make_optimizer(parameters: Any, name: str, lr: float) -> torch.optim.Optimizer:
    """Adadelta with Keras' defaults (rho 0.95, eps 1e-7) at ``lr`` (Keras: 1.0), Adam, or NAdam (Keras' Nadam).

    Each uses torch's multi-tensor (``foreach``) update: the same arithmetic as the per-tensor loop, which on CPU
    torch picks by default and which took a fifth of a demo trait network's training time (measured: Adadelta
    5.2 s of 26 s for 20 trainings)."""
    params = [p for p in parameters if p.requires_grad]
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=0.95, eps=1e-7, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=1e-7, foreach=True)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, eps=1e-7, foreach=True)
    raise ValueError(f"optimizer={name!r} must be one of {OPTIMIZERS}")
