"""Evaluation layer: held-out splits and split files (:mod:`.splits`), loading trained models with a split check
(:mod:`.models`), metrics with chance levels and bootstrap intervals over patients (:mod:`.metrics`), per-gene
correlation with Holm–Šidák for expression predicted from images (:mod:`.expression`, imported on its own).

Importing this package needs only numpy (torch and the fusion package are imported by the functions that use them).
"""
from .metrics import bootstrap_ci, group_mean, knn_accuracy, percentile, percentile_rank_chance, retrieval_ranks, \
    top_k_accuracy, top_k_chance
from .models import load_trained
from .splits import CV_POLICY, SPLIT_FORMAT, SPLIT_POLICIES, SplitMismatch, cv_split_name, draw_split, \
    identical_splits, make_split, patient_folds, read_split, run_split_path, split_digest, split_rows, write_split

__all__ = ["CV_POLICY", "SPLIT_FORMAT", "SPLIT_POLICIES", "SplitMismatch", "bootstrap_ci", "cv_split_name",
           "draw_split", "group_mean", "identical_splits", "knn_accuracy", "load_trained", "make_split",
           "patient_folds", "percentile", "percentile_rank_chance", "read_split", "retrieval_ranks", "run_split_path",
           "split_digest", "split_rows", "top_k_accuracy", "top_k_chance", "write_split"]
