"""Datasets and images for fusion: readers for the original dataset layouts (:mod:`fusion.data.layouts`), pairs and
their loading (:mod:`fusion.data.pairs`), colour spaces (:mod:`fusion.data.color`).

Kept free of imports so that ``import fusion.data.<module>`` pays only for what it uses.
"""
