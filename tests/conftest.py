"""Shared fixtures: one small synthetic cohort per test session (about a second to make)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs `-n 2`) the workers share the cores: each gets cores / workers threads for
# torch, OpenMP and BLAS, and so do the notebook kernels it starts (they inherit the environment). Two workers each
# running two threads on two cores made a 6 s test take 92 s.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = _threads

#: hosts of the tests' local HTTP servers (fake GDC, fake Zenodo, download servers): never sent through a proxy
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def bypass_proxy_for(hosts: tuple[str, ...], environ: dict[str, str] | os._Environ = os.environ) -> None:
    """Add ``hosts`` to ``NO_PROXY`` and ``no_proxy`` (keeping what is there), so that requests, urllib and the
    notebook kernels the tests start (they inherit the environment) reach local test servers directly even on a
    machine whose ``HTTP(S)_PROXY`` points at a proxy."""
    for var in ("NO_PROXY", "no_proxy"):
        present = [h.strip() for h in environ.get(var, "").split(",") if h.strip()]
        environ[var] = ",".join(present + [h for h in hosts if h not in present])


bypass_proxy_for(LOCAL_HOSTS)

ENV_REQUIRE_GPU = "GBHET_REQUIRE_GPU"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.requires_gpu("why")``: skip without a CUDA GPU, or fail with ``GBHET_REQUIRE_GPU=1`` (set it
    on a GPU machine, so that a broken CUDA set-up cannot silently skip the GPU tests)."""
    marker = item.get_closest_marker("requires_gpu")
    if marker is None or _cuda_available():
        return
    why = f" ({marker.args[0]})" if marker.args else ""
    message = f"needs a CUDA GPU{why}; torch.cuda.is_available() is False"
    if os.environ.get(ENV_REQUIRE_GPU) == "1":
        pytest.fail(f"{message}, and {ENV_REQUIRE_GPU}=1 makes that an error: check the driver and the torch "
                    f"build (torch.version.cuda), or unset {ENV_REQUIRE_GPU} on a machine without a GPU.",
                    pytrace=False)
    pytest.skip(message)


from gbhet_lib.data.synthetic import CohortSpec, SlideGeometry, make_demo_cohort
from gbhet_lib.data.synthetic.mri import MriGeometry

SMALL_SPEC = CohortSpec(n_patients=4, n_pool=150, n_genes=600, module_size=30, n_drivers=6, n_diagnostic=12,
                        slide=SlideGeometry(width=1024, height=768), mri=MriGeometry(shape=(32, 36, 24), voxel_mm=6.0))


@pytest.fixture(scope="session")
def small_spec() -> CohortSpec:
    return SMALL_SPEC


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cohort made with seed 7 (read-only: tests must not modify it)."""
    return make_demo_cohort(tmp_path_factory.mktemp("cohort"), SMALL_SPEC, seed=7, n_jobs=1, progress=False)


def with_slide(spec: CohortSpec, **geometry: object) -> CohortSpec:
    return dataclasses.replace(spec, slide=dataclasses.replace(spec.slide, **geometry))

# Tests never reach a model hub, whether run through `make test` or a bare `pytest`.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def kill_training_at(monkeypatch: pytest.MonkeyPatch):
    """``kill_training_at(module, epoch, batch)``: the trainer in ``module`` dies (KeyboardInterrupt) when it asks
    its schedule for that step, as a job killed mid-epoch would; returns a function that undoes it."""

    def kill(module, epoch: int, batch: int):
        schedule = module.albef_lr

        def dying(e: int, b: int, *args: float) -> float:
            if (e, b) == (epoch, batch):
                raise KeyboardInterrupt
            return schedule(e, b, *args)

        monkeypatch.setattr(module, "albef_lr", dying)
        return lambda: monkeypatch.setattr(module, "albef_lr", schedule)

    return kill
