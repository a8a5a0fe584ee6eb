"""Interpretation: survival analyses (more arrive with the interpretation chapter)."""
