"""The patch encoder (reference spec §4.1): a timm ViT, a projection of CLS, L2-normalised features.

The authors' hand-written ViT-B/16 at 256 px with DeiT-Base weights and bicubically interpolated position
embeddings equals timm's ``deit_base_patch16_224`` built at ``img_size=256`` (16×16 patches + CLS = 257 tokens,
embed 768); ``vision_proj`` maps CLS 768 → 256 and the result is L2-normalised.

Initialisation, first that applies (:attr:`PatchEncoder.init_source` says which):

1. ``weights_path``: a local timm/DeiT checkpoint (a state dict, or one under ``"model"``/``"state_dict"``). The
   classifier head is dropped, position embeddings are resampled bicubically when the grid differs (14×14 → 16×16
   for DeiT at 256 px), everything else must fit exactly (strict; a clear error names what does not) →
   ``"file:<path>"``.
2. ``pretrained=True``: timm's hub weights → ``"hub:<arch>"``. Offline (``HF_HUB_OFFLINE=1``) or without
   network this raises :class:`PretrainedWeightsError` naming the cause and the fix, unless ``hub_fallback=True``,
   which warns and goes on with random weights.
3. Otherwise random initialisation → ``"random"``.

Normalisation (spec §10.20): the authors used CLIP mean/std with DeiT weights. The default here is the mean/std the
weights were trained with (timm's ``pretrained_cfg`` of ``arch``); ``normalisation="clip"`` is the paper's choice.

Imports only torch and timm: it runs on the GPU machine.
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any, Literal, Mapping

import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer_hybrid import HybridEmbed
from torch import Tensor, nn

from ..errors import GbhetError
from ..training import load_weights, read_checkpoint

Normalisation = Literal["weights", "clip"]
ProjectionNorm = Literal["none", "batch"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PAPER_ARCH = "deit_base_patch16_224"
CHECKPOINT_FORMAT = "gbhet.wsi_checkpoint/1"  # written by gbhet_lib.wsi.train


class PretrainedWeightsError(GbhetError, RuntimeError):
    """Pretrained weights were asked for but could not be obtained (no network, offline mode, unknown model)."""


class PatchEncoder(nn.Module):
    """A timm ViT with a projection head: images → (tokens, L2-normalised features).

    Args:
        arch: a timm ViT name (default the paper's DeiT-Base/16).
        img_size: input side in pixels (256 in the paper; patches of another size are resized by :meth:`preprocess`).
        proj_dim: feature size after the projection of CLS (256).
        pretrained: load timm's hub weights (when ``weights_path`` is not given).
        weights_path: a local timm/DeiT checkpoint; wins over ``pretrained``.
        normalisation: ``weights`` (the mean/std of ``arch``'s pretrained config) or ``clip`` (the paper's).
        hub_fallback: when the hub fails, warn and use random weights instead of raising.
        conv_stem: 0 (the paper: a linear patch embedding) or the number of 3×3 stride-2 convolutions (each with
            BatchNorm and ReLU) that replace it (:func:`conv_stem_embed`; Xiao et al. 2021, "Early convolutions help
            transformers see better"); ``patch_size`` must be divisible by 2**conv_stem.
        proj_norm: ``none`` (the paper: features = normalise(W · CLS)) or ``batch``: a BatchNorm1d between the
            projection and the L2 normalisation, as in SimCLR/BYOL projection heads. It removes the component every
            feature shares; without it a randomly initialised small ViT gives CLS features of pairwise cosine ≈ 1,
            where triplet gradients vanish and training stays collapsed (measured in chapter 3).
        **timm_kwargs: passed to :func:`timm.create_model` (e.g. ``depth=2`` for a small demo model).

    Attributes:
        init_source: ``"file:<path>"``, ``"hub:<arch>"`` or ``"random"``.
        hparams: what rebuilds the architecture (``PatchEncoder(**hparams)``), JSON-compatible.
    """

    def __init__(self, arch: str = PAPER_ARCH, img_size: int = 256, proj_dim: int = 256, pretrained: bool = False,
                 weights_path: str | Path | None = None, normalisation: Normalisation = "weights",
                 hub_fallback: bool = False, proj_norm: ProjectionNorm = "none", conv_stem: int = 0,
                 **timm_kwargs: Any) -> None:
        super().__init__()
        if normalisation not in ("weights", "clip"):
            raise ValueError(f"normalisation={normalisation!r} must be 'weights' or 'clip'")
        if proj_norm not in ("none", "batch"):
            raise ValueError(f"proj_norm={proj_norm!r} must be 'none' or 'batch'")
        if isinstance(conv_stem, bool) or not isinstance(conv_stem, int) or conv_stem < 0:
            raise ValueError(f"conv_stem={conv_stem!r} must be a non-negative integer (0 = the linear patch embedding)")
        self.hparams = {"arch": arch, "img_size": int(img_size), "proj_dim": int(proj_dim),
                        "normalisation": normalisation, "proj_norm": proj_norm, **timm_kwargs}
        if conv_stem:
            self.hparams["conv_stem"] = conv_stem
            timm_kwargs = {**timm_kwargs, "embed_layer": partial(conv_stem_embed, layers=conv_stem)}
        hub = pretrained and weights_path is None
        self.vit, self.init_source = _create_vit(arch, img_size, hub, hub_fallback, timm_kwargs)
        if weights_path is not None:
            load_vit_weights(self.vit, weights_path)
            self.init_source = f"file:{weights_path}"
        self.vision_proj = nn.Linear(self.vit.embed_dim, proj_dim)
        self.proj_norm = nn.BatchNorm1d(proj_dim) if proj_norm == "batch" else nn.Identity()
        config = self.vit.pretrained_cfg
        mean, std = (CLIP_MEAN, CLIP_STD) if normalisation == "clip" else (config["mean"], config["std"])
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def img_size(self) -> int:
        return self.hparams["img_size"]

    @property
    def proj_dim(self) -> int:
        return self.hparams["proj_dim"]

    @property
    def n_tokens(self) -> int:
        """Tokens per image: prefix (CLS) tokens + patch tokens (257 for ViT-B/16 at 256 px)."""
        return self.vit.num_prefix_tokens + self.vit.patch_embed.num_patches

    def preprocess(self, images: Tensor) -> Tensor:
        """Images → normalised float pixels (B, 3, img_size, img_size) on the encoder's device.

        ``images``: uint8 (B, H, W, 3) (0–255), or float (B, 3, H, W) in [0, 1]; resized (bilinear, antialiased)
        when H or W differs from ``img_size``.
        """
        return preprocess(images, self.img_size, self.mean, self.std)

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """``pixels`` (B, 3, S, S) from :meth:`preprocess` → tokens (B, 1+N, D) and features (B, proj_dim), norm 1."""
        tokens = self.vit.forward_features(pixels)
        return tokens, F.normalize(self._normalise(self.vision_proj(tokens[:, 0])), dim=-1)

    def _normalise(self, projected: Tensor) -> Tensor:
        """The projection head's batch normalisation; a single-image training batch (an epoch's last) uses the
        running statistics, since one image has no batch statistics."""
        norm = self.proj_norm
        if isinstance(norm, nn.BatchNorm1d) and self.training and projected.shape[0] == 1:
            return F.batch_norm(projected, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                training=False, eps=norm.eps)
        return norm(projected)


def preprocess(images: Tensor, img_size: int, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (B, H, W, 3) or float [0, 1] (B, 3, H, W) → float32 (B, 3, img_size, img_size), (x − mean) / std.

    Runs on ``mean``'s device (move uint8 batches there first: four times fewer bytes than float).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (4-D), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        if images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (B, H, W, 3), got shape {tuple(images.shape)}")
        x = images.to(mean.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    elif images.is_floating_point():
        if images.shape[1] != 3:
            raise ValueError(f"float images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        x = images.to(mean.device, torch.float32)
    else:
        raise TypeError(f"images must be uint8 (B, H, W, 3) or float (B, 3, H, W), got {images.dtype}")
    if x.shape[-2:] != (img_size, img_size):
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
    return (x - mean) / std


def conv_stem_embed(layers: int, img_size: int, patch_size: int, in_chans: int, embed_dim: int,
                    **embed_kwargs: Any) -> HybridEmbed:
    """A convolutional patch embedding for a timm ViT (its ``embed_layer``): ``layers`` 3×3 stride-2 convolutions
    with BatchNorm and ReLU, widths doubling up to ``embed_dim`` (e.g. 24, 48, 96, 192 for ViT-Tiny), then timm's
    :class:`HybridEmbed` projects (B, C, H/2^layers, W/2^layers) onto tokens with a ``patch_size / 2^layers`` conv.

    The token grid is the linear embedding's (``img_size / patch_size`` per side); only the stem that reads the
    pixels differs: it sees a nucleus (3–5 px) with a local filter instead of one 16×16 linear map per token.
    """
    stride = 2 ** layers
    if patch_size % stride:
        raise ValueError(f"conv_stem={layers} halves the image {layers} times, so patch_size={patch_size} must be "
                         f"divisible by {stride}; use fewer stem layers")
    widths = [max(embed_dim // 2 ** (layers - 1 - k), 8) for k in range(layers)]
    blocks: list[nn.Module] = []
    for width_in, width_out in zip([in_chans] + widths[:-1], widths):
        blocks += [nn.Conv2d(width_in, width_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width_out),
                   nn.ReLU(inplace=True)]
    return HybridEmbed(nn.Sequential(*blocks), img_size=img_size, patch_size=patch_size // stride,
                       in_chans=in_chans, embed_dim=embed_dim, **embed_kwargs)


def _create_vit(arch: str, img_size: int, hub: bool, hub_fallback: bool,
                timm_kwargs: Mapping[str, Any]) -> tuple[nn.Module, str]:
    """The timm model without classifier, with hub weights when ``hub`` (see the module docstring)."""
    build = lambda pretrained: timm.create_model(arch, pretrained=pretrained, img_size=img_size,  # noqa: E731
                                                 num_classes=0, **timm_kwargs)
    if not hub:
        return build(False), "random"
    try:
        return build(True), f"hub:{arch}"
    except Exception as error:  # offline, no network, no such weights: all end here
        message = (f"could not load pretrained weights for {arch!r} from the hub ({type(error).__name__}: "
                   f"{str(error).splitlines()[0] if str(error) else ''}). Give a local file (weights_path=...), "
                   "go online (unset HF_HUB_OFFLINE), or use pretrained=False for random initialisation")
        if not hub_fallback:
            raise PretrainedWeightsError(message) from error
        warnings.warn(message + "; continuing with random weights (hub_fallback=True)", stacklevel=3)
        return build(False), "random"


def load_vit_weights(vit: nn.Module, path: str | Path) -> None:
    """Load a timm/DeiT checkpoint into a timm ViT built with ``num_classes=0``, strictly except the head.

    Position embeddings of another grid are resampled bicubically (timm's :func:`resample_abs_pos_embed`, as the
    authors' ``interpolate_pos_embed``: 14×14 → 16×16 for DeiT-B/16 at 256 px).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors (nor one under 'model' or 'state_dict')")
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist."))}
    own = vit.state_dict().get("pos_embed")
    if "pos_embed" in state and own is not None and state["pos_embed"].shape != own.shape:
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], new_size=list(vit.patch_embed.grid_size), num_prefix_tokens=vit.num_prefix_tokens,
            interpolation="bicubic", antialias=False)
    load_weights(vit, state, str(path))


def demo_encoder(img_size: int = 64, proj_dim: int = 64, depth: int = 2, proj_norm: ProjectionNorm = "batch",
                 conv_stem: int = 4, **kwargs: Any) -> PatchEncoder:
    """A small ViT for the CPU (ViT-Tiny/16, ``depth`` blocks, 64 px: 16 tokens + CLS, a batch-normalised
    projection head) whose tokens come from a 4-layer convolutional stem (``conv_stem``; 0 = the linear patch
    embedding), random weights by default."""
    return PatchEncoder("vit_tiny_patch16_224", img_size=img_size, proj_dim=proj_dim, depth=depth,
                        proj_norm=proj_norm, conv_stem=conv_stem, **kwargs)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> PatchEncoder:
    """Rebuild the encoder trained by :func:`gbhet_lib.wsi.train.train_triplet` from its checkpoint (eval mode).

    ``init_source`` becomes ``"checkpoint:<path>"``.
    """
    state = read_checkpoint(path, CHECKPOINT_FORMAT, "WSI")
    encoder = PatchEncoder(**state["model_spec"])
    load_weights(encoder, state["modules"]["model"], str(path))
    encoder.init_source = f"checkpoint:{path}"
    return encoder.to(device).eval()
