"""The training package: one place for device and precision, seeds derived from the study seed (fusion models
start differently under another study seed), per-module learning rates (a learnable temperature that learns),
and the names the old ``gbhet_lib.training`` module had. Tiny models on the CPU."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fusion_tiny import TINY_FUSION, tiny_encoders, tiny_pairs

from gbhet_lib.config import ConfigError, StudyConfig
from gbhet_lib.fusion import train as fusion_train
from gbhet_lib.fusion.train import init_fusion, train_fusion, variant_config
from gbhet_lib.rna.losses import Temperature
from gbhet_lib.training import TrainConfig, build_optimizer, derive_seed, device_name, rank_device, \
    read_checkpoint, resolve_device, use_bf16


def test_the_old_module_names_are_still_importable() -> None:
    import gbhet_lib.fusion.distributed as fusion_distributed
    import gbhet_lib.training as training

    for name in ("Run", "TrainConfig", "fit", "bf16_autocast", "distributed", "load_weights", "read_checkpoint",
                 "require", "resolve_device", "seed_everything", "CHECKPOINT", "HISTORY", "build_optimizer",
                 "albef_lr"):
        assert hasattr(training, name), name
    assert (training.CHECKPOINT, training.HISTORY) == ("last.pt", "history.tsv")
    assert fusion_distributed.process_group is training.process_group
    assert fusion_distributed.rank_device is training.rank_device


def test_the_training_package_needs_only_torch_numpy_pandas_tqdm() -> None:
    heavy = ["scanpy", "anndata", "openslide", "networkx", "sklearn", "lifelines", "scipy", "h5py", "matplotlib",
             "papermill", "timm", "yaml"]
    code = ("import sys, gbhet_lib.training; "
            f"print(sorted(set({heavy!r}) & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------ device
def test_device_and_precision_are_decided_in_one_place(tmp_path: Path) -> None:
    gpu = torch.cuda.is_available()
    assert device_name("auto") == ("cuda" if gpu else "cpu")
    assert (device_name("cpu"), device_name("cuda"), device_name("cuda:1")) == ("cpu", "cuda", "cuda:1")
    with pytest.raises(ConfigError, match="'tpu'"):
        device_name("tpu")
    assert resolve_device("auto").type == ("cuda" if gpu else "cpu")
    if not gpu:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert rank_device("auto") == device_name("auto")  # one process: no LOCAL_RANK suffix
    # bf16 autocast only on CUDA: on by default there, never on the CPU whatever is asked
    assert use_bf16("cuda") and use_bf16("cuda:0", True) and not use_bf16("cuda", False)
    assert not use_bf16("cpu") and not use_bf16("cpu", True) and not use_bf16(torch.device("cpu"), True)
    assert use_bf16("auto") == gpu
    for device in ("auto", "cpu"):
        assert StudyConfig(run_dir=tmp_path, device=device).resolved_device == device_name(device)


# ------------------------------------------------------------------------------------------------- seeds
def test_derived_seeds_are_stable_distinct_and_in_range() -> None:
    seed = derive_seed(0, "fusion", "best", "patch")
    assert seed == derive_seed(0, "fusion", "best", "patch") == 872549562  # the same on every machine
    others = {derive_seed(1, "fusion", "best", "patch"), derive_seed(0, "fusion", "best", "lineage"),
              derive_seed(0, "fusion", "frozen", "patch"), derive_seed(0, "fusion", "best"),
              derive_seed(0, "fusionbest", "patch")}
    assert seed not in others and len(others) == 5
    assert all(0 <= s < 2 ** 31 for s in others | {seed})
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="study_seed"):
            derive_seed(bad, "fusion")
    with pytest.raises(ValueError, match="names"):
        derive_seed(0)


def test_fusion_initial_weights_follow_the_study_seed() -> None:
    """``train_fusion`` starts from :func:`init_fusion`; with the seed derived from the study seed, two study
    seeds give different initial fusion weights and the same study seed the same ones."""
    image_encoder, rna_encoder = tiny_encoders()

    def initial(study_seed: int) -> dict[str, torch.Tensor]:
        config = variant_config("best", **TINY_FUSION, seed=derive_seed(study_seed, "fusion", "best", "patch"))
        return init_fusion(config, image_encoder, rna_encoder).state_dict()

    a, again, b = initial(0), initial(0), initial(1)
    assert a.keys() == again.keys() == b.keys()
    assert all(torch.equal(a[k], again[k]) for k in a)
    fusion_own = [k for k in a if k.startswith("fusion.") and not k.startswith(("fusion.image_encoder.",
                                                                                  "fusion.rna_encoder."))]
    assert fusion_own and all(a[k].dtype.is_floating_point for k in fusion_own if "weight" in k)
    differ = [k for k in fusion_own if not torch.equal(a[k], b[k])]
    assert any("coattention" in k for k in differ) and any("itm_head" in k for k in differ), differ
    # the encoders are copies of the pre-trained ones whatever the seed
    encoders = [k for k in a if k.startswith(("fusion.image_encoder.", "fusion.rna_encoder."))]
    assert encoders and all(torch.equal(a[k], b[k]) for k in encoders)


def test_train_fusion_starts_from_init_fusion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's starting point is exactly :func:`init_fusion`'s (captured before the first step)."""
    config = variant_config("best", **{**TINY_FUSION, "epochs": 1}, seed=derive_seed(3, "fusion", "best", "patch"))
    image_encoder, rna_encoder = tiny_encoders()
    expected = init_fusion(config, image_encoder, rna_encoder).state_dict()
    captured = {}
    original = fusion_train.init_fusion

    def spy(*args, **kwargs):
        parts = original(*args, **kwargs)
        captured.update({k: v.clone() for k, v in parts.state_dict().items()})
        return parts

    monkeypatch.setattr(fusion_train, "init_fusion", spy)
    train_fusion(config, tiny_pairs(), image_encoder, rna_encoder, tmp_path, progress=False)
    assert captured.keys() == expected.keys() and all(torch.equal(captured[k], expected[k]) for k in expected)


