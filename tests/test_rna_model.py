"""The RNA cluster-token transformer, its losses and the ALBEF-style LR schedule, on known values."""
from __future__ import annotations

import math

import pytest
import torch

from gbhet_lib.rna.losses import Temperature, cox_partial_likelihood, info_nce, mask_view, reconstruction_loss, \
    survival_mse
from gbhet_lib.rna.model import ClusterTokenTransformer, SurvivalHead
from gbhet_lib.training.schedule import albef_lr

SIZES = [12, 5, 9, 3, 7, 4, 20]  # K = 7, as with the paper's PPI tokens


def _tokens(sizes: list[int], batch: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, n, generator=g) for n in sizes]


# ------------------------------------------------------------------------------------------------------ model
def test_output_shapes_and_unit_projection() -> None:
    torch.manual_seed(0)
    out = ClusterTokenTransformer(SIZES)(_tokens(SIZES, 5))
    assert out.tokens.shape == (5, len(SIZES) + 1, 128)
    assert out.projection.shape == (5, 64)
    torch.testing.assert_close(out.projection.norm(dim=1), torch.ones(5))
    assert [tuple(r.shape) for r in out.reconstruction] == [(5, n) for n in SIZES]
    assert out.attention is None


def test_positions_sized_for_any_number_of_tokens() -> None:
    sizes = [3] * 30  # more than the authors' cap of 24 tokens
    model = ClusterTokenTransformer(sizes, dim=32, heads=4, proj_dim=8)
    assert model.attention_net.pos_embed.shape == (1, 31, 32)
    assert model(_tokens(sizes, 2)).tokens.shape == (2, 31, 32)


def test_attention_weights_are_returned_with_gradients() -> None:
    model = ClusterTokenTransformer(SIZES, dim=32, heads=8, proj_dim=8).eval()
    out = model(_tokens(SIZES, 3), return_attention=True)
    assert out.attention.shape == (3, 8, 8, 8)
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(3, 8, 8))
    out.attention.retain_grad()
    out.projection[:, 0].sum().backward()
    assert out.attention.grad is not None and out.attention.grad.abs().sum() > 0


def test_parameter_names_follow_the_authors() -> None:
    names = set(ClusterTokenTransformer([4, 6]).state_dict())
    assert {"embedder.0.0.weight", "embedder.1.2.running_mean", "attention_net.cls_token", "attention_net.pos_embed",
            "attention_net.attn.qkv.bias", "attention_net.mlp.fc2.weight", "attention_net.norm.weight",
            "decoder.1.weight", "proj_head.weight"} <= names


def test_bad_inputs_are_named() -> None:
    model = ClusterTokenTransformer([4, 6], dim=16, heads=2)
    with pytest.raises(ValueError, match="expected 2 token tensors"):
        model([torch.zeros(2, 4)])
    with pytest.raises(ValueError, match=r"token 1: expected shape \(batch, 6\)"):
        model([torch.zeros(2, 4), torch.zeros(2, 5)])
    with pytest.raises(ValueError, match="multiple of heads"):
        ClusterTokenTransformer([4], dim=10, heads=3)
    with pytest.raises(ValueError, match="at least one gene"):
        ClusterTokenTransformer([4, 0])


def test_frozen_survival_head_keeps_the_encoder_in_eval_mode() -> None:
    encoder = ClusterTokenTransformer([4, 6], dim=16, heads=2)
    model = SurvivalHead(encoder, hidden_dim=8, freeze_encoder=True).train()
    assert model.head.training and not model.encoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert model([torch.zeros(3, 4), torch.zeros(3, 6)]).shape == (3,)
    live = SurvivalHead(ClusterTokenTransformer([4, 6], dim=16, heads=2)).train()
    assert live.encoder.training and all(p.requires_grad for p in live.encoder.parameters())


