"""Multimodal fusion (reference spec §5): co-attention model, ITC/ITM/reconstruction losses, pairing data and
training in one process or under ``torchrun``."""
