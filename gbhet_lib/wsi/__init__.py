"""Whole-slide images: slide I/O (openslide) and tissue detection."""
