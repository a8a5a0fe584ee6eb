"""Fusion losses (spec §5.3, fixes of §10.17): ITC on known values, multi-positive targets, DDP-style keys with an
offset, rolled and similarity-drawn ITM negatives, ITM loss and accuracy by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from gbhet_lib.fusion.losses import itc_chance, itc_loss, itm_accuracy, itm_loss, n_rows, other_lineage_negatives, \
    rolled_negatives, similarity_negatives

TAU = 0.005


def _unit(rows: int, dim: int = 8, seed: int = 0) -> Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def _grouped(groups: list[int], dim: int = 8) -> Tensor:
    """Every row of group g is the basis vector e_g: same-group rows identical, other groups orthogonal."""
    return torch.eye(dim)[groups]


# ------------------------------------------------------------------------------------------------------ ITC
@pytest.mark.parametrize("batch", [2, 5, 16])
def test_itc_of_identical_rows_is_log_batch(batch: int) -> None:
    same = F.normalize(torch.ones(batch, 8), dim=1)
    assert itc_loss(same, same).item() == pytest.approx(math.log(batch), rel=1e-6)
    assert itc_loss(same, same, symmetric=True).item() == pytest.approx(math.log(batch), rel=1e-6)
    assert itc_chance(None, batch) == pytest.approx(math.log(batch))


def test_itc_one_hot_is_cross_entropy_image_to_rna() -> None:
    image, rna = _unit(6, seed=1), _unit(6, seed=2)
    logits = image @ rna.T / TAU
    expected = F.cross_entropy(logits, torch.arange(6))
    torch.testing.assert_close(itc_loss(image, rna), expected)
    torch.testing.assert_close(itc_loss(image, rna, temperature=0.1), F.cross_entropy(image @ rna.T / 0.1,
                                                                                      torch.arange(6)))
    assert not torch.allclose(itc_loss(image, rna), F.cross_entropy(logits.T, torch.arange(6)))  # one direction


def test_symmetric_itc_is_the_mean_of_both_directions() -> None:
    image, rna = _unit(5, seed=3), _unit(5, seed=4)
    logits = image @ rna.T / TAU
    both = 0.5 * (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5)))
    torch.testing.assert_close(itc_loss(image, rna, symmetric=True), both)
    reversed_roles = itc_loss(rna, image)
    torch.testing.assert_close(itc_loss(image, rna, symmetric=True), 0.5 * (itc_loss(image, rna) + reversed_roles))


def test_itc_tensor_temperature_carries_a_gradient() -> None:
    image, rna = _unit(4, seed=5), _unit(4, seed=6)
    tau = torch.tensor(0.07, requires_grad=True)
    itc_loss(image, rna, tau).backward()
    assert tau.grad is not None and tau.grad.item() != 0


def test_multi_positive_targets_reward_same_lineage_embeddings() -> None:
    groups = [0, 0, 0, 1, 1, 2]
    g = torch.tensor(groups)
    grouped = _grouped(groups)  # every pair of one lineage maps to the same point
    distinct = torch.eye(8)[: len(groups)]  # each image matches its own RNA only (one-hot perfect)
    sizes = torch.tensor([3.0, 3, 3, 2, 2, 1])
    floor = float(torch.log(sizes).mean())  # the entropy of the soft targets: the lowest possible loss
    assert itc_loss(grouped, grouped, groups=g).item() == pytest.approx(floor, abs=1e-5)
    assert itc_loss(grouped, grouped, groups=g) < itc_loss(distinct, distinct, groups=g) - 1.0
    # the paper's one-hot targets prefer the opposite: they push apart pairs of one lineage
    assert itc_loss(distinct, distinct).item() == pytest.approx(0.0, abs=1e-5)
    assert itc_loss(grouped, grouped).item() == pytest.approx(floor, abs=1e-5)
    assert itc_loss(distinct, distinct) < itc_loss(grouped, grouped) - 0.5
    # with every lineage distinct, the soft targets are the diagonal
    image, rna = _unit(5, seed=7), _unit(5, seed=8)
    torch.testing.assert_close(itc_loss(image, rna, groups=torch.arange(5)), itc_loss(image, rna))


def test_multi_positive_targets_spread_mass_evenly_by_hand() -> None:
    image, rna = _unit(4, seed=9), _unit(4, seed=10)
    g = torch.tensor([7, 7, 3, 7])
    log_p = F.log_softmax(image @ rna.T / TAU, dim=1)
    per_row = [-(log_p[0, 0] + log_p[0, 1] + log_p[0, 3]) / 3, -(log_p[1, 0] + log_p[1, 1] + log_p[1, 3]) / 3,
               -log_p[2, 2], -(log_p[3, 0] + log_p[3, 1] + log_p[3, 3]) / 3]
    torch.testing.assert_close(itc_loss(image, rna, groups=g), torch.stack(per_row).mean())


def test_itc_chance_is_the_loss_of_uninformative_embeddings() -> None:
    """itc_chance's docstring: "The ITC loss of embeddings that carry no information (all similarities equal)"."""
    same = F.normalize(torch.ones(6, 8), dim=1)
    assert itc_chance(None, 6) == pytest.approx(itc_loss(same, same).item(), rel=1e-6)
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    uninformative = itc_loss(same, same, groups=groups).item()
    assert uninformative == pytest.approx(math.log(6), rel=1e-6)  # soft targets against a uniform row
    assert itc_chance(groups, 6) == pytest.approx(uninformative, rel=1e-6)