# ----------------------------------------------------------------------------------------------------- losses
def test_masking_rate_and_reproducibility() -> None:
    x = [torch.rand(200, 500) + 1, torch.rand(200, 300) + 1]  # no zeros before masking
    masked = mask_view(x, 0.3, torch.Generator().manual_seed(1))
    rate = sum(int((m == 0).sum()) for m in masked) / sum(m.numel() for m in masked)
    assert abs(rate - 0.3) < 0.005
    for m, orig in zip(masked, x):
        assert torch.equal(m[m != 0], orig[m != 0])
    again = mask_view(x, 0.3, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(masked, again))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        mask_view(x, 1.0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_of_identical_constant_embeddings_is_log_batch(symmetric: bool) -> None:
    a = torch.nn.functional.normalize(torch.ones(8, 4), dim=1)  # all similarities equal
    torch.testing.assert_close(info_nce(a, a.clone(), 0.005, symmetric), torch.tensor(math.log(8)))


def test_info_nce_one_directional_vs_symmetric() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # logits a·bᵀ = [[1, 1], [0, 0]]: A→B rows are ties (log 2 each); B→A rows are [1, 0] and [1, 0]
    a_to_b = math.log(2)
    b_to_a = 0.5 * ((math.log(1 + math.e) - 1) + math.log(1 + math.e))
    torch.testing.assert_close(info_nce(a, b, 1.0), torch.tensor(a_to_b))
    torch.testing.assert_close(info_nce(a, b, 1.0, symmetric=True), torch.tensor(0.5 * (a_to_b + b_to_a)))


def test_temperature_fixed_or_learnable() -> None:
    fixed = Temperature(0.005)
    assert not list(fixed.parameters()) and math.isclose(float(fixed()), 0.005, rel_tol=1e-6)
    learnable = Temperature(0.07, learnable=True)
    (tau,) = learnable.parameters()
    learnable().backward()
    assert math.isclose(float(learnable().detach()), 0.07, rel_tol=1e-6) and tau.grad is not None
    with pytest.raises(ValueError, match="outside"):
        Temperature(2.0)


def test_reconstruction_sum_over_genes_vs_mean() -> None:
    pred = [torch.zeros(2, 2), torch.zeros(2, 1)]
    target = [torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[2.0], [0.0]])]
    # token 0: row sums 1+4=5 and 9+0=9 → 7; token 1: 4 and 0 → 2; mean over tokens 4.5
    torch.testing.assert_close(reconstruction_loss(pred, target), torch.tensor(4.5))
    # per-gene means: token 0 (1+4+9+0)/4 = 3.5, token 1 (4+0)/2 = 2 → 2.75
    torch.testing.assert_close(reconstruction_loss(pred, target, "mean"), torch.tensor(2.75))
    with pytest.raises(ValueError, match="differ in shape"):
        reconstruction_loss([torch.zeros(2, 3)], [torch.zeros(2, 2)])


def test_cox_partial_likelihood_by_hand_with_ties() -> None:
    risk = torch.tensor([0.1, 0.2, 0.3, 0.4])
    time = torch.tensor([1.0, 2.0, 2.0, 3.0])
    event = torch.tensor([1, 1, 1, 0])
    # events at t=1 (risk set: all) and two tied at t=2 (risk set {1, 2, 3}, Breslow):
    # log(e^.1+e^.2+e^.3+e^.4) = 1.642536, log(e^.2+e^.3+e^.4) = 1.401943
    # −[(0.1 − 1.642536) + (0.2 − 1.401943) + (0.3 − 1.401943)] / 3 = 1.282140
    torch.testing.assert_close(cox_partial_likelihood(risk, time, event), torch.tensor(1.282140))
    torch.testing.assert_close(cox_partial_likelihood(risk[:, None], time, event.bool()), torch.tensor(1.282140))


def test_cox_without_events_is_an_error() -> None:
    with pytest.raises(ValueError, match="no observed event"):
        cox_partial_likelihood(torch.zeros(3), torch.ones(3), torch.zeros(3))


def test_survival_mse() -> None:
    torch.testing.assert_close(survival_mse(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 1.0])),
                               torch.tensor(2.5))


# --------------------------------------------------------------------------------------------------- schedule
def test_warm_up_inside_epoch_zero() -> None:
    # 12 batches, 6 warm-up steps: step 2; the scheduler moves after the optimiser steps of batches 0, 2, 4, ...
    expected = {0: 1e-5, 1: 1e-5, 2: 1e-5, 3: 2.5e-5, 4: 2.5e-5, 5: 4e-5, 11: 8.5e-5}
    for batch, lr in expected.items():
        assert math.isclose(albef_lr(0, batch, 12), lr, rel_tol=1e-12), batch
    # 100 batches: step 16; the peak is set after batch 96
    assert math.isclose(albef_lr(0, 96, 100), 1e-5 + 5 * 1.5e-5, rel_tol=1e-12)
    assert math.isclose(albef_lr(0, 97, 100), 1e-4, rel_tol=1e-12)


def test_cosine_by_epoch_never_reaches_min_lr() -> None:
    assert math.isclose(albef_lr(1, 0, 12), 1e-5 + 4.5e-5 * (1 + math.cos(math.pi / 20)), rel_tol=1e-12)
    assert math.isclose(albef_lr(1, 7, 12), 9.944598e-5, rel_tol=1e-6)  # 1e-5 + 4.5e-5 · 1.987688
    assert math.isclose(albef_lr(10, 3, 12), 5.5e-5, rel_tol=1e-12)
    last = albef_lr(19, 0, 12)
    assert math.isclose(last, 1.0554e-5, rel_tol=1e-4) and last > 1e-5
    assert albef_lr(20, 0, 12) == 1e-5


def test_schedule_edge_cases() -> None:
    assert albef_lr(0, 3, 4) == 1e-5 + 2 * 1.5e-5  # fewer batches than warm-up steps: one step per batch
    assert albef_lr(0, 0, 4, warmup_epochs=0) == 1e-4
    with pytest.raises(ValueError, match="batch_idx"):
        albef_lr(0, 4, 4)
