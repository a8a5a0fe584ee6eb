"""Patch features: encode patches with a :class:`~gbhet_lib.wsi.encoder.PatchEncoder`, write one HDF5 per slide.

Input, a **patch store** (one HDF5 per slide, written by the patch-store stage): datasets ``patches`` (N, H, W, 3)
uint8 and ``coords`` (N, 2) (level-0 x, y), attributes such as patch size, magnification and µm/px.
Output, a **features file** (same name, in the features folder): ``features`` (N, D) float32, ``coords`` (N, 2) as
in the store, the store's attributes plus the encoder's (``encoder_arch``, ``encoder_init``, ``img_size``,
``proj_dim``, ``normalisation``, ``source_store``). Writes are atomic; finished slides are skipped unless
``overwrite``.

Entry point for the GPU machine (needs only torch, timm, h5py, numpy)::

    python -m gbhet_lib.wsi.features --store STORE_DIR --out FEATURES_DIR --checkpoint runs/x/models/wsi/last.pt \
        --device cuda --bf16
    python -m gbhet_lib.wsi.features --store STORE_DIR --out FEATURES_DIR --arch deit_base_patch16_224 \
        --weights deit_base_patch16_224-b5f2ef4d.pth --device cuda --bf16

With ``--weights``/``--pretrained`` only the ViT is pretrained: the projection to ``proj_dim`` is random.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence

import h5py
import numpy as np
import torch
from torch import Tensor

from ..io import atomic_path
from ..training import bf16_autocast, resolve_device
from .encoder import PAPER_ARCH, PatchEncoder, load_encoder

def _read(patches: Any, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` as a uint8 (B, H, W, 3) CPU tensor: a slice of an array / h5py dataset, or Dataset items
    (an image, or an (image, label) pair)."""
    if isinstance(patches, (np.ndarray, h5py.Dataset)):
        return torch.from_numpy(np.ascontiguousarray(patches[start:stop]))
    items = [patches[i] for i in range(start, stop)]
    return torch.stack([torch.as_tensor(item[0] if isinstance(item, tuple) else item) for item in items])


#: what :func:`extract_features` returns of each patch: the projection head's output or the backbone's CLS token
READOUTS = ("projection", "cls")
Readout = Literal["projection", "cls"]


def iter_batches(patches: Any, batch_size: int) -> Iterator[Tensor]:
    """uint8 (B, H, W, 3) batches in order; the next one is read in a thread while the current one is encoded."""
    n = len(patches)
    starts = range(0, n, batch_size)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_read, patches, 0, min(batch_size, n)) if n else None
        for start in starts:
            batch = pending.result()
            following = start + batch_size
            pending = pool.submit(_read, patches, following, min(following + batch_size, n)) if following < n \
                else None
            yield batch


@torch.no_grad()
def extract_features(encoder: PatchEncoder, patches: Any, batch_size: int = 256, device: str | torch.device = "cpu",
                     amp_bf16: bool = False, readout: Readout = "projection") -> np.ndarray:
    """Features of ``patches`` (float32, in order, in evaluation mode).

    Args:
        encoder: moved to ``device``; its training mode is restored afterwards.
        patches: uint8 (N, H, W, 3) as a numpy array or h5py dataset, or a Dataset of images (H, W, 3) uint8 or
            (image, label) pairs.
        amp_bf16: bf16 autocast for the encoder (the features are returned as float32).
        readout: ``projection`` — the projection head's L2-normalised output (N, proj_dim), the space the triplet
            loss trains; ``cls`` — the backbone's CLS token (N, embed_dim), before the head: what the fusion model
            reads (its ITC projection and co-attention take the encoder's tokens), and the representation SimCLR
            (Chen et al. 2020, §4.2) found to keep what the head's objective throws away.
    """
    if readout not in READOUTS:
        raise ValueError(f"readout={readout!r} must be one of {READOUTS}")
    device = resolve_device(device)
    was_training = encoder.training
    encoder.to(device).eval()
    parts = []
    for batch in iter_batches(patches, batch_size):
        pixels = encoder.preprocess(batch.to(device, non_blocking=True))
        with bf16_autocast(amp_bf16, device):
            tokens, features = encoder(pixels)
        chosen = features if readout == "projection" else tokens[:, 0]
        parts.append(chosen.float().cpu().numpy())
    encoder.train(was_training)
    width = encoder.proj_dim if readout == "projection" else encoder.vit.embed_dim
    return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)