def test_itc_keys_with_offset_equal_the_rows_of_the_global_matrix() -> None:
    image, rna = _unit(3, seed=11), _unit(3, seed=12)
    torch.testing.assert_close(itc_loss(image, rna, image_keys=image, rna_keys=rna, offset=0), itc_loss(image, rna))
    other_image, other_rna = _unit(5, seed=13), _unit(5, seed=14)
    all_image, all_rna = torch.cat([other_image, image]), torch.cat([other_rna, rna])
    logits = all_image @ all_rna.T / TAU
    targets = torch.arange(5, 8)
    by_hand = F.cross_entropy(logits[5:], targets)
    got = itc_loss(image, rna, image_keys=all_image, rna_keys=all_rna, offset=5)
    torch.testing.assert_close(got, by_hand)
    by_hand_symmetric = 0.5 * (by_hand + F.cross_entropy(logits.T[5:], targets))
    got_symmetric = itc_loss(image, rna, symmetric=True, image_keys=all_image, rna_keys=all_rna, offset=5)
    torch.testing.assert_close(got_symmetric, by_hand_symmetric)
    # with lineages: the batch's rows of the global soft-target loss
    groups, other_groups = torch.tensor([1, 0, 1]), torch.tensor([0, 1, 2, 1, 0])
    all_groups = torch.cat([other_groups, groups])
    same = (groups[:, None] == all_groups[None, :]).float()
    soft = (-(same / same.sum(1, keepdim=True)) * F.log_softmax(logits[5:], dim=1)).sum(1).mean()
    got_groups = itc_loss(image, rna, groups=groups, image_keys=all_image, rna_keys=all_rna,
                          key_groups=all_groups, offset=5)
    torch.testing.assert_close(got_groups, soft)


def test_itc_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        itc_loss(_unit(3), _unit(4))
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        itc_loss(torch.ones(8), torch.ones(8))


# ------------------------------------------------------------------------------------------- ITM negatives
def test_rolled_negatives_are_the_batch_rolled_by_one() -> None:
    (a_image, a_rna), (b_image, b_rna) = rolled_negatives(4)
    assert a_image.tolist() == [0, 1, 2, 3] and a_rna.tolist() == [3, 0, 1, 2]
    assert b_image.tolist() == [3, 0, 1, 2] and b_rna.tolist() == [0, 1, 2, 3]
    assert n_rows(rolled_negatives(4)) == 8


def test_other_lineage_negatives_skip_same_lineage_neighbours_by_hand() -> None:
    groups = torch.tensor([0, 0, 1, 1, 1, 2])
    (image_rows, rna_rows), (image_other, rna_own) = other_lineage_negatives(groups)
    # row 0 ← 5 (wraps), 1 ← 5 (0 shares its lineage), 2 ← 1, 3 ← 1, 4 ← 1, 5 ← 4
    assert image_rows.tolist() == list(range(6)) and rna_rows.tolist() == [5, 5, 1, 1, 1, 4]
    assert image_other.tolist() == [5, 5, 1, 1, 1, 4] and rna_own.tolist() == list(range(6))


def test_other_lineage_negatives_are_never_true_matches_and_deterministic() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        groups = torch.randint(0, 3, (int(torch.randint(2, 20, (1,), generator=generator)),), generator=generator)
        sets = other_lineage_negatives(groups)
        assert [[t.tolist() for t in pair] for pair in sets] == \
            [[t.tolist() for t in pair] for pair in other_lineage_negatives(groups.clone())]
        for image_rows, rna_rows in sets:
            assert (groups[image_rows] != groups[rna_rows]).all()
        assert n_rows(sets) == (2 * len(groups) if len(groups.unique()) > 1 else 0)


