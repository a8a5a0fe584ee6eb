"""The fusion model (spec §5.1–5.2): co-attention shapes and maps, equality with a naive re-implementation of the
authors' three co-attention passes, the SDPA path, and the frozen-encoder variant (spec §5.4, §10.21)."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from gbhet_lib.fusion.losses import rolled_negatives
from gbhet_lib.fusion.model import CoAttention, FusionModel
from gbhet_lib.fusion.train import FusionTrainable, build_model, fusion_losses, variant_config
from gbhet_lib.rna.losses import Temperature
from gbhet_lib.rna.model import ClusterTokenTransformer
from gbhet_lib.wsi.encoder import demo_encoder

SIZES = [5, 7]  # K = 2 RNA tokens
IMG = 32  # demo ViT-Tiny/16 at 32 px: 4 patches + CLS
T = 5
D_IMG, D_RNA, DIM, HEADS, PROJ = 192, 32, 64, 4, 16
B = 4


def _encoders(seed: int = 0) -> tuple[torch.nn.Module, ClusterTokenTransformer]:
    torch.manual_seed(seed)
    return demo_encoder(img_size=IMG, proj_dim=16), ClusterTokenTransformer(SIZES, dim=D_RNA, heads=4)


def _model(seed: int = 0, **kwargs: object) -> FusionModel:
    image, rna = _encoders(seed)
    return FusionModel(image, rna, dim=DIM, heads=HEADS, proj_dim=PROJ, **kwargs)


def _inputs(batch: int = B, seed: int = 1) -> tuple[Tensor, list[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, IMG, IMG, generator=g), [torch.randn(batch, n, generator=g) for n in SIZES]


def _uint8_batch(batch: int = B, seed: int = 2) -> tuple[Tensor, list[Tensor], Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, IMG, IMG, 3), generator=g, dtype=torch.uint8)
    return images, [torch.randn(batch, n, generator=g) for n in SIZES], torch.tensor([0, 0, 1, 2])[:batch]


# ------------------------------------------------------------------------------------------ naive reference
def _naive_coattention(ca: CoAttention, x: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """The authors' way: project both sides anew, every image query, explicit softmax."""
    b, t, _ = x.shape
    k1 = r.shape[1]
    h, d = ca.heads, ca.dim // ca.heads
    qx, kx, vx = ca.img_qkv(x).reshape(b, t, 3, h, d).permute(2, 0, 3, 1, 4)
    qr, kr, vr = ca.rna_qkv(r).reshape(b, k1, 3, h, d).permute(2, 0, 3, 1, 4)
    a_ri = torch.softmax(qr @ kx.transpose(-2, -1) / d ** 0.5, dim=-1)
    r_new = ca.rna_norm(r + ca.rna_proj((a_ri @ vx).transpose(1, 2).reshape(b, k1, h * d)))
    a_ir = torch.softmax(qx @ kr.transpose(-2, -1) / d ** 0.5, dim=-1)
    x_new = ca.img_norm(x + ca.img_proj((a_ir @ vr).transpose(1, 2).reshape(b, t, h * d)))
    return x_new, r_new


def _naive_forward(model: FusionModel, pixels: Tensor, rna: list[Tensor]) -> tuple[Tensor, Tensor]:
    """ITM logits of (X, R), (X, roll R), (roll X, R), in that order, and the positives' fused RNA tokens."""
    x = model.image_encoder(pixels)[0]
    r = model.rna_encoder.encode(rna)[0]
    passes = [(x, r), (x, torch.roll(r, 1, dims=0)), (torch.roll(x, 1, dims=0), r)]
    fused = [_naive_coattention(model.coattention, xi, ri) for xi, ri in passes]
    logits = torch.cat([model.itm_head(torch.cat([xf[:, 0], rf[:, 0]], dim=-1)) for xf, rf in fused])
    return logits, fused[0][1]


