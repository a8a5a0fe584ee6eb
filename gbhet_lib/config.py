"""StudyConfig: the few settings every chapter shares, validated when created.

A config names *where* the data come from (``profile``), *where* results go (``run_dir``), the random
``seed`` and the compute ``device``. Chapter-specific knobs (cohort sizes, epochs, ...) are notebook
parameters, not config fields.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from .errors import UsageError

PROFILES: tuple[str, ...] = ("demo", "reference", "full", "stemri")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

Profile = Literal["demo", "reference", "full", "stemri"]
Device = Literal["auto", "cpu", "cuda"]

#: environment variables read for defaults (CI passes the data mirror this way)
ENV_DATA_MIRROR = "GBHET_DATA_MIRROR"
ENV_CACHE_DIR = "GBHET_CACHE_DIR"


class ConfigError(UsageError):
    """A setting is invalid; the message says which one and how to fix it (a :class:`~gbhet_lib.errors.UsageError`,
    so a :class:`GbhetError` and a ValueError; the command line exits with status 2)."""


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Validated settings of one study run.

    Attributes:
        profile: where the data come from: ``demo`` (synthetic cohort, offline), ``reference`` (small real
            public data), ``full`` (TCGA through the GDC API) or ``stemri`` (the authors' Zenodo record).
        run_dir: the run directory; created if missing and checked to be writable.
        seed: non-negative integer seed for every random step of the run.
        device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu`` or ``cuda``.
        data_mirror: a local folder holding the data manifest's files (offline use, CI); ``None`` means
            download from the sources. Defaults to ``$GBHET_DATA_MIRROR``.
        cache_dir: where downloads are cached. Defaults to ``$GBHET_CACHE_DIR`` or ``~/.cache/gbhet``.
    """

    profile: Profile = "demo"
    run_dir: Path = Path("runs/demo")
    seed: int = 0
    device: Device = "auto"
    data_mirror: Path | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        if self.profile not in PROFILES:
            raise ConfigError(f"profile={self.profile!r} is not one of {', '.join(PROFILES)}. "
                              "Use 'demo' to run offline on the synthetic cohort.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer, e.g. seed=0.")
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r} is not one of {', '.join(DEVICES)}.")
        if self.device == "cuda" and not cuda_available():
            raise ConfigError("device='cuda' but torch sees no CUDA GPU here (or torch is not installed). "
                              "Use device='auto' or device='cpu', or run this stage on a GPU machine.")
        set_("run_dir", _writable_dir(Path(self.run_dir).expanduser(), "run_dir"))
        mirror = self.data_mirror if self.data_mirror is not None else os.environ.get(ENV_DATA_MIRROR) or None
        if mirror is not None:
            mirror = Path(mirror).expanduser().resolve()
            if not mirror.is_dir():
                raise ConfigError(f"data_mirror={str(mirror)!r} is not a folder. Point it at a copy of the data "
                                  f"manifest's files (e.g. ../shared/data), or unset {ENV_DATA_MIRROR} to download.")
        set_("data_mirror", mirror)
        cache = self.cache_dir if self.cache_dir is not None else os.environ.get(ENV_CACHE_DIR) or "~/.cache/gbhet"
        set_("cache_dir", Path(cache).expanduser())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How a notebook shows the config: the run directory as given to the chapter (relative to the working
        directory when below it), the local data folders only as whether they are set, so that a rendered book
        carries no machine's paths (the run's ``config.json`` keeps them)."""
        printer.text(f"StudyConfig(profile={self.profile!r}, run_dir={_shown_path(self.run_dir)!r}, "
                     f"seed={self.seed}, device={self.device!r} ({self.resolved_device}), "
                     f"data_mirror={'set' if self.data_mirror is not None else None}, cache_dir=local)")

    @property
    def resolved_device(self) -> str:
        """``cuda`` or ``cpu``: what ``device='auto'`` means on this machine.

        The rule is :func:`gbhet_lib.training.device.device_name`'s (the one place device is decided); where torch
        is missing or sees no GPU its answer is known without importing the training stack (``auto`` → ``cpu``),
        so the data chapters run without torch."""
        if not cuda_available():
            return "cpu" if self.device == "auto" else self.device
        from .training.device import device_name

        return device_name(self.device)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        return {f.name: (str(v) if isinstance(v, Path) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StudyConfig:
        """Build from a dict such as ``config.json``; unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; allowed: {sorted(known)}")
        kwargs = dict(values)
        for key in ("run_dir", "data_mirror", "cache_dir"):
            if kwargs.get(key) is not None:
                kwargs[key] = Path(kwargs[key])
        return cls(**kwargs)


def cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device (torch is optional for the data chapters)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _writable_dir(path: Path, what: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"{what}={str(path)!r} is not a writable folder ({err.strerror or err}). "
                          f"Pass {what}= a folder you can write to, e.g. runs/demo.") from err
    return path.resolve()


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else its last two parts after ``…/``."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(Path("…", *path.parts[-2:]))
