"""Pipelines: short functions that read top to bottom like the flows in docs/DESIGN.md
(generate, counterfactual, progression), composed from the engine's parts."""