def _weights(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _coattention_grads(model: FusionModel) -> dict[str, Tensor]:
    return {name: p.grad.clone() for name, p in model.coattention.named_parameters()}


# ------------------------------------------------------------------------------------------ co-attention
def test_coattention_shapes_and_stochastic_maps() -> None:
    torch.manual_seed(0)
    ca = CoAttention(image_dim=D_IMG, rna_dim=D_RNA, dim=DIM, heads=HEADS)
    x, r = torch.randn(3, T, D_IMG), torch.randn(3, len(SIZES) + 1, D_RNA)
    out = ca(x, r, return_attention=True)
    assert out.image.shape == (3, T, D_IMG)
    assert out.rna.shape == (3, len(SIZES) + 1, D_RNA)
    assert out.image_attention.shape == (3, HEADS, T, len(SIZES) + 1)
    assert out.rna_attention.shape == (3, HEADS, len(SIZES) + 1, T)
    torch.testing.assert_close(out.image_attention.sum(-1), torch.ones(3, HEADS, T))
    torch.testing.assert_close(out.rna_attention.sum(-1), torch.ones(3, HEADS, len(SIZES) + 1))
    assert (out.image_attention >= 0).all() and (out.rna_attention >= 0).all()
    assert ca(x, r).image_attention is None


def test_coattention_maps_give_gradcam_gradients() -> None:
    torch.manual_seed(0)
    ca = CoAttention(image_dim=D_IMG, rna_dim=D_RNA, dim=DIM, heads=HEADS)
    x, r = torch.randn(2, T, D_IMG), torch.randn(2, len(SIZES) + 1, D_RNA)
    out = ca(x, r, return_attention=True)
    out.image_attention.retain_grad()
    (out.image[:, 0] * _weights((2, D_IMG), 3)).sum().backward()
    grad = out.image_attention.grad
    assert grad is not None and grad.shape == out.image_attention.shape
    assert grad[:, :, 0].abs().sum() > 0  # the CLS query's map feeds the CLS output
    assert grad[:, :, 1:].abs().sum() == 0  # the other queries' maps do not


def test_coattention_rejects_mismatched_batches_and_heads() -> None:
    ca = CoAttention(image_dim=D_IMG, rna_dim=D_RNA, dim=DIM, heads=HEADS)
    with pytest.raises(ValueError, match="2 and 3 rows"):
        ca(torch.zeros(2, T, D_IMG), torch.zeros(3, 3, D_RNA))
    with pytest.raises(ValueError, match="multiple of heads"):
        CoAttention(D_IMG, D_RNA, dim=30, heads=4)
    with pytest.raises(ValueError, match="image_queries"):
        ca.attend(torch.zeros(1, T, D_IMG), torch.zeros(1, 3, D_RNA),
                  *ca.project(torch.zeros(1, T, D_IMG), torch.zeros(1, 3, D_RNA)), image_queries="some")
    with pytest.raises(ValueError, match="frozen_mode"):
        _model(freeze_encoders=True, frozen_mode="half")


def test_sdpa_path_equals_explicit_softmax_path() -> None:
    torch.manual_seed(0)
    ca = CoAttention(image_dim=D_IMG, rna_dim=D_RNA, dim=DIM, heads=HEADS)
    x, r = torch.randn(3, T, D_IMG), torch.randn(3, len(SIZES) + 1, D_RNA)
    fast, explicit = ca(x, r, return_attention=False), ca(x, r, return_attention=True)
    torch.testing.assert_close(fast.image, explicit.image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.rna, explicit.rna, atol=1e-5, rtol=1e-5)
    model = _model().eval()
    pixels, rna = _inputs()
    a = model(pixels, rna, rolled_negatives(B), image_queries="all", return_attention=False)
    b = model(pixels, rna, rolled_negatives(B), image_queries="all", return_attention=True)
    torch.testing.assert_close(a.itm_logits, b.itm_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.fused.image, b.fused.image, atol=1e-5, rtol=1e-5)
    assert a.fused.image_attention is None and b.fused.image_attention.shape == (B, HEADS, T, len(SIZES) + 1)


def test_coattention_equals_naive_single_pass() -> None:
    torch.manual_seed(0)
    ca = CoAttention(image_dim=D_IMG, rna_dim=D_RNA, dim=DIM, heads=HEADS)
    x, r = torch.randn(3, T, D_IMG), torch.randn(3, len(SIZES) + 1, D_RNA)
    out = ca(x, r)
    x_ref, r_ref = _naive_coattention(ca, x, r)
    torch.testing.assert_close(out.image, x_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.rna, r_ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ fusion model
def test_fusion_forward_shapes_and_unit_embeddings() -> None:
    model = _model().eval()
    pixels, rna = _inputs()
    out = model(pixels, rna, rolled_negatives(B))
    assert out.image_embedding.shape == (B, PROJ) and out.rna_embedding.shape == (B, PROJ)
    torch.testing.assert_close(out.image_embedding.norm(dim=1), torch.ones(B))
    torch.testing.assert_close(out.rna_embedding.norm(dim=1), torch.ones(B))
    assert out.itm_logits.shape == (3 * B, 2) and out.itm_logits.dtype == torch.float32
    assert [tuple(x.shape) for x in out.reconstruction] == [(B, n) for n in SIZES]
    assert out.fused.image.shape == (B, 1, D_IMG)  # training default: the CLS query only
    assert out.fused.rna.shape == (B, len(SIZES) + 1, D_RNA)
    assert out.image_tokens.shape == (B, T, D_IMG) and out.rna_tokens.shape == (B, len(SIZES) + 1, D_RNA)
    assert len(out.negatives) == 2
    bare = model(pixels, rna, reconstruct=False)
    assert bare.itm_logits is None and bare.reconstruction == [] and bare.negatives == ()


def test_fusion_equals_naive_three_pass_forward_and_gradients() -> None:
    model = _model().eval()
    pixels, rna = _inputs()
    w_logits, w_rna = _weights((3 * B, 2), 4), _weights((B, len(SIZES) + 1, D_RNA), 5)

    out = model(pixels, rna, negatives=rolled_negatives(B), image_queries="cls")
    ((out.itm_logits * w_logits).sum() + (out.fused.rna * w_rna).sum()).backward()
    fast_grads = _coattention_grads(model)
    model.zero_grad()

    logits, fused_rna = _naive_forward(model, pixels, rna)
    ((logits * w_logits).sum() + (fused_rna * w_rna).sum()).backward()
    naive_grads = _coattention_grads(model)

    torch.testing.assert_close(out.itm_logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.fused.rna, fused_rna, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.reconstruction[1], model.rna_encoder.decoder[1](fused_rna[:, 2]),
                               atol=1e-5, rtol=1e-5)
    assert set(fast_grads) == {"img_qkv.weight", "rna_qkv.weight", "img_proj.weight", "img_proj.bias",
                               "rna_proj.weight", "rna_proj.bias", "img_norm.weight", "img_norm.bias",
                               "rna_norm.weight", "rna_norm.bias"}
    for name, grad in fast_grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, naive_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_negatives_follow_the_rolled_order() -> None:
    """Logits B..2B are (image i, RNA i−1); 2B..3B are (image i−1, RNA i): swapping the sets changes them."""
    model = _model().eval()
    pixels, rna = _inputs()
    rolled = model(pixels, rna, rolled_negatives(B)).itm_logits
    swapped = model(pixels, rna, rolled_negatives(B)[::-1]).itm_logits
    torch.testing.assert_close(rolled[:B], swapped[:B])
    torch.testing.assert_close(rolled[B:2 * B], swapped[2 * B:])
    assert not torch.allclose(rolled[B:2 * B], rolled[2 * B:], atol=1e-4)


def test_all_image_queries_give_the_same_cls_row() -> None:
    model = _model().eval()
    pixels, rna = _inputs()
    cls = model(pixels, rna, rolled_negatives(B), image_queries="cls")
    full = model(pixels, rna, rolled_negatives(B), image_queries="all", return_attention=True)
    assert full.fused.image.shape == (B, T, D_IMG)
    torch.testing.assert_close(full.fused.image[:, :1], cls.fused.image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.itm_logits, cls.itm_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.fused.rna, cls.fused.rna, atol=1e-5, rtol=1e-5)
    x_ref, _ = _naive_coattention(model.coattention, full.image_tokens, full.rna_tokens)
    torch.testing.assert_close(full.fused.image, x_ref, atol=1e-5, rtol=1e-5)


def test_fusion_gradcam_map_gets_a_gradient() -> None:
    model = _model().eval()
    pixels, rna = _inputs()
    out = model(pixels, rna, image_queries="all", return_attention=True, reconstruct=False)
    a_ir = out.fused.image_attention
    assert a_ir.shape == (B, HEADS, T, len(SIZES) + 1)
    torch.testing.assert_close(out.fused.rna_attention.sum(-1), torch.ones(B, HEADS, len(SIZES) + 1))
    a_ir.retain_grad()
    model.itm_logits(out.fused)[:, 1].sum().backward()
    assert a_ir.grad is not None and a_ir.grad.shape == a_ir.shape and a_ir.grad.abs().sum() > 0


def test_callable_negatives_get_the_itc_embeddings() -> None:
    model = _model().eval()
    pixels, rna = _inputs()
    seen: list[tuple[Tensor, Tensor]] = []

    def pick(image: Tensor, rna_embedding: Tensor) -> list[tuple[Tensor, Tensor]]:
        seen.append((image, rna_embedding))
        return [(torch.tensor([0, 1]), torch.tensor([2, 3]))]

    out = model(pixels, rna, negatives=pick)
    torch.testing.assert_close(seen[0][0], out.image_embedding)
    torch.testing.assert_close(seen[0][1], out.rna_embedding)
    assert out.itm_logits.shape == (B + 2, 2)
    x_ref, r_ref = _naive_coattention(model.coattention, out.image_tokens[[0, 1]], out.rna_tokens[[2, 3]])
    expected = model.itm_head(torch.cat([x_ref[:, 0], r_ref[:, 0]], dim=-1))
    torch.testing.assert_close(out.itm_logits[B:], expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------ frozen variant
def test_unused_encoder_heads_never_train() -> None:
    model = _model()
    assert not any(p.requires_grad for p in model.image_encoder.vision_proj.parameters())
    assert not any(p.requires_grad for p in model.rna_encoder.proj_head.parameters())
    assert all(p.requires_grad for p in model.image_encoder.vit.parameters())
    assert all(p.requires_grad for p in model.rna_encoder.attention_net.parameters())
    frozen = _model(freeze_encoders=True)
    assert not any(p.requires_grad for p in frozen.image_encoder.parameters())
    assert not any(p.requires_grad for p in frozen.rna_encoder.parameters())
    assert all(p.requires_grad for p in frozen.coattention.parameters())


def _frozen_parts(frozen_mode: str) -> tuple[FusionTrainable, object]:
    config = variant_config("frozen", coattention_dim=DIM, heads=HEADS, proj_dim=PROJ, batch_size=B,
                            frozen_mode=frozen_mode)
    image, rna = _encoders()
    torch.manual_seed(0)
    fusion = build_model(config, image, rna)
    return FusionTrainable(fusion, Temperature(config.temperature)), config


def _state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _train_step(parts: FusionTrainable, config: object) -> dict[str, Tensor]:
    parts.train()
    optimiser = torch.optim.AdamW([p for p in parts.parameters() if p.requires_grad], lr=1e-2)
    images, rna, lineage = _uint8_batch()
    losses = fusion_losses(parts, parts, images, rna, lineage, config, torch.device("cpu"))
    optimiser.zero_grad()
    losses["loss"].backward()
    optimiser.step()
    return losses


def test_frozen_variant_keeps_encoders_and_batchnorm_statistics_fixed() -> None:
    parts, config = _frozen_parts("eval")
    assert config.freeze_encoders and config.c_rec == 1.0
    fusion = parts.fusion
    parts.train()
    assert fusion.training and fusion.coattention.training and fusion.itm_head.training
    assert not fusion.image_encoder.training and not fusion.rna_encoder.training
    assert not any(m.training for m in fusion.rna_encoder.modules())
    image_before, rna_before = _state(fusion.image_encoder), _state(fusion.rna_encoder)
    coattention_before = _state(fusion.coattention)
    running_mean = fusion.rna_encoder.embedder[0][2].running_mean.clone()

    losses = _train_step(parts, config)

    assert {"loss", "itc", "itm", "itm_accuracy", "reconstruction", "temperature"} <= set(losses)
    assert torch.isfinite(losses["loss"])
    for name, value in _state(fusion.image_encoder).items():
        assert torch.equal(value, image_before[name]), name
    for name, value in _state(fusion.rna_encoder).items():
        assert torch.equal(value, rna_before[name]), name  # weights and BatchNorm running statistics
    assert torch.equal(fusion.rna_encoder.embedder[0][2].running_mean, running_mean)
    assert all(p.grad is None for p in fusion.image_encoder.parameters())
    assert all(p.grad is None for p in fusion.rna_encoder.parameters())
    changed = [k for k, v in _state(fusion.coattention).items() if not torch.equal(v, coattention_before[k])]
    assert "img_qkv.weight" in changed and "rna_qkv.weight" in changed and "rna_proj.weight" in changed


def test_frozen_train_mode_lets_batchnorm_statistics_drift_as_the_paper() -> None:
    parts, config = _frozen_parts("train")
    fusion = parts.fusion
    parts.train()
    assert fusion.image_encoder.training and fusion.rna_encoder.training
    rna_before = _state(fusion.rna_encoder)
    _train_step(parts, config)
    state = _state(fusion.rna_encoder)
    assert not torch.equal(state["embedder.0.2.running_mean"], rna_before["embedder.0.2.running_mean"])
    assert int(state["embedder.0.2.num_batches_tracked"]) == int(rna_before["embedder.0.2.num_batches_tracked"]) + 1
    for name, p in fusion.rna_encoder.named_parameters():
        assert p.grad is None and torch.equal(p.detach(), rna_before[name]), name  # weights still frozen


def test_unfrozen_variant_trains_encoders_but_not_their_unused_heads() -> None:
    config = variant_config("best", coattention_dim=DIM, heads=HEADS, proj_dim=PROJ, batch_size=B)
    image, rna = _encoders()
    parts = FusionTrainable(build_model(config, image, rna), Temperature(config.temperature))
    fusion = parts.fusion
    assert fusion.rna_encoder is not rna  # build_model copies
    vit_before = _state(fusion.image_encoder.vit)
    head_before = _state(fusion.image_encoder.vision_proj)
    losses = _train_step(parts, config)
    assert "reconstruction" not in losses  # c_rec = 0 in the best run
    assert fusion.image_encoder.training and fusion.rna_encoder.training
    assert not torch.equal(_state(fusion.image_encoder.vit)["cls_token"], vit_before["cls_token"])
    for name, value in _state(fusion.image_encoder.vision_proj).items():
        assert torch.equal(value, head_before[name]), name
    assert fusion.rna_encoder.proj_head.weight.grad is None
    assert torch.equal(rna.attention_net.cls_token, _encoders()[1].attention_net.cls_token)  # argument untouched


@pytest.mark.parametrize("frozen_mode", ["eval", "train"])
def test_frozen_encoders_pass_input_gradients_for_saliency_and_gene_ranking(frozen_mode: str) -> None:
    """∂(ITM match logit)/∂pixels and ∂(match)/∂expression are finite and non-zero through frozen encoders,
    which themselves still get no gradient; without inputs that require one, no graph is built inside them."""
    parts, _ = _frozen_parts(frozen_mode)
    fusion = parts.fusion.train()
    pixels, rna = _inputs()
    plain = fusion(pixels, rna, rolled_negatives(B))
    assert not plain.image_tokens.requires_grad and not plain.rna_tokens.requires_grad  # nothing recorded
    pixels.requires_grad_()
    for tensor in rna:
        tensor.requires_grad_()
    out = fusion(pixels, rna, image_queries="all", reconstruct=False, negatives=rolled_negatives(B))
    match = out.itm_logits[:B, 1]  # the positives' match logits
    match.sum().backward()
    for name, grad in [("pixels", pixels.grad)] + [(f"rna[{k}]", t.grad) for k, t in enumerate(rna)]:
        assert grad is not None, name
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in fusion.image_encoder.parameters())
    assert all(p.grad is None for p in fusion.rna_encoder.parameters())
    assert fusion.coattention.img_qkv.weight.grad is not None
