"""A model card: a validated JSON document, parsed once into typed sections.

After schema validation, the sections the engine computes with are parsed into small dataclasses
with their defaults (cards/sections.py): ``card.scheduler``, ``card.latent``,
``card.conditioning`` and ``card.networks`` (name -> NetworkSpec). The other top-level fields
(``card.id``, ``card.space``, ``card.outputs``, ``card.weights`` …) are read as written. The JSON
document itself stays in ``card.data`` (``card["key"]`` reads it) so that the card round-trips
unchanged and provenance records exactly what was used.
"""

import copy
import json
from functools import lru_cache
from pathlib import Path

from SynthMedLib.cards.sections import CHANNEL_KEYS, Conditioning, Latent, NetworkSpec, Scheduler
from SynthMedLib.errors import CardError

SCHEMA_PATH = Path(__file__).with_name("schema.json")
SECTIONS = ("id", "version", "title", "description", "modality", "license", "citation", "source",
            "notes", "space", "outputs", "weights", "pipelines", "auxiliary")


@lru_cache(maxsize=1)
def schema():
    return json.loads(SCHEMA_PATH.read_text())


class Card:
    """A validated model card. ``directory`` is where the card lives (embedded weights beside it)."""

    def __init__(self, data, directory=None):
        validate(data, where=str(directory) if directory else None)
        self.data = data
        self.directory = Path(directory) if directory else None
        self.scheduler = Scheduler.parse(data["scheduler"])
        self.latent = Latent.parse(data["latent"])
        self.conditioning = Conditioning.parse(data.get("conditioning"))
        self.networks = {name: NetworkSpec.parse(spec) for name, spec in data["networks"].items()}

    def __getattr__(self, name):
        if name in SECTIONS:
            return self.data.get(name)
        raise AttributeError(name)

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    def __repr__(self):
        return f"Card({self.data['id']!r}, version={self.data['version']!r})"

    def to_dict(self):
        return copy.deepcopy(self.data)

    # -- convenience used by the pipelines -------------------------------------------------------

    def network_args(self, name):
        """A copy of the constructor arguments of network ``name``."""
        return copy.deepcopy(self.data["networks"][name]["args"])

    def networks_for(self, pipeline):
        """Network names that ``pipeline`` needs; a CardError if the card does not offer it."""
        needed = self.pipelines.get(pipeline)
        if not needed:
            offered = ", ".join(sorted(self.pipelines)) or "none"
            raise CardError(f"model '{self.id}' does not support '{pipeline}' (it offers: {offered})")
        return list(needed)

    def variable(self, name):
        for variable in self.conditioning.variables:
            if variable["name"] == name:
                return variable
        known = ", ".join(self.conditioning.names) or "none"
        raise CardError(f"model '{self.id}' has no conditioning variable '{name}' (it has: {known})")

    @property
    def latent_downsampling(self):
        """How many image voxels one latent voxel covers along each axis (2 per autoencoder level)."""
        return 2 ** (self.networks["autoencoder"].levels - 1)


def _channels(args):
    for key in CHANNEL_KEYS:
        if key in args:
            return args[key]
    raise KeyError("channels")


def validate(data, where=None):
    """Schema validation, then the cross-field checks a schema cannot express.

    Raises CardError naming the field (JSON path) and why. Every problem is reported at once so
    that a user fixing a hand-written card does not go round in circles.
    """
    import jsonschema

    prefix = f"invalid model card {where}: " if where else "invalid model card: "
    if not isinstance(data, dict):
        raise CardError(prefix + "the card must be a JSON object")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    problems = [f"{_json_path(e.absolute_path)}: {_short(e)}" for e in errors]
    if not problems:
        problems = semantic_problems(data)
    if problems:
        raise CardError(prefix + "; ".join(problems))


def _json_path(path):
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _short(error):
    message = error.message
    return message if len(message) < 300 else message[:300] + "…"


def semantic_problems(data):
    problems = []
    networks, weights = data["networks"], data["weights"]
    for name, network in networks.items():
        if network["weights"] not in weights:
            problems.append(f"$.networks.{name}.weights: '{network['weights']}' is not a key of "
                            f"$.weights (keys: {', '.join(sorted(weights)) or 'none'})")
        init_from = network.get("init_from")
        if init_from is not None and init_from not in networks:
            problems.append(f"$.networks.{name}.init_from: no network '{init_from}'")
    for pipeline, names in data["pipelines"].items():
        for name in names:
            if name not in networks:
                problems.append(f"$.pipelines.{pipeline}: needs network '{name}' that the card "
                                f"does not define")
    for role in ("autoencoder", "diffusion"):
        if role not in networks:
            problems.append(f"$.networks: a '{role}' network is required")
    if problems:
        return problems
    problems += _latent_problems(data)
    problems += _conditioning_problems(data)
    problems += _range_problems(data)
    return problems


