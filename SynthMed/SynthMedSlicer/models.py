"""Model manager: the catalogue (from the cards, through the worker), what the Model panel says
about a model, and whether a task fits the chosen device's memory."""

import html

from SynthMedLib.worker.protocol import ModelsRequest


def catalogue(client):
    """[{id, title, status, sizeBytes, license, citation, conditioning, ...}] for every card."""
    return client.run(ModelsRequest()).get("models", [])


def format_bytes(count):
    if count is None:
        return "unknown size"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024.0


def model_summary_html(model):
    """Rich text for the panel: title, status, size, licence, citation."""
    status = model["status"]
    colour = {"embedded": "#2a7a2a", "installed": "#2a7a2a"}.get(status, "#a05a00")
    lines = [f"<b>{html.escape(model['title'])}</b> "
             f"<small>({html.escape(model['id'])} {html.escape(model['version'])}, "
             f"{html.escape(model['modality'])})</small>",
             f"Weights: <span style='color:{colour}'>{html.escape(status)}</span>, "
             f"{format_bytes(model.get('sizeBytes'))}"]
    if model.get("missing") and not model.get("downloadable"):
        lines.append("No download address is published for these weights: obtain them from the authors "
                     "and use Import.")
    lines.append(f"Licence: {html.escape(str(model.get('license', '')))}")
    lines.append(f"Cite: <i>{html.escape(str(model.get('citation', '')))}</i>")
    lines.append("Tasks: " + ", ".join(model.get("pipelines", [])))
    return "<br>".join(lines)


def memory_message(estimate, device):
    """What the panel says before running: the estimate, and a warning if the device lacks it.

    ``device`` is one entry of the worker's ``devices`` answer ({id, name, totalBytes, freeBytes})."""
    need = estimate["totalBytes"]
    available = device.get("freeBytes") or device.get("totalBytes")
    text = f"Needs about {format_bytes(need)} on {device.get('name') or device['id']}"
    if available:
        text += f" ({format_bytes(available)} {'free' if device.get('freeBytes') else 'in total'})"
        if need > available:
            text += ". <b>Not enough memory</b>: generate fewer samples at once or choose another device."
    return text, bool(available) and need > available


def condition_spec(model):
    """The card's conditioning variables as widget specs: numeric (range, default, unit) or
    categorical (choices, default)."""
    specs = []
    for variable in (model.get("conditioning") or {}).get("variables", []):
        if "values" in variable:
            choices = list(variable["values"])
            specs.append({"name": variable["name"], "kind": "choice", "choices": choices,
                          "default": variable.get("default", choices[0])})
        else:
            low, high = variable.get("range", [0, 100])
            specs.append({"name": variable["name"], "kind": "number", "minimum": float(low), "maximum": float(high),
                          "default": float(variable.get("default", (low + high) / 2.0)),
                          "unit": variable.get("unit", "")})
    return specs


def check_conditions(model, conditions):
    """Refuse values outside the card's schema before anything runs (the widgets enforce ranges too;
    this covers scripting)."""
    from SynthMedLib.errors import InputError

    for spec in condition_spec(model):
        if spec["name"] not in conditions:
            continue
        value = conditions[spec["name"]]
        if spec["kind"] == "choice" and value not in spec["choices"]:
            raise InputError(f"{spec['name']} must be one of {', '.join(map(str, spec['choices']))}, not {value!r}")
        if spec["kind"] == "number":
            if not spec["minimum"] <= float(value) <= spec["maximum"]:
                raise InputError(f"{spec['name']} {value} is outside the model's range "
                                 f"{spec['minimum']:g}-{spec['maximum']:g} {spec['unit']}".rstrip())
