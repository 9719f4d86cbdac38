"""The condition vector the demo networks are trained with, built from the card's conditioning
schema (the same schema the generate pipeline reads), so training and sampling cannot disagree.

Classifier-free guidance: dropped conditions are replaced by -1 in every entry, the
"unconditional" value ``SynthMedLib.sampling`` feeds to the unconditional half (no real value is
negative after normalisation).
"""

import torch

UNCONDITIONAL_VALUE = -1.0


def normalise(variable, value):
    if "values" in variable:
        values = variable["values"]
        if value not in values:
            raise ValueError(f"{variable['name']} must be one of {sorted(values)}, not {value!r}")
        return float(values[value])
    norm = variable.get("normalise") or {"min": variable["range"][0], "max": variable["range"][1]}
    return (float(value) - norm["min"]) / (norm["max"] - norm["min"])


def condition_vector(card, conditions):
    """(V,) float32 tensor for one subject: ``conditions`` maps variable name -> raw value."""
    variables = card.conditioning.variables
    return torch.tensor([normalise(v, conditions[v["name"]]) for v in variables],
                        dtype=torch.float32)


def drop_conditions(vectors, probability, generator):
    """Replace whole condition vectors by the unconditional value with ``probability``."""
    if probability <= 0:
        return vectors
    drop = torch.rand(vectors.shape[0], generator=generator) < probability
    return torch.where(drop[:, None], torch.full_like(vectors, UNCONDITIONAL_VALUE), vectors)