# ------------------------------------------------------------------------------------ per-module learning rates
def test_optimizer_groups_by_learning_rate_scale_and_decay() -> None:
    torch.manual_seed(0)
    modules = {"model": nn.Linear(3, 2), "temperature": Temperature(0.07, learnable=True)}
    config = TrainConfig()
    plain = build_optimizer(modules, config, torch.device("cpu"))
    assert [(g["lr_scale"], g["weight_decay"], len(g["params"])) for g in plain.param_groups] == \
        [(1.0, 0.0, 2), (1.0, 0.02, 1)]  # bias and log τ undecayed, the weight decayed: as before scales
    scaled = build_optimizer(modules, config, torch.device("cpu"), {"temperature": 100.0})
    assert [(g["lr_scale"], g["weight_decay"], len(g["params"])) for g in scaled.param_groups] == \
        [(1.0, 0.0, 1), (1.0, 0.02, 1), (100.0, 0.0, 1)]
    assert scaled.param_groups[2]["params"][0] is modules["temperature"].log_tau
    assert scaled.param_groups[2]["lr"] == pytest.approx(config.warmup_lr * 100)
    with pytest.raises(ConfigError, match="not modules"):
        build_optimizer(modules, config, torch.device("cpu"), {"nope": 2.0})
    with pytest.raises(ConfigError, match="positive"):
        build_optimizer(modules, config, torch.device("cpu"), {"temperature": 0.0})


def test_a_learnable_temperature_learns_and_a_fixed_one_stays(tmp_path: Path) -> None:
    """8 epochs × 5 batches = 40 steps from the paper's τ = 0.005: with its own learning rate (``temperature_lr``,
    1e-2) τ moves by more than 5 %; at the model's rate (as before, 1e-3 here) it barely moves; fixed, it does not
    move at all. The end-of-epoch values are recorded (``temperature_end``)."""
    data = tiny_pairs()
    image_encoder, rna_encoder = tiny_encoders()
    start = 0.005
    settings = {**TINY_FUSION, "epochs": 8, "warmup_epochs": 1, "temperature": start}
    moved = {}
    for temperature_lr in (1e-2, TINY_FUSION["lr"]):
        history = train_fusion(variant_config("best", **settings, learnable_temperature=True,
                                              temperature_lr=temperature_lr),
                               data, image_encoder, rna_encoder, tmp_path / f"learned-{temperature_lr}",
                               progress=False)
        assert history["train_samples"].sum() == 8 * len(data)
        trajectory = history["temperature_end"].to_numpy()
        assert np.all(np.isfinite(trajectory)) and len(trajectory) == 8
        moved[temperature_lr] = abs(trajectory[-1] / start - 1)
    assert moved[1e-2] > 0.05, moved
    assert moved[TINY_FUSION["lr"]] < moved[1e-2] / 3, moved

    fixed = train_fusion(variant_config("best", **settings, learnable_temperature=False),
                         data, image_encoder, rna_encoder, tmp_path / "fixed", progress=False)
    tau = float(Temperature(start)())
    assert (fixed["temperature_end"] == tau).all()
    state = read_checkpoint(tmp_path / "fixed" / "last.pt", fusion_train.CHECKPOINT_FORMAT, "fusion")
    assert torch.equal(state["modules"]["temperature"]["log_tau"], Temperature(start).log_tau)
    assert len(state["optimizer"]["param_groups"]) == 2  # no temperature group when τ is fixed


def test_the_temperature_learning_rate_follows_the_schedule_scaled(tmp_path: Path) -> None:
    config = variant_config("best", **{**TINY_FUSION, "epochs": 2}, learnable_temperature=True,
                            temperature_lr=5e-2)
    train_fusion(config, tiny_pairs(), *tiny_encoders(), tmp_path, progress=False)
    groups = read_checkpoint(tmp_path / "last.pt", fusion_train.CHECKPOINT_FORMAT, "fusion")["optimizer"][
        "param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, pytest.approx(50.0)]
    assert groups[2]["weight_decay"] == 0.0 and groups[2]["lr"] == pytest.approx(groups[0]["lr"] * 50)
    with pytest.raises(ConfigError, match="temperature_lr"):
        dataclasses.replace(config, temperature_lr=0.0)


def test_single_process_hides_the_process_group(monkeypatch) -> None:
    """Inside single_process() a rank trains alone: fit must not split batches with ranks that are not stepping."""
    import sys

    import torch.distributed as dist

    from gbhet_lib.training import distributed, single_process

    training_distributed = sys.modules["gbhet_lib.training.distributed"]  # the package re-exports a function of that name

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert distributed() == (1, 2)
    with single_process():
        assert distributed() == (0, 1)
        with single_process():  # nested: still alone, and the outer context is restored after
            assert distributed() == (0, 1)
        assert distributed() == (0, 1)
    assert distributed() == (1, 2) and training_distributed._ALONE is False


def test_finished_reads_the_history(tmp_path) -> None:
    from gbhet_lib.training import CHECKPOINT, HISTORY, finished

    assert not finished(tmp_path, 2)
    (tmp_path / CHECKPOINT).write_bytes(b"x")
    (tmp_path / HISTORY).write_text("epoch\tloss\n0\t1.0\n")
    assert finished(tmp_path, 1) and not finished(tmp_path, 2)
