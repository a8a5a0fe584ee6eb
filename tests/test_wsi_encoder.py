"""The patch encoder (spec §4.1), its weight loading, and patch features (random initialisation throughout)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from gbhet_lib.wsi.encoder import CLIP_MEAN, PatchEncoder, PretrainedWeightsError, demo_encoder, preprocess
from gbhet_lib.wsi.features import extract_features, extract_slide_features, extract_store_dir, main, \
    read_features_h5, write_features_h5


@pytest.fixture(scope="module")
def tiny() -> PatchEncoder:
    torch.manual_seed(0)
    return demo_encoder(img_size=32, proj_dim=16).eval()


def _patches(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_shapes_and_unit_norm_features(tiny: PatchEncoder) -> None:
    images = torch.from_numpy(_patches(3))
    tokens, features = tiny(tiny.preprocess(images))
    assert tokens.shape == (3, 1 + 4, 192) and tiny.n_tokens == 5
    assert features.shape == (3, 16)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(3))
    assert tiny.init_source == "random"
    # float (B, 3, H, W) in [0, 1] gives the same pixels; other sizes are resized
    as_float = images.permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(tiny.preprocess(as_float), tiny.preprocess(images))
    assert tiny.preprocess(torch.from_numpy(_patches(2, size=48))).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        tiny.preprocess(images.permute(0, 3, 1, 2).contiguous())
    with pytest.raises(TypeError, match="uint8"):
        tiny.preprocess(images.int())


def test_paper_encoder_has_257_tokens_of_768() -> None:
    encoder = PatchEncoder()  # DeiT-B/16 at 256 px, random weights (no hub in tests)
    assert encoder.n_tokens == 257 and encoder.vit.embed_dim == 768 and encoder.proj_dim == 256
    assert encoder.vision_proj.in_features == 768
    torch.testing.assert_close(encoder.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))  # ImageNet (DeiT)


def test_normalisation_follows_the_weights_or_the_paper() -> None:
    assert demo_encoder(img_size=32).mean.flatten().tolist() == [0.5, 0.5, 0.5]  # ViT-Tiny augreg weights
    torch.testing.assert_close(demo_encoder(img_size=32, normalisation="clip").mean.flatten(),
                               torch.tensor(CLIP_MEAN))
    with pytest.raises(ValueError, match="'weights' or 'clip'"):
        demo_encoder(normalisation="imagenet")
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.5)
    white = torch.full((1, 32, 32, 3), 255, dtype=torch.uint8)
    assert torch.equal(preprocess(white, 32, mean, std), torch.ones(1, 3, 32, 32))


def test_weights_file_from_224_is_interpolated_to_256(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = timm.create_model("vit_tiny_patch16_224", depth=2, num_classes=10)  # a classifier, as DeiT files have
    path = tmp_path / "deit.pth"
    torch.save({"model": source.state_dict()}, path)

    encoder = PatchEncoder("vit_tiny_patch16_224", img_size=256, proj_dim=8, weights_path=path, depth=2)
    assert encoder.init_source == f"file:{path}"
    state, loaded = source.state_dict(), encoder.vit.state_dict()
    assert loaded["pos_embed"].shape == (1, 257, 192)
    # the authors' interpolate_pos_embed: CLS kept, the 14×14 grid resized bicubically to 16×16
    grid = state["pos_embed"][:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    expected = torch.cat([state["pos_embed"][:, :1], expected.permute(0, 2, 3, 1).reshape(1, 256, 192)], dim=1)
    torch.testing.assert_close(loaded["pos_embed"], expected)
    assert all(torch.equal(loaded[k], state[k]) for k in loaded if k != "pos_embed")
    assert encoder(encoder.preprocess(torch.from_numpy(_patches(1, 256))))[0].shape == (1, 257, 192)


def test_weights_file_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deeper.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", depth=3, num_classes=0).state_dict(), path)
    with pytest.raises(ValueError, match=r"unexpected: \['blocks\.2\.norm1\.weight'"):
        PatchEncoder("vit_tiny_patch16_224", img_size=32, weights_path=path, depth=2)
    torch.save({"epoch": 3}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="no state dict"):
        PatchEncoder("vit_tiny_patch16_224", img_size=32, weights_path=tmp_path / "junk.pth", depth=2)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        PatchEncoder("vit_tiny_patch16_224", img_size=32, weights_path=tmp_path / "absent.pth", depth=2)


def test_hub_offline_fails_clearly_or_falls_back_when_asked() -> None:
    assert __import__("os").environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest: no hub in tests
    with pytest.raises(PretrainedWeightsError, match="could not load pretrained weights .*weights_path"):
        demo_encoder(img_size=32, pretrained=True)
    with pytest.warns(UserWarning, match="continuing with random weights"):
        encoder = demo_encoder(img_size=32, pretrained=True, hub_fallback=True)
    assert encoder.init_source == "random"


# ------------------------------------------------------------------------------------------------ features
def test_features_match_the_forward_pass_in_any_batching(tiny: PatchEncoder) -> None:
    patches = _patches(10)
    features = extract_features(tiny, patches, batch_size=4)
    assert features.shape == (10, 16) and features.dtype == np.float32
    with torch.no_grad():
        direct = tiny(tiny.preprocess(torch.from_numpy(patches)))[1].numpy()
    np.testing.assert_allclose(features, direct, atol=1e-5)
    as_dataset = [(p, 0) for p in patches]  # any indexable of (image, label) items
    np.testing.assert_allclose(extract_features(tiny, as_dataset, batch_size=3), features, atol=1e-5)
    assert extract_features(tiny, patches[:0]).shape == (0, 16)


def test_cls_readout_is_the_backbone_token_before_the_head(tiny: PatchEncoder) -> None:
    patches = _patches(6)
    cls = extract_features(tiny, patches, batch_size=4, readout="cls")
    assert cls.shape == (6, tiny.vit.embed_dim) and cls.dtype == np.float32
    with torch.no_grad():
        tokens, head = tiny(tiny.preprocess(torch.from_numpy(patches)))
    np.testing.assert_allclose(cls, tokens[:, 0].numpy(), atol=1e-5)
    assert not np.allclose(np.linalg.norm(cls, axis=1), 1.0)  # not the head's unit-norm output
    assert extract_features(tiny, patches[:0], readout="cls").shape == (0, tiny.vit.embed_dim)
    with pytest.raises(ValueError, match="readout='tokens' must be one of"):
        extract_features(tiny, patches, readout="tokens")


def test_features_h5_round_trip_and_errors(tmp_path: Path) -> None:
    features, coords = np.random.default_rng(0).random((5, 3)), np.arange(10).reshape(5, 2)
    path = write_features_h5(tmp_path / "a" / "s.h5", features, coords, {"mpp": 1.0, "slide": "s"})
    f, c, attrs = read_features_h5(path)
    assert f.dtype == np.float32 and np.allclose(f, features) and np.array_equal(c, coords)
    assert attrs == {"mpp": 1.0, "slide": "s"}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["s.h5"]  # no temporary file left
    with pytest.raises(ValueError, match="same N"):
        write_features_h5(tmp_path / "b.h5", features, coords[:4])


def _store(path: Path, n: int, seed: int = 0) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("patches", data=_patches(n, seed=seed), chunks=(min(n, 4), 32, 32, 3))
        f.create_dataset("coords", data=np.arange(2 * n).reshape(n, 2) * 256)
        f.attrs["patch_size"] = 256
        f.attrs["mpp"] = 1.0
    return path


def test_slide_features_from_a_patch_store(tiny: PatchEncoder, tmp_path: Path) -> None:
    store = _store(tmp_path / "slide1.h5", 9)
    out = extract_slide_features(store, tmp_path / "features" / "slide1.h5", tiny, batch_size=4)
    features, coords, attrs = read_features_h5(out)
    with h5py.File(store) as f:
        np.testing.assert_allclose(features, extract_features(tiny, f["patches"][()]), atol=1e-5)
        assert np.array_equal(coords, f["coords"][()])
    assert attrs["patch_size"] == 256 and attrs["encoder_arch"] == "vit_tiny_patch16_224"
    assert attrs["encoder_init"] == "random" and attrs["proj_dim"] == 16 and attrs["source_store"] == "slide1.h5"
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("coords", data=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"not a patch store: no dataset \['patches'\]"):
        extract_slide_features(tmp_path / "bad.h5", tmp_path / "out.h5", tiny)


def test_store_folder_and_command_line(tiny: PatchEncoder, tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    stores.mkdir()
    _store(stores / "a.h5", 3), _store(stores / "b.h5", 5, seed=1)
    outputs = extract_store_dir(stores, tmp_path / "out", tiny)
    assert [p.name for p in outputs] == ["a.h5", "b.h5"]
    stamp = outputs[0].stat().st_mtime_ns
    extract_store_dir(stores, tmp_path / "out", tiny)  # finished slides are skipped
    assert outputs[0].stat().st_mtime_ns == stamp
    with pytest.raises(FileNotFoundError, match="no patch store"):
        extract_store_dir(tmp_path / "out" / "none", tmp_path / "x", tiny)

    assert main(["--store", str(stores), "--out", str(tmp_path / "cli"), "--arch", "vit_tiny_patch16_224",
                 "--img-size", "32", "--proj-dim", "8", "--device", "cpu"]) == 0
    features, _, attrs = read_features_h5(tmp_path / "cli" / "b.h5")
    assert features.shape == (5, 8) and attrs["img_size"] == 32


def test_batch_normalised_head_spreads_random_features_and_takes_a_single_image() -> None:
    import torch

    from gbhet_lib.wsi.encoder import demo_encoder

    torch.manual_seed(0)
    plain = demo_encoder(img_size=32, proj_norm="none", conv_stem=0)  # the linear patch embedding
    normed = demo_encoder(img_size=32, conv_stem=0)
    pink = torch.tensor([200, 150, 190]).view(1, 1, 1, 3)  # H&E-like patches differ little in colour
    images = (pink + torch.randint(-25, 26, (16, 32, 32, 3))).to(torch.uint8)
    cosine = {}
    for name, encoder in (("none", plain), ("batch", normed)):
        encoder.train()
        features = encoder(encoder.preprocess(images))[1].detach()
        cosine[name] = float((features @ features.T)[~torch.eye(16, dtype=torch.bool)].mean())
    assert cosine["none"] > 0.9 and cosine["batch"] < 0.5  # a random ViT's CLS features nearly coincide
    one = normed(normed.preprocess(images[:1]))[1]
    assert one.shape == (1, 64) and torch.isfinite(one).all()
