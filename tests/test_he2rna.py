"""HE2RNA on tile features: top-k aggregation per gene over the valid tiles only (checked by hand), the mean over
ks in evaluation, the output bias at the gene means, the output ReLU, padding of bags, and that it learns a gene
that is the maximum of a tile feature. Tiny models on the CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gbhet_lib.wsi.he2rna import HE2RNA, HE2RNA_KS, pad_bags, topk_means


def identity_model(n: int = 2, ks: tuple[int, ...] = HE2RNA_KS, nonnegative: bool = False) -> HE2RNA:
    """A linear per-tile model whose gene scores are the tile features themselves."""
    model = HE2RNA(n, n, hidden=(), dropout=0.0, ks=ks, nonnegative=nonnegative)
    with torch.no_grad():
        model.out.weight.copy_(torch.eye(n)[:, :, None])
        model.out.bias.zero_()
    return model


# two genes over four tiles; the fourth tile is a pad with scores that would win if it counted
X = torch.tensor([[[1.0, 5.0, 3.0, 100.0],
                   [-1.0, -2.0, -3.0, 50.0]]])
MASK = torch.tensor([[True, True, True, False]])


def test_topk_by_hand_ignores_pads_and_clips_k() -> None:
    got = topk_means(X, MASK, (1, 2, 3, 10))[:, 0]
    expected = torch.tensor([[5.0, -1.0], [4.0, -1.5], [3.0, -2.0], [3.0, -2.0]])  # k=10: the 3 valid tiles
    assert torch.allclose(got, expected)
    model = identity_model().eval()
    assert torch.allclose(model(X, MASK, k=1), torch.tensor([[5.0, -1.0]]))  # k = 1: the maximum
    assert torch.allclose(model(X, MASK, k=3), torch.tensor([[3.0, -2.0]]))  # k = N: the mean of valid tiles
    assert torch.allclose(model(X, None, k=1), torch.tensor([[100.0, 50.0]]))  # no mask: the pad counts
    # bags of different lengths in one batch: each is clipped to its own valid tiles
    x2 = torch.cat([X, torch.tensor([[[2.0, 4.0, 6.0, 8.0], [0.0, 0.0, 0.0, 1.0]]])])
    m2 = torch.cat([MASK, torch.tensor([[True, True, False, False]])])
    assert torch.allclose(topk_means(x2, m2, (5,))[0], torch.tensor([[3.0, -2.0], [3.0, 0.0]]))


def test_evaluation_averages_over_ks_and_training_draws_one() -> None:
    ks = (1, 2, 3)
    model = identity_model(ks=ks).eval()
    per_k = torch.stack([model(X, MASK, k=k) for k in ks])
    assert torch.allclose(model(X, MASK), per_k.mean(0))
    assert torch.allclose(model(X, MASK), torch.tensor([[4.0, -1.5]]))
    model.train()
    generator = torch.Generator().manual_seed(0)
    drawn = [model(X, MASK, generator=generator) for _ in range(30)]
    assert all(any(torch.allclose(d, p) for p in per_k) for d in drawn)
    assert len({tuple(d.flatten().tolist()) for d in drawn}) == 3  # every k is drawn sometimes


def test_bias_starts_at_the_gene_means_and_relu_clips() -> None:
    means = np.array([0.5, 2.0, -1.0], dtype=np.float32)
    for nonnegative in (True, False):
        model = HE2RNA(6, 3, hidden=(8, 8), gene_means=means, nonnegative=nonnegative)
        assert torch.allclose(model.out.bias, torch.from_numpy(means))
        with torch.no_grad():
            model.out.weight.zero_()
        x, mask = torch.randn(4, 6, 9), torch.rand(4, 9) < 0.7
        mask[:, 0] = True
        expected = torch.from_numpy(np.maximum(means, 0) if nonnegative else means).expand(4, 3)
        assert torch.allclose(model.eval()(x, mask), expected)
        assert torch.allclose(model.train()(x, mask), expected)
    with pytest.raises(ValueError, match="gene_means has 2 values for 3 genes"):
        HE2RNA(6, 3, gene_means=np.zeros(2))
    # a linear model with a negative score: ReLU at the output only when nonnegative
    assert float(identity_model(nonnegative=True).eval()(X, MASK, k=1).detach()[0, 1]) == 0.0


def test_errors_name_the_fix() -> None:
    model = HE2RNA(4, 2, hidden=(8,))
    with pytest.raises(ValueError, match="pad_bags"):
        model(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="no valid tile"):
        model(torch.randn(2, 4, 3), torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="ks="):
        HE2RNA(4, 2, ks=(0, 2))


def test_pad_bags() -> None:
    bags = [np.arange(6, dtype=np.float32).reshape(3, 2), -np.ones((1, 2), np.float32)]
    x, mask = pad_bags(bags)
    assert x.shape == (2, 2, 3) and mask.tolist() == [[True, True, True], [True, False, False]]
    assert torch.equal(x[0], torch.from_numpy(bags[0].T)) and x[1, :, 0].tolist() == [-1.0, -1.0]
    assert float(x[1, :, 1:].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="different feature counts"):
        pad_bags([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="non-empty"):
        pad_bags([np.ones((2, 3)), np.ones((0, 3))])


def test_learns_a_gene_that_is_the_maximum_of_a_tile_feature() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(int(rng.integers(3, 12)), 5)).astype(np.float32) for _ in range(64)]
    x, mask = pad_bags(bags)
    y = torch.tensor([[b[:, 0].max(), -b[:, 1].max()] for b in bags])  # gene 0: max of feature 0, gene 1: -max
    model = HE2RNA(5, 2, hidden=(32,), dropout=0.0, ks=(1, 2, 5), nonnegative=False, gene_means=y.mean(0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss() -> float:
        with torch.no_grad():
            return float(nn.functional.mse_loss(model.eval()(x, mask, k=1), y))

    before = loss()
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.mse_loss(model.train()(x, mask, k=1), y).backward()
        optimiser.step()
    assert loss() < 0.2 * before, (before, loss())
