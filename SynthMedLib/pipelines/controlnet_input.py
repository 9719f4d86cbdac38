"""The ControlNet's image-like input for progression: the baseline latent plus one constant
channel carrying age. Cards differ in what that channel holds, and say it in
``conditioning.controlnet.age_channel``:

- ``{"holds": "baseline_age"}``: BrLP (Puglisi et al., sampling.py), the *baseline* age
  normalised like the age variable;
- ``{"holds": "gap", "divide_by": 45}``: the demo model, the *time gap* (target age - baseline
  age) / 45 years (train/controlnet.py reads the same field).
"""

import torch

from SynthMedLib.errors import CardError


def age_channel_rule(card):
    """("gap", years per unit) or ("baseline", (min, max) of the age normalisation)."""
    spec = card.conditioning.controlnet
    if card.conditioning.controlnet_input != "baseline_latent_and_age":
        raise CardError(f"model '{card['id']}' has no ControlNet input of the kind "
                        "'baseline_latent_and_age' that progression needs")
    rule = spec.get("age_channel")
    if rule is None:
        raise CardError(f"model '{card['id']}': the card does not say what the ControlNet's age "
                        "channel holds (conditioning.controlnet.age_channel)")
    if rule["holds"] == "gap":
        if "divide_by" not in rule:
            raise CardError(f"model '{card['id']}': an age channel holding the time gap needs "
                            "'divide_by' (years)")
        return "gap", float(rule["divide_by"])
    age = next((v for v in card.conditioning.variables if v["name"] == "age"), None)
    if age is None:
        raise CardError(f"model '{card['id']}' has no age variable to fill the ControlNet's "
                        "age channel")
    norm = age.get("normalise") or {"min": age["range"][0], "max": age["range"][1]}
    return "baseline", (float(norm["min"]), float(norm["max"]))


def controlnet_condition(card, baseline_latent, baseline_age, target_ages):
    """(len(target_ages), C + 1, *latent) ControlNet input, one per target age."""
    kind, parameter = age_channel_rule(card)
    rows = []
    for target_age in target_ages:
        if kind == "gap":
            value = (float(target_age) - float(baseline_age)) / parameter
        else:
            low, high = parameter
            value = (float(baseline_age) - low) / (high - low)
        channel = torch.full_like(baseline_latent[:, :1], value)
        rows.append(torch.cat([baseline_latent, channel], dim=1))
    condition = torch.cat(rows)
    expected = card.conditioning.controlnet["channels"]
    if condition.shape[1] != expected:
        raise CardError(f"the ControlNet input has {condition.shape[1]} channels, the card says "
                        f"{expected}")
    return condition
