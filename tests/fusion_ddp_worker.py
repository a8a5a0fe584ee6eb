"""torchrun worker of tests/test_fusion_train.py: train the tiny fusion model and write the loss history.

Usage: ``torchrun --nproc_per_node=N tests/fusion_ddp_worker.py OUT_DIR BATCH_SIZE`` (also runs without torchrun).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_tiny import TINY_FUSION, tiny_encoders, tiny_pairs  # noqa: E402

from gbhet_lib.fusion.distributed import process_group  # noqa: E402
from gbhet_lib.fusion.train import train_fusion, variant_config  # noqa: E402


def main(out: Path, batch_size: int) -> None:
    with process_group("cpu") as (rank, _):
        config = variant_config("frozen", **{**TINY_FUSION, "batch_size": batch_size, "gather_negatives": True})
        image_encoder, rna_encoder = tiny_encoders()
        history = train_fusion(config, tiny_pairs(), image_encoder, rna_encoder, out / "checkpoint", progress=False)
        if rank == 0:
            history.to_csv(out / "history.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
