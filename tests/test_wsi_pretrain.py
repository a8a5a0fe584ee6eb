"""SimCLR pre-training of the patch encoder: the NT-Xent loss, the random views, training, resume, and the
convolutional stem of the demo encoder."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import gbhet_lib.wsi.pretrain as wsi_pretrain
from gbhet_lib.config import ConfigError
from gbhet_lib.wsi.encoder import PatchEncoder, demo_encoder, load_encoder
from gbhet_lib.wsi.pretrain import SimCLRConfig, nt_xent_loss, pretrain_simclr, random_views
from gbhet_lib.wsi.train import PatchArrays

TINY = SimCLRConfig(epochs=2, batch_size=8, lr=1e-3, warmup_epochs=0, seed=3)


def _encoder() -> PatchEncoder:
    return demo_encoder(img_size=32, proj_dim=16)


def _patches(n: int, seed: int = 0) -> PatchArrays:
    """40 px patches, each of its own colour (noise SD 10) with a dark square ('nucleus'); SimCLR uses no labels."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(60, 240, (n, 1, 1, 3))
    images = np.clip(colours + rng.normal(0, 10, (n, 40, 40, 3)), 0, 255).astype(np.uint8)
    for image in images:
        y, x = rng.integers(0, 30, 2)
        image[y:y + 10, x:x + 10] = 40
    return PatchArrays(images, np.zeros(n, dtype=np.int64))


def test_nt_xent_hand_values() -> None:
    # two views that coincide and are orthogonal to every other pair: the partner is found with certainty
    z = torch.eye(4)
    perfect = nt_xent_loss(z, z.clone(), temperature=0.01)
    assert float(perfect) == pytest.approx(0.0, abs=1e-6)
    # every similarity equal: the loss is its chance level log(2B − 1)
    same = F.normalize(torch.ones(4, 3), dim=1)
    assert float(nt_xent_loss(same, same.clone(), 0.2)) == pytest.approx(math.log(7), rel=1e-6)
    # swapped partners score worse than chance
    a, b = torch.eye(4)[:2], torch.eye(4)[2:]
    assert float(nt_xent_loss(torch.cat([a, b]), torch.cat([b, a]), 0.1)) > math.log(7)
    with pytest.raises(ValueError, match="matching"):
        nt_xent_loss(torch.zeros(3, 2), torch.zeros(2, 2), 0.2)


def test_random_views_are_crops_flips_and_quarter_turns() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.zeros(1, 3, 16, 16)
    image[..., :8, :8] = 1.0  # one bright quadrant
    full = random_views(image.expand(64, -1, -1, -1).contiguous(), 16, 1.0, generator)
    # min_crop 1: the whole image, only turned or flipped: the bright quadrant moves to one of the four corners
    corners = torch.stack([full[:, 0, :8, :8].mean((1, 2)), full[:, 0, :8, 8:].mean((1, 2)),
                           full[:, 0, 8:, :8].mean((1, 2)), full[:, 0, 8:, 8:].mean((1, 2))], dim=1)
    assert torch.allclose(corners.max(dim=1).values, torch.ones(64), atol=1e-5)
    assert set(corners.argmax(dim=1).tolist()) == {0, 1, 2, 3}
    assert torch.allclose(full.mean((1, 2, 3)), torch.full((64,), 0.25), atol=1e-5)  # nothing lost or added
    crops = random_views(torch.rand(8, 3, 24, 24), 12, 0.5, generator)
    assert crops.shape == (8, 3, 12, 12)


def test_pretraining_lowers_the_loss_below_chance_and_loads(tmp_path: Path) -> None:
    history = pretrain_simclr(_encoder, _patches(32), dataclasses.replace(TINY, epochs=3), tmp_path, progress=False)
    assert list(history["epoch"]) == [0, 1, 2]
    assert history["train_chance"].iloc[0] == pytest.approx(math.log(15))
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["train_loss"].iloc[-1] < history["train_chance"].iloc[-1]
    encoder = load_encoder(tmp_path / "last.pt")
    assert encoder.hparams["conv_stem"] == 4 and not encoder.training


def test_interrupted_pretraining_resumes_bit_identically(tmp_path: Path, kill_training_at) -> None:
    data = _patches(24)
    whole = pretrain_simclr(_encoder, data, TINY, tmp_path / "whole", progress=False)
    revive = kill_training_at(wsi_pretrain, epoch=1, batch=1)
    with pytest.raises(KeyboardInterrupt):
        pretrain_simclr(_encoder, data, TINY, tmp_path / "resumed", progress=False)
    revive()
    resumed = pretrain_simclr(_encoder, data, TINY, tmp_path / "resumed", progress=False)
    a, b = (load_encoder(tmp_path / d / "last.pt").state_dict() for d in ("whole", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(whole.drop(columns="train_seconds"), resumed.drop(columns="train_seconds"))


def test_config_errors() -> None:
    for bad, match in ((dict(temperature=0), "temperature"), (dict(min_crop=0), "min_crop"),
                       (dict(min_crop=1.5), "min_crop"), (dict(stain_jitter=-1), "stain_jitter"),
                       (dict(batch_size=1), "batch_size")):
        with pytest.raises(ConfigError, match=match):
            SimCLRConfig(**bad)


def test_conv_stem_keeps_the_token_grid_and_rebuilds() -> None:
    stem, linear = demo_encoder(img_size=64), demo_encoder(img_size=64, conv_stem=0)
    assert stem.n_tokens == linear.n_tokens == 17
    tokens, features = stem(torch.rand(2, 3, 64, 64))
    assert tokens.shape == (2, 17, 192) and torch.allclose(features.norm(dim=1), torch.ones(2))
    assert [m.out_channels for m in stem.vit.patch_embed.backbone if isinstance(m, torch.nn.Conv2d)] == \
        [24, 48, 96, 192]
    rebuilt = PatchEncoder(**stem.hparams)
    assert rebuilt.state_dict().keys() == stem.state_dict().keys()
    with pytest.raises(ValueError, match="divisible by 32"):
        demo_encoder(img_size=64, conv_stem=5)
    with pytest.raises(ValueError, match="conv_stem"):
        demo_encoder(conv_stem=-1)
