"""Tables of the fusion chapter: what each trained (variant, policy) did, and the GPU benchmark results.

Reads the records written by :func:`gbhet_lib.fusion.stage.train_variant`; imports pandas only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

LOSS_TERMS = ("loss", "itc", "itm", "reconstruction")


def histories(records: Mapping[tuple[str, str], Mapping[str, Any]]) -> pd.DataFrame:
    """Every epoch of every (variant, policy) record, long format, with ``variant`` and ``policy`` columns."""
    frames = [pd.DataFrame(r["history"]).assign(variant=v, policy=p) for (v, p), r in records.items()]
    return pd.concat(frames, ignore_index=True)


def summary(records: Mapping[tuple[str, str], Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (variant, policy): epochs, device, training pairs/s (mean over epochs after the first), first
    and last epoch training losses per term, the last epoch's held-out ITC (the run's own and the paper's
    definition) and ITM (other-lineage negatives) beside their chance levels, the temperature at the start and
    the end (learnable τ), and ``same_split_as`` for a policy that repeats another's split (trained once)."""
    rows = []
    for (variant, policy), record in records.items():
        history = pd.DataFrame(record["history"])
        first, last = history.iloc[0], history.iloc[-1]
        steady = history["pairs_per_s"].iloc[1:] if len(history) > 1 else history["pairs_per_s"]
        row: dict[str, Any] = {"variant": variant, "policy": policy, "epochs": len(history),
                               "device": record["settings"]["device"], "world_size": record["world_size"],
                               "train_pairs": record["pairs"]["train"], "held_out_pairs": record["pairs"]["held_out"],
                               "pairs_per_s": float(steady.mean())}
        for term in LOSS_TERMS:
            if f"train_{term}" in history:
                row[f"first_{term}"], row[f"last_{term}"] = float(first[f"train_{term}"]), float(last[f"train_{term}"])
        for term in ("itc", "itc_paper", "itc_chance", "itm", "itm_accuracy", "itm_accuracy_chance",
                     "itm_negatives_per_pair", "itm_pairs_without_negatives", "itm_rolled_true_match_fraction"):
            if f"val_{term}" in history:
                row[f"held_out_{term}"] = float(last[f"val_{term}"])
        if "temperature_end" in history:
            row["first_temperature"] = float(first["train_temperature"])
            row["last_temperature"] = float(last["temperature_end"])
        if record.get("same_split_as"):
            row["same_split_as"] = record["same_split_as"]
        rows.append(row)
    return pd.DataFrame(rows).set_index(["variant", "policy"])


#: the summary columns the chapter shows first (those a table has, in this order)
MAIN_COLUMNS = ("same_split_as", "pairs_per_s", "first_itc", "last_itc", "held_out_itc", "held_out_itc_paper",
                "held_out_itc_chance", "last_itm", "held_out_itm", "held_out_itm_accuracy",
                "held_out_itm_accuracy_chance", "held_out_itm_rolled_true_match_fraction", "last_reconstruction")
#: every fix of the paper's losses (reference spec §10.17), as FusionConfig overrides; τ starts at CLIP's 0.07
ALL_FIXES = {"symmetric": True, "multi_positive": True, "itm_negatives": "similarity", "learnable_temperature": True,
             "temperature": 0.07}


def columns(table: pd.DataFrame, wanted: Sequence[str]) -> list[str]:
    """The ``wanted`` columns that ``table`` has, in that order."""
    return [c for c in wanted if c in table]


def split_table(splits: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per split: training and held-out pairs, held-out slides, lineages and patients, and the policy
    whose split it repeats (``same as``; such a split is trained once)."""
    from ..evaluate.splits import identical_splits

    first = identical_splits(splits)
    return pd.DataFrame({name: {"train pairs": s["counts"]["train"], "held-out pairs": s["counts"]["held_out"],
                                "held-out slides": len(s["held_out_slides"]),
                                "held-out lineages": len(s["held_out_lineages"]),
                                "held-out patients": len(s["held_out_patients"]),
                                "same as": first[name] if first[name] != name else ""}
                         for name, s in splits.items()}).T


def paired_fixes(table: pd.DataFrame, paper: str, fixed: str) -> pd.DataFrame:
    """The paper's run and the run with every fix side by side per policy, on the measures both share: held-out
    ITC in the paper's definition, held-out ITM and its accuracy (other-lineage negatives), with chance levels,
    and the temperature at the start and the end."""
    wanted = ("epochs", "held_out_itc_paper", "held_out_itc_chance", "held_out_itm", "held_out_itm_accuracy",
              "held_out_itm_accuracy_chance", "first_temperature", "last_temperature")
    rows = table.loc[[paper, fixed]]
    return rows[columns(rows, wanted)].swaplevel().sort_index(level="policy", sort_remaining=False)


def trainable(records: Mapping[tuple[str, str], Mapping[str, Any]]) -> pd.DataFrame:
    """Trainable parameters per part for each variant (they do not depend on the policy)."""
    seen = {v: r["trainable_parameters"] for (v, _), r in records.items()}
    return pd.DataFrame(seen).T.rename_axis("variant")


def metrics(records: Mapping[tuple[str, str], Mapping[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """``metrics/fusion.json`` content: per variant and policy, epochs, first and last epoch losses, device,
    pairs/s, held-out ITC/ITM with chance levels."""
    table = summary(records)
    out: dict[str, Any] = {}
    for variant in variants:
        if variant not in table.index.get_level_values("variant"):
            continue
        rows = table.xs(variant, level="variant")
        out[variant] = {policy: {k: (v.item() if hasattr(v, "item") else v) for k, v in row.dropna().items()}
                        for policy, row in rows.iterrows()}
    return out


def benchmark_results(folder: str | Path, prefix: str = "fusion") -> list[dict[str, Any]]:
    """The JSON results of ``benchmarks/<prefix>.py`` found in ``folder`` (each names its machine)."""
    folder = Path(folder)
    return [json.loads(p.read_text()) | {"file": p.name} for p in sorted(folder.glob(f"{prefix}-*.json"))] \
        if folder.is_dir() else []


def benchmark_table(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per timed training setting of each benchmark result: machine, precision, batch, compile,
    pairs/s, TFLOP/s, share of the bf16 peak, peak GPU memory; and the data-path ratio of that result."""
    rows = []
    for result in results:
        machine = result.get("machine", {})
        data_path = result.get("data_path") or {}
        common = {"file": result.get("file"), "device": machine.get("device_name", machine.get("device")),
                  "complete": result.get("complete"),
                  "data_path_ours_over_theirs": data_path.get("ratio_ours_over_theirs")}
        runs = (result.get("training") or {}).get("runs", [])
        for run in runs:
            rows.append({**common, **{k: run.get(k) for k in ("precision", "batch_size", "compile", "pairs_per_s",
                                                                "tflops", "share_of_bf16_peak",
                                                                "peak_memory_gib")}})
        if not runs:
            rows.append(common)
    return pd.DataFrame(rows)
