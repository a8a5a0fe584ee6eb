"""The one place where the compute device and the precision are decided.

* :func:`device_name`: ``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``, ``cuda`` and
  ``cuda:<n>`` are kept. :attr:`gbhet_lib.config.StudyConfig.resolved_device` and
  :func:`gbhet_lib.training.distributed.rank_device` follow it.
* :func:`resolve_device`: the same as a :class:`torch.device`, refusing CUDA where torch sees none.
* :func:`use_bf16`: bf16 autocast only on CUDA; on by default there (``requested=None``), never on the CPU.
* :func:`bf16_autocast`: the autocast context the trainers run their forward passes in.

Imports only torch.
"""
from __future__ import annotations

import torch

from ..config import ConfigError


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    return bool(torch.cuda.is_available())


def device_name(name: str | torch.device = "auto") -> str:
    """The device a setting means here, as a string: ``auto`` → ``cuda`` if torch sees a GPU else ``cpu``;
    ``cpu``, ``cuda`` and ``cuda:<n>`` unchanged (whether the GPU exists is checked by :func:`resolve_device`).
    """
    text = str(name)
    if text == "auto":
        return "cuda" if cuda_available() else "cpu"
    kind, _, index = text.partition(":")
    if text != "cpu" and not (kind == "cuda" and (not index or index.isdigit())):
        raise ConfigError(f"device={text!r} must be 'auto', 'cpu', 'cuda' or 'cuda:<n>'")
    return text


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``name`` (``auto`` as in :func:`device_name`) as a device; a clear error when it is CUDA and torch sees no
    GPU."""
    if isinstance(name, torch.device):
        device = name
    else:
        device = torch.device(device_name(name))
    if device.type == "cuda" and not cuda_available():
        raise ConfigError(f"device={str(name)!r} but torch sees no CUDA GPU; use device='cpu'")
    return device


def use_bf16(device: str | torch.device, requested: bool | None = None) -> bool:
    """Whether to run bf16 autocast on ``device``: only on CUDA; there ``requested`` (None: on).

    On the CPU the answer is False whatever is requested (e.g. settings recorded on a GPU and reused on a CPU), so
    a config built from it never fails :class:`~gbhet_lib.training.config.TrainConfig`'s check.
    """
    kind = device.type if isinstance(device, torch.device) else device_name(device).split(":")[0]
    return kind == "cuda" and (True if requested is None else bool(requested))


def bf16_autocast(enabled: bool, device: torch.device) -> torch.autocast:
    """bf16 autocast on ``device`` when ``enabled``."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
