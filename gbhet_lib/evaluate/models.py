"""Loading trained models with a guarantee of the split they were trained on.

:func:`load_trained` compares three digests: the split file's (its keys), the one in the training record
(``models/fusion/<name>-<split>.json``) and the one stored in the checkpoint itself. Any difference means the split
was redrawn (or the model belongs to another run) after training, and the model's "held-out" score would include
patches it was trained on: it is refused.

Imports the fusion package only when called (the module itself needs only numpy).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .splits import SplitMismatch, read_split, run_split_path, split_digest


def _retrain_hint(run_dir: Path, name: str, record: Mapping[str, Any], split_name: str) -> str:
    variant = record.get("variant", name)
    named = f" --name {name}" if name != variant else ""
    return f"retrain it with `gbhet train-fusion --run-dir {run_dir} --variant {variant} --policy {split_name}{named}`"


def load_trained(run_dir: str | Path, name: str, split: str | Mapping[str, Any],
                 device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The fusion model ``name`` trained on ``split`` (evaluation mode, on ``device``) and its training record.

    Args:
        run_dir: the run directory.
        name: the variant or record name the model was trained under (``best``, ``best+fixes``, …).
        split: a split name (read from :func:`~gbhet_lib.evaluate.splits.run_split_path`) or a split record.

    Raises:
        SplitMismatch: the split's digest differs from the training record's or from the checkpoint's; the message
            names the model, the split file and both digests.
        FileNotFoundError: no split file, or no trained model of that name and split.
    """
    from ..fusion.stage import read_trained
    from ..fusion.train import load_fusion_model

    run_dir = Path(run_dir)
    if isinstance(split, str):
        where = run_split_path(run_dir, split)
        split = read_split(where)
    else:
        where = f"the given split record {split.get('name')!r}"
        if split.get("digest") != split_digest(split):
            raise SplitMismatch(f"{where} was changed after it was drawn: its digest {split.get('digest')} does not "
                                f"match its keys ({split_digest(split)})")
    split_name = split["name"]
    record = read_trained(run_dir, name, split_name)
    checkpoint = run_dir / record["checkpoint"]
    recorded = record.get("split_digest")
    if recorded != split["digest"]:
        raise SplitMismatch(f"model {name!r} ({checkpoint}) was trained on split digest {recorded}, but {where} has "
                            f"digest {split['digest']}: the split was redrawn after training; "
                            + _retrain_hint(run_dir, name, record, split_name))
    model, extra = load_fusion_model(checkpoint, device)
    if extra.get("split_digest") != split["digest"]:
        raise SplitMismatch(f"the checkpoint of model {name!r} ({checkpoint}) records split digest "
                            f"{extra.get('split_digest')}, but {where} has digest {split['digest']} (its training "
                            "record was changed or belongs to another checkpoint); "
                            + _retrain_hint(run_dir, name, record, split_name))
    return model.eval(), record