def test_other_lineage_negatives_equal_rolled_when_all_lineages_differ() -> None:
    for groups in (torch.arange(5), torch.tensor([0, 1, 0, 1]), torch.tensor([3, 1, 2, 0, 1, 2])):
        got, rolled = other_lineage_negatives(groups), rolled_negatives(len(groups))
        assert all(torch.equal(a, b) for pair, ref in zip(got, rolled) for a, b in zip(pair, ref))


def test_other_lineage_negatives_of_one_lineage_are_empty() -> None:
    for groups in ([4, 4, 4], [4], []):
        sets = other_lineage_negatives(torch.tensor(groups, dtype=torch.long))
        assert len(sets) == 2 and n_rows(sets) == 0 and all(len(a) == len(b) == 0 for a, b in sets)


def test_similarity_negatives_never_pair_one_lineage() -> None:
    groups = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 0])
    image, rna = _unit(12, seed=15), _unit(12, seed=16)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        sets = similarity_negatives(image, rna, groups, temperature=1.0, generator=generator)
        assert len(sets) == 2 and n_rows(sets) == 24
        (image_rows, rna_drawn), (image_drawn, rna_rows) = sets
        assert image_rows.tolist() == list(range(12)) and rna_rows.tolist() == list(range(12))
        assert (groups[image_rows] != groups[rna_drawn]).all()
        assert (groups[image_drawn] != groups[rna_rows]).all()


def test_similarity_negatives_drop_rows_without_another_lineage() -> None:
    image, rna = _unit(4, seed=17), _unit(4, seed=18)
    sets = similarity_negatives(image, rna, torch.tensor([5, 5, 5, 5]), TAU, torch.Generator().manual_seed(0))
    assert n_rows(sets) == 0
    assert all(len(a) == 0 and len(b) == 0 for a, b in sets)


def test_similarity_negatives_are_reproducible_per_seed() -> None:
    groups = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    image, rna = _unit(8, seed=19), _unit(8, seed=20)

    def draw(seed: int) -> list[list[int]]:
        sets = similarity_negatives(image, rna, groups, 1.0, torch.Generator().manual_seed(seed))
        return [t.tolist() for pair in sets for t in pair]

    assert draw(3) == draw(3)
    assert any(draw(3) != draw(s) for s in range(4, 10))


def test_similarity_negatives_with_tiny_tau_pick_the_most_similar_other_lineage() -> None:
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    image, rna = _unit(6, seed=21), _unit(6, seed=22)
    rna = torch.cat([rna[:1], image[0:1], rna[2:]])  # RNA 1 is image 0's closest, but of its own lineage
    sim = image @ rna.T
    other = groups[:, None] != groups[None, :]
    best_rna = sim.masked_fill(~other, -2).argmax(dim=1)
    best_image = sim.T.masked_fill(~other, -2).argmax(dim=1)
    assert sim[0].argmax().item() == 1 and best_rna[0].item() != 1
    for seed in range(3):
        (_, rna_drawn), (image_drawn, _) = similarity_negatives(image, rna, groups, 1e-4,
                                                                torch.Generator().manual_seed(seed))
        assert rna_drawn.tolist() == best_rna.tolist()
        assert image_drawn.tolist() == best_image.tolist()


def test_similarity_negatives_survive_the_paper_temperature() -> None:
    groups = torch.tensor([0, 1, 0, 1])
    image = F.normalize(torch.tensor([[1.0, 0], [0, 1], [1, 0.01], [0.01, 1]]), dim=1)
    sets = similarity_negatives(image, image, groups, TAU, torch.Generator().manual_seed(0))
    (_, rna_drawn), (image_drawn, _) = sets
    assert (groups[rna_drawn] != groups).all() and (groups[image_drawn] != groups).all()


# ----------------------------------------------------------------------------------------------------- ITM
def test_itm_loss_and_accuracy_by_hand() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])  # labels 1, 0, 0
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 3
    assert itm_loss(logits, 1).item() == pytest.approx(expected, rel=1e-6)
    assert itm_accuracy(logits, 1).item() == pytest.approx(2 / 3)
    assert itm_accuracy(logits, 3).item() == pytest.approx(2 / 3)  # all labelled matches: rows 0 and 2 right
    assert itm_loss(torch.zeros(6, 2), 2).item() == pytest.approx(math.log(2), rel=1e-6)
    half = itm_loss(torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.bfloat16), 1)
    assert half.dtype == torch.float32
