"""The Dataset section's decisions, without Qt: which controls a model's conditions get, the
distribution spec (as ``synthmed dataset --distribution``) made from them, and what the panel
says when a dataset run ends.

Each card condition gets one control: a number a range (min, max; equal ends = one value), a
choice a fixed value or ``MIXED`` (equal shares of every value). The worker draws each sample's
conditions from the spec with the dataset seed, so the same settings give the same dataset.
"""

from SynthMedLib.errors import InputError
from SynthMedSlicer import models

MIXED = "mixed"
MIXED_TEXT = "mixed (equal shares)"


def controls(model):
    """[(spec, kind, choices)] for the model's conditions: kind "range" (spec's minimum/maximum are
    its bounds, the whole range preselected) or "choice" (choices: [(text, value)], mixed first)."""
    out = []
    for spec in models.condition_spec(model or {}):
        if spec["kind"] == "number":
            out.append((spec, "range", []))
        else:
            out.append((spec, "choice", [(MIXED_TEXT, MIXED)] + [(str(c), c) for c in spec["choices"]]))
    return out


def distribution(model, settings):
    """The distribution spec of a dataset request from the section's settings: {name: (low, high)}
    for numbers, {name: value or MIXED} for choices. Values are checked against the card here, so
    a bad setting is refused before the worker starts anything."""
    specs = {spec["name"]: spec for spec in models.condition_spec(model or {})}
    unknown = sorted(set(settings) - set(specs))
    if unknown:
        raise InputError(f"model '{(model or {}).get('id')}' has no condition {', '.join(unknown)}")
    out = {}
    for name, setting in settings.items():
        spec = specs[name]
        if spec["kind"] == "number":
            low, high = (float(v) for v in setting)
            if high < low:
                raise InputError(f"{name}: the range's maximum ({high:g}) is below its minimum ({low:g})")
            models.check_conditions(model, {name: low})
            models.check_conditions(model, {name: high})
            out[name] = {"value": low} if low == high else {"uniform": [low, high]}
        elif setting == MIXED:
            out[name] = {"categorical": {str(choice): 1.0 for choice in spec["choices"]}}
        else:
            models.check_conditions(model, {name: setting})
            out[name] = {"value": setting}
    return out


def folder_chosen(folder):
    """A folder path typed or picked in the section ('' and whitespace are none)."""
    return bool(folder and str(folder).strip())


def done_message(result):
    """The status line at the end: where the dataset is, and how many samples this run wrote."""
    folder, made, skipped = result.get("folder", "?"), int(result.get("made", 0)), int(result.get("skipped", 0))
    total = int(result.get("samples", made + skipped))
    text = f"Dataset written to {folder}: {made} sample{'s' if made != 1 else ''} made"
    if skipped:
        text += f", {skipped} already there (resumed)"
    return text + f"; {total} in all. Nothing was added to the scene."


def cancelled_message(folder):
    return (f"Cancelled. The samples finished so far stay in {folder}; "
            "'Write dataset' with the same settings finishes it.")
