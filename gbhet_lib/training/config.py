"""The optimisation settings every trainer shares (:class:`TrainConfig`) and the check that reports bad ones.

Imports only the standard library and :mod:`gbhet_lib.config` (for :class:`~gbhet_lib.config.ConfigError`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError


def require(condition: bool, message: str) -> None:
    """Raise :class:`~gbhet_lib.config.ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the trainers; defaults are the authors' RNA ones (``scripts/pretrain_rna.py``).

    Attributes:
        epochs, batch_size: 20 and 32 (``batch_size`` is per process under ``torchrun``).
        lr, warmup_lr, min_lr, warmup_epochs: the schedule of :func:`~gbhet_lib.training.schedule.albef_lr`
            (learning rates per optimiser step, dimensionless).
        weight_decay: AdamW decay, not applied to biases and 1-D parameters.
        seed: seeds model initialisation, shuffling, masking, dropout (torch, numpy and ``random`` too); a stage
            derives it from the study seed with :func:`~gbhet_lib.training.seeds.derive_seed`.
        device: ``cpu``, ``cuda`` or ``cuda:<n>`` (``auto`` is resolved before a config is made:
            :func:`~gbhet_lib.training.device.device_name`).
        amp_bf16: bf16 autocast for the forward pass (CUDA only; :func:`~gbhet_lib.training.device.use_bf16`
            gives the default); losses are computed in float32.
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.02
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5
    warmup_epochs: int = 6
    seed: int = 42
    device: str = "cpu"
    amp_bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            require(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be at least 1")
        require(self.warmup_epochs >= 0 and self.seed >= 0, "warmup_epochs and seed must be non-negative")
        require(self.lr > 0 and self.warmup_lr > 0 and self.min_lr >= 0 and self.weight_decay >= 0,
                "lr and warmup_lr must be positive, min_lr and weight_decay non-negative")
        require(self.device == "cpu" or self.device.split(":")[0] == "cuda",
                f"device={self.device!r} must be 'cpu', 'cuda' or 'cuda:<n>'")
        require(not self.amp_bf16 or self.device != "cpu", "amp_bf16=True needs a CUDA device; set amp_bf16=False")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible values."""
        return dataclasses.asdict(self)

    def without_device(self) -> dict[str, Any]:
        """:meth:`to_dict` without ``device`` and ``amp_bf16``: what a trained model's folder is keyed by, so that a
        model trained on one device is reused on another."""
        return {k: v for k, v in self.to_dict().items() if k not in ("device", "amp_bf16")}
