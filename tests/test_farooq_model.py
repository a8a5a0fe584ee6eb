"""Farooq et al.'s MRI → expression model and its inputs: output shapes (demo and tiny settings), configuration
checks, the two readouts, the head's bias at the gene means, the paper-sized parameter count, the tumour-centred
crop (centred, zero-padded at the volume's edges, z-scored over the brain) and random flips. CPU, tiny sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gbhet_lib.mri.model import FarooqConfig, FarooqNet, count_parameters
from gbhet_lib.mri.preprocess import augment, tumour_centred_crop

TINY = FarooqConfig(input_size=8, cnn_channels=(4,), hidden=8, layers=1, heads=2, mlp=16)


@pytest.mark.parametrize("config, tokens", [(FarooqConfig(), 8), (TINY, 64)], ids=["demo", "tiny"])
def test_output_shapes(config: FarooqConfig, tokens: int) -> None:
    torch.manual_seed(0)
    model = FarooqNet(config, n_genes=5).eval()
    x = torch.randn(2, 4, config.input_size, config.input_size, config.input_size)
    assert config.tokens == tokens  # demo: 16 / 2³ = 2 tokens per side; tiny: 8 / 2 = 4
    assert model(x).shape == (2, 5)
    assert model.token_scores(x).shape == (2, 5, config.tokens)
    assert model.embed(x).shape == (2, config.hidden)
    assert torch.allclose(model(x), model.token_scores(x).mean(-1), atol=1e-6)  # mean readout
    with pytest.raises(ValueError, match="tumour_centred_crop"):
        model(torch.randn(2, 4, 6, 6, 6))


def test_config_checks_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"divisible by 2 \*\* len\(cnn_channels\) = 8.*input_size=32"):
        FarooqConfig(input_size=30)
    with pytest.raises(ValueError, match="hidden=10 must be divisible by heads=4"):
        FarooqConfig(hidden=10)
    with pytest.raises(ValueError, match="readout"):
        FarooqConfig(readout="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout"):
        FarooqConfig(dropout=1.0)
    with pytest.raises(ValueError, match="n_genes"):
        FarooqNet(TINY, 0)


def test_topk_and_mean_readouts_differ_and_bias_starts_at_means() -> None:
    torch.manual_seed(0)
    mean_model = FarooqNet(TINY, 3).eval()
    topk_model = FarooqNet(FarooqConfig(**{**TINY.__dict__, "readout": "topk"}), 3).eval()
    topk_model.load_state_dict(mean_model.state_dict())  # same weights, other readout
    x = torch.randn(2, 4, 8, 8, 8)
    with torch.no_grad():
        a, b = mean_model(x), topk_model(x)
    assert a.shape == b.shape == (2, 3) and not torch.allclose(a, b)
    assert bool((b > a).all())  # the mean of the top k tokens exceeds the mean of all tokens
    means = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    model = FarooqNet(TINY, 3, gene_means=means).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        assert torch.allclose(model(x), torch.from_numpy(means).expand(2, 3))


def test_backward_and_paper_scale() -> None:
    model = FarooqNet(TINY, 4).train()
    model(torch.randn(3, 4, 8, 8, 8)).pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    paper = FarooqConfig.paper()
    assert (paper.tokens, paper.hidden, paper.heads, paper.mlp, paper.layers) == (512, 768, 12, 3072, 8)
    n = count_parameters(FarooqNet(paper, 100))  # construct only
    assert 10_000_000 <= n < 100_000_000, n
    assert FarooqConfig.paper(readout="topk").readout == "topk"


# ------------------------------------------------------------------------------------------------- preprocessing
def sphere_volume(centre: tuple[int, int, int], shape: tuple[int, int, int] = (40, 36, 30),
                  radius: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A 2-channel image (brain everywhere: 1 ± noise, tumour brighter) and the tumour's segmentation."""
    rng = np.random.default_rng(0)
    grid = np.indices(shape)
    inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2
    seg = np.where(inside, 4, 0).astype(np.int16)
    image = 1 + 0.1 * rng.random((2,) + shape).astype(np.float32)
    image[:, inside] += 5
    return image, seg


def test_crop_is_centred_on_the_tumour_and_zero_padded_at_the_edges() -> None:
    image, seg = sphere_volume((20, 18, 15))
    crop = tumour_centred_crop(image, seg, 16)
    assert crop.shape == (2, 16, 16, 16) and crop.dtype == np.float32
    assert crop[0, 8, 8, 8] > 3  # the centre voxel is tumour (z-scored: far above the brain)
    assert float((crop != 0).mean()) == 1.0  # inside the volume: no pad
    # near an edge: x centre 2 → the crop starts 6 voxels before the volume; y centre 33 → ends 5 voxels after
    image, seg = sphere_volume((2, 33, 15))
    crop = tumour_centred_crop(image, seg, 16)
    assert crop[0, 8, 8, 8] > 3
    assert (crop[:, :6] == 0).all() and (crop[:, 6:, :11] != 0).all()
    assert (crop[:, :, 11:] == 0).all()


def test_crop_is_z_scored_over_the_brain() -> None:
    image, seg = sphere_volume((20, 18, 15))
    image[:, :4] = 0  # outside the brain
    image[1] *= 7
    brain = image[0] != 0
    whole = tumour_centred_crop(image, seg, 48)  # the whole volume fits in the crop
    for c in range(2):
        values = whole[c][whole[c] != 0]
        assert values.size == brain.sum()
        assert abs(values.mean()) < 1e-4 and abs(values.std() - 1) < 1e-4
    # "brain": the whole brain's statistics, also in a small crop; "crop": the crop's own
    small = tumour_centred_crop(image, seg, 8)
    expected = (image[0, 16:24, 14:22, 11:19] - image[0][brain].mean()) / image[0][brain].std()
    assert np.allclose(small[0], expected, atol=1e-4)
    own = tumour_centred_crop(image, seg, 8, normalise="crop")
    assert abs(own[0].mean()) < 1e-4 and abs(own[0].std() - 1) < 1e-4


def test_crop_errors() -> None:
    image, seg = sphere_volume((20, 18, 15))
    with pytest.raises(ValueError, match="segmentation is empty"):
        tumour_centred_crop(image, np.zeros_like(seg), 16)
    with pytest.raises(ValueError, match="same spatial shape|one grid"):
        tumour_centred_crop(image, seg[:-1], 16)
    with pytest.raises(ValueError, match=r"\(channels, X, Y, Z\)"):
        tumour_centred_crop(image[0], seg, 16)


def test_augment_flips_each_sample_along_each_axis_at_random() -> None:
    batch = torch.randn(32, 2, 4, 5, 6)
    out = augment(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out, augment(batch, torch.Generator().manual_seed(0)))
    seen = set()
    for i in range(len(batch)):
        matches = [axes for axes in [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
                   if torch.equal(out[i], batch[i:i + 1].flip(axes)[0] if axes else batch[i])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) >= 6  # 32 samples: (nearly) every combination of flips occurs
