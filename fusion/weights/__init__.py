"""Shipped model weights (package data): ``tcmoa_tiny.safetensors`` with its model card ``tcmoa_tiny.md``."""
