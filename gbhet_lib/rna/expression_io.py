"""Bring your own expression: the reader lives in :mod:`gbhet_lib.data.user_tables` (one code path for every
chapter's expression, clinical and trait files); this module keeps its import path for the RNA side.

:func:`read_expression_table` returns genes × samples with gene labels as given: map them with
:func:`gbhet_lib.rna.gene_ids.harmonise_expression`, which also merges rows that map to one gene.
"""
from __future__ import annotations

from ..data.user_tables import UserTableError, gene_like_fraction, read_expression_table

__all__ = ["UserTableError", "gene_like_fraction", "read_expression_table"]