def write_features_h5(path: str | Path, features: np.ndarray, coords: np.ndarray,
                      attrs: Mapping[str, Any] | None = None) -> Path:
    """Write ``features`` (N, D) float32, ``coords`` (N, 2) and ``attrs`` (scalars, strings) to ``path`` atomically."""
    features = np.asarray(features, dtype=np.float32)
    coords = np.asarray(coords)
    if features.ndim != 2 or coords.shape != (features.shape[0], 2):
        raise ValueError(f"features must be (N, D) and coords (N, 2) for the same N, got {features.shape} and "
                         f"{coords.shape}")
    with atomic_path(path, suffix=".h5.tmp") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features)
            f.create_dataset("coords", data=coords)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
    return Path(path)


def read_features_h5(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``features`` (N, D), ``coords`` (N, 2) and the attributes of a features file."""
    with h5py.File(path, "r") as f:
        return f["features"][()], f["coords"][()], dict(f.attrs)


def encoder_attrs(encoder: PatchEncoder) -> dict[str, Any]:
    """What a features file records about the encoder that made it."""
    h = encoder.hparams
    return {"encoder_arch": h["arch"], "encoder_init": encoder.init_source, "img_size": h["img_size"],
            "proj_dim": h["proj_dim"], "normalisation": h["normalisation"]}


def extract_slide_features(patch_store_h5: str | Path, out_h5: str | Path, encoder: PatchEncoder,
                           batch_size: int = 256, device: str | torch.device = "cpu",
                           amp_bf16: bool = False) -> Path:
    """Encode one slide's patch store (``patches`` (N, H, W, 3) uint8, ``coords`` (N, 2)) into ``out_h5``."""
    store = Path(patch_store_h5)
    with h5py.File(store, "r") as f:
        missing = [k for k in ("patches", "coords") if k not in f]
        if missing:
            raise ValueError(f"{store} is not a patch store: no dataset {missing} (expected 'patches' (N, H, W, 3) "
                             "uint8 and 'coords' (N, 2))")
        patches, coords = f["patches"], f["coords"][()]
        if patches.ndim != 4 or patches.shape[-1] != 3 or patches.dtype != np.uint8 or len(coords) != len(patches):
            raise ValueError(f"{store}: 'patches' must be (N, H, W, 3) uint8 with one coords row each, got "
                             f"{patches.shape} {patches.dtype} and {coords.shape}")
        features = extract_features(encoder, patches, batch_size, device, amp_bf16)
        attrs = {**f.attrs, **encoder_attrs(encoder), "source_store": store.name}
    return write_features_h5(out_h5, features, coords, attrs)


def extract_store_dir(store: str | Path, out_dir: str | Path, encoder: PatchEncoder, batch_size: int = 256,
                      device: str | torch.device = "cpu", amp_bf16: bool = False,
                      overwrite: bool = False) -> list[Path]:
    """Every ``*.h5`` patch store of a folder (or one file) → ``out_dir/<same name>``; existing outputs are kept
    unless ``overwrite``. Returns the output paths."""
    store = Path(store)
    stores = sorted(store.glob("*.h5")) if store.is_dir() else [store]
    if not stores or not all(p.is_file() for p in stores):
        raise FileNotFoundError(f"no patch store (*.h5) at {store}")
    outputs = []
    for path in stores:
        out = Path(out_dir) / path.name
        if overwrite or not out.exists():
            extract_slide_features(path, out, encoder, batch_size, device, amp_bf16)
        outputs.append(out)
    return outputs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gbhet_lib.wsi.features", description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, help="a patch-store folder (*.h5) or one store file")
    parser.add_argument("--out", required=True, help="folder for the features files")
    parser.add_argument("--checkpoint", help="a triplet-training checkpoint (last.pt); sets the architecture")
    parser.add_argument("--arch", default=PAPER_ARCH, help="timm model name (without --checkpoint)")
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--proj-dim", type=int, default=256)
    parser.add_argument("--weights", help="a local timm/DeiT weights file (without --checkpoint)")
    parser.add_argument("--pretrained", action="store_true", help="timm hub weights (needs network)")
    parser.add_argument("--normalisation", choices=("weights", "clip"), default="weights")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing features files")
    parser.add_argument("--seed", type=int, default=0, help="seeds random initialisation (projection, or all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: encode a patch-store folder; prints one line per slide."""
    args = _parser().parse_args(argv)
    torch.manual_seed(args.seed)
    if args.checkpoint:
        encoder = load_encoder(args.checkpoint)
    else:
        encoder = PatchEncoder(args.arch, args.img_size, args.proj_dim, pretrained=args.pretrained,
                               weights_path=args.weights, normalisation=args.normalisation)
    print(f"encoder {encoder.hparams['arch']} ({encoder.init_source}) on {args.device}", file=sys.stderr)
    for out in extract_store_dir(args.store, args.out, encoder, args.batch_size, args.device, args.bf16,
                                 args.overwrite):
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