def _latent_problems(data):
    problems = []
    latent = data["latent"]
    ae_args = data["networks"]["autoencoder"]["args"]
    if ae_args.get("latent_channels") != latent["channels"]:
        problems.append(f"$.latent.channels: {latent['channels']} but the autoencoder's "
                        f"latent_channels is {ae_args.get('latent_channels')}")
    try:
        factor = 2 ** (len(_channels(ae_args)) - 1)
    except KeyError:
        return problems + ["$.networks.autoencoder.args: no channels/num_channels"]
    produced = latent.get("autoencoder_shape", latent["shape"])
    expected = [s // factor for s in data["space"]["shape"]]
    if any(s % factor for s in data["space"]["shape"]) or list(produced) != expected:
        key = "autoencoder_shape" if "autoencoder_shape" in latent else "shape"
        problems.append(f"$.latent.{key}: {list(produced)} but the space shape "
                        f"{data['space']['shape']} divided by the autoencoder's downsampling "
                        f"{factor} is {expected}")
    diff_args = data["networks"]["diffusion"]["args"]
    if diff_args.get("out_channels") != latent["channels"]:
        problems.append(f"$.networks.diffusion.args.out_channels: {diff_args.get('out_channels')} "
                        f"but the latent has {latent['channels']} channels")
    return problems


def _conditioning_problems(data):
    problems = []
    conditioning = data["conditioning"]
    mode, count = conditioning["mode"], len(conditioning["variables"])
    latent_channels = data["latent"]["channels"]
    diff_args = data["networks"]["diffusion"]["args"]
    in_channels = diff_args["in_channels"]
    concat = count if mode in ("concat", "both") else 0
    if in_channels != latent_channels + concat:
        problems.append(f"$.networks.diffusion.args.in_channels: {in_channels} but conditioning "
                        f"mode '{mode}' with {count} variables needs {latent_channels} latent "
                        f"+ {concat} concatenated = {latent_channels + concat}")
    if mode in ("crossattn", "both"):
        for name, network in data["networks"].items():
            args = network["args"]
            if "cross_attention_dim" in args and args["cross_attention_dim"] != count:
                problems.append(f"$.networks.{name}.args.cross_attention_dim: "
                                f"{args['cross_attention_dim']} but there are {count} "
                                f"conditioning variables")
        if not diff_args.get("with_conditioning"):
            problems.append(f"$.networks.diffusion.args.with_conditioning: must be true for "
                            f"conditioning mode '{mode}'")
    names = [v["name"] for v in conditioning["variables"]]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"$.conditioning.variables: '{name}' appears more than once")
    controlnet = conditioning.get("controlnet")
    if "controlnet" in data["networks"]:
        args = data["networks"]["controlnet"]["args"]
        if _channels(args) != _channels(diff_args) or args.get("in_channels") != in_channels:
            problems.append("$.networks.controlnet.args: its channels and in_channels must match "
                            "the diffusion UNet's (its outputs are added to the UNet's)")
    if controlnet and "controlnet" in data["networks"]:
        if args.get("conditioning_embedding_in_channels") != controlnet["channels"]:
            problems.append(f"$.conditioning.controlnet.channels: {controlnet['channels']} but the "
                            f"controlnet's conditioning_embedding_in_channels is "
                            f"{args.get('conditioning_embedding_in_channels')}")
    return problems


def _range_problems(data):
    problems = []
    for i, variable in enumerate(data["conditioning"]["variables"]):
        where = f"$.conditioning.variables[{i}] ({variable['name']})"
        low_high = variable.get("range")
        if low_high and not low_high[0] < low_high[1]:
            problems.append(f"{where}.range: min {low_high[0]} must be below max {low_high[1]}")
        norm = variable.get("normalise")
        if norm and not norm["min"] < norm["max"]:
            problems.append(f"{where}.normalise: min {norm['min']} must be below max {norm['max']}")
    orientation = data["space"]["orientation"]
    axes = {"R": "x", "L": "x", "A": "y", "P": "y", "S": "z", "I": "z"}
    if len({axes[c] for c in orientation}) != 3:
        problems.append(f"$.space.orientation: '{orientation}' names the same axis twice")
    intensity = data["space"]["intensity"]
    if "lower" in intensity and "upper" in intensity and not intensity["lower"] < intensity["upper"]:
        problems.append(f"$.space.intensity: lower {intensity['lower']} must be below upper "
                        f"{intensity['upper']}")
    return problems
