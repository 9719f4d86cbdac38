"""Weights: the cache, verified downloads, safe loading and conversion of published formats."""
