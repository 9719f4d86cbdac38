"""A card from a MONAI bundle folder (``configs/inference.json`` + ``models/``).

Bundles describe networks as ``{"_target_": class, **args}`` with ``@name`` references to other
config entries; that is enough to write the networks, latent and scheduler sections of a card.
What a bundle does not state (conditioning names and ranges, the model grid's spacing) is filled
from ``configs/metadata.json`` where possible and otherwise given neutral values, listed in the
card's notes so that the user knows what to check.
"""

import json
import re
from pathlib import Path

from SynthMedLib.errors import CardError

# Bundle class names (today's MONAI, their module paths, the old generative package) -> ours.
_ROLE_OF_CLASS = {
    "AutoencoderKL": ("autoencoder", "monai.networks.nets.AutoencoderKL"),
    "DiffusionModelUNet": ("diffusion", "monai.networks.nets.DiffusionModelUNet"),
    "ControlNet": ("controlnet", "monai.networks.nets.ControlNet"),
    "AutoencoderKlMaisi": ("autoencoder",
                           "monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi"),
    "DiffusionModelUNetMaisi": ("diffusion",
                                "monai.apps.generation.maisi.networks.diffusion_model_unet_maisi.DiffusionModelUNetMaisi"),
    "ControlNetMaisi": ("controlnet", "monai.apps.generation.maisi.networks.controlnet_maisi.ControlNetMaisi"),
}
# bundle scheduler class -> (training noise process, the sampler the bundle runs)
_SCHEDULERS = {"DDIMScheduler": ("ddpm", "ddim"), "DDPMScheduler": ("ddpm", "ddpm"),
               "RFlowScheduler": ("rectified_flow", "rflow")}
_RFLOW_ARGS = ("use_discrete_timesteps", "use_timestep_transform", "sample_method", "loc", "scale",
               "transform_scale", "base_img_size_numel", "spatial_dim")
_WEIGHT_FILE = re.compile(r"['\"/]([\w.\-]+\.(?:pt|pth|safetensors))['\"]")
_ROLE_WORDS = {"autoencoder": ("autoencoder", "vae"), "diffusion": ("diffusion", "unet", "model"),
               "controlnet": ("controlnet",)}


def is_bundle(folder):
    folder = Path(folder)
    return (folder / "configs" / "inference.json").is_file() and (folder / "models").is_dir()


def card_from_bundle(folder, model_id):
    folder = Path(folder)
    config = _read_json(folder / "configs" / "inference.json")
    metadata = _read_json(folder / "configs" / "metadata.json", required=False)
    networks, formats = _networks(config)
    if "autoencoder" not in networks or "diffusion" not in networks:
        raise CardError(f"{folder}: the bundle defines no autoencoder + diffusion UNet pair that "
                        f"SynthMed knows (found: {', '.join(networks) or 'none'})")
    ae_args, unet_args = networks["autoencoder"]["args"], networks["diffusion"]["args"]
    channel_key = "channels" if "channels" in ae_args else "num_channels"
    factor = 2 ** (len(ae_args[channel_key]) - 1)
    shape = _config_vector(config, "output_size", int) or _spatial_shape(metadata) or [factor * 8] * 3
    latent_channels = ae_args.get("latent_channels", 3)
    weights = _weights(config, folder, networks, formats)
    conditioning, notes = _conditioning(unet_args, latent_channels, metadata)
    spacing = _config_vector(config, "spacing", (int, float))
    spacing_known = spacing is not None
    if not spacing_known:
        notes.append("the bundle does not state the voxel spacing: 1 mm assumed")
    if not _config_vector(config, "output_size", int) and not _spatial_shape(metadata):
        notes.append(f"metadata.json gives no spatial_shape: {shape} assumed")
    return {
        "id": model_id,
        "version": str(metadata.get("version", "0.0.0")) if _semver(metadata.get("version")) else "0.0.0",
        "title": metadata.get("name") or metadata.get("task") or f"MONAI bundle {folder.name}",
        "description": metadata.get("description", ""),
        "modality": _modality(metadata),
        "license": metadata.get("copyright") or "see the bundle's LICENSE",
        "citation": (metadata.get("references") or [f"see {folder / 'docs'}"])[0],
        "source": str((folder / "configs" / "inference.json").resolve()),
        "notes": [f"converted from the MONAI bundle at {folder.resolve()}"] + notes,
        # A MONAI bundle trains on LoadImage arrays, whose axes are (x, y, z).
        "space": {"array_axes": "xyz", "shape": shape, "spacing": spacing if spacing_known else [1.0, 1.0, 1.0],
                  "orientation": "RAS", "template": None,
                  "intensity": {"method": "minmax", "range": [0.0, 1.0]}},
        "networks": networks,
        "latent": {"channels": latent_channels, "shape": [s // factor for s in shape],
                   "scale_factor": _scale_factor(config, formats)},
        "scheduler": _scheduler(config),
        "conditioning": conditioning,
        "outputs": {"image": {"suffix": "T1w" if "MR" in _modality(metadata) else "image"}},
        "weights": weights,
        "pipelines": {"generate": [n for n in ("autoencoder", "diffusion", "controlnet") if n in networks]},
    }


def _read_json(path, required=True):
    if not path.is_file():
        if required:
            raise CardError(f"{path} not found: not a MONAI bundle")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CardError(f"{path} is not valid JSON: line {error.lineno}: {error.msg}") from None


def _networks(config):
    found, formats = {}, {}
    for key, value in config.items():
        if not isinstance(value, dict) or "_target_" not in value or "mask" in key.lower():
            continue
        target = str(value["_target_"])
        class_name = target.rsplit(".", 1)[-1]
        if class_name not in _ROLE_OF_CLASS:
            continue
        role, ours = _ROLE_OF_CLASS[class_name]
        if role in found:
            continue
        args = {k: _resolve(config, v, f"{key}.{k}") for k, v in value.items()
                if not k.startswith("_")}
        legacy = target.startswith("generative.") or bool(config.get("load_old"))
        if "Maisi" not in class_name and "num_channels" in args:
            args["channels"] = args.pop("num_channels")  # the old package's spelling
        found[role] = {"class": ours, "args": args, "weights": role}
        formats[role] = "maisi" if "Maisi" in class_name else ("monai-generative" if legacy else "monai")
    return found, formats


def _resolve(config, value, where, depth=0):
    if isinstance(value, list):
        return [_resolve(config, v, where, depth) for v in value]
    if isinstance(value, str) and value.startswith("@") and depth < 8:
        name = value[1:]
        if name not in config:
            raise CardError(f"bundle config: {where} refers to '@{name}', which is not defined")
        return _resolve(config, config[name], where, depth + 1)
    if isinstance(value, str) and value.startswith("$"):
        raise CardError(f"bundle config: {where} is an expression ({value}) SynthMed does not "
                        f"evaluate; replace it with its value or write a card by hand")
    return value


def _weights(config, folder, networks, formats):
    available = {p.name for p in (folder / "models").iterdir() if p.is_file()}
    weights = {}
    for role in networks:
        file = None
        for key, value in config.items():
            if not isinstance(value, str) or "mask" in key.lower() or "path" not in key.lower():
                continue
            if any(word in key.lower() for word in _ROLE_WORDS[role]):
                match = _WEIGHT_FILE.search(value)
                if match:
                    file = match.group(1)
                    break
        if file is None and role == "diffusion" and "model.pt" in available:
            file = "model.pt"  # the bundle convention for the main network
        if file is None:
            raise CardError(f"bundle config: cannot tell which file in models/ holds the {role} "
                            f"weights (files: {', '.join(sorted(available)) or 'none'})")
        weights[role] = {"file": file, "url": None, "sha256": None, "size": None,
                         "format": formats[role]}
    return weights


def _config_vector(config, key, kind):
    """A 3-vector config entry such as MAISI's output_size / spacing, references resolved."""
    if key not in config:
        return None
    try:
        value = _resolve(config, config[key], key)
    except CardError:
        return None
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, kind) for v in value):
        return list(value)
    return None


def _spatial_shape(metadata):
    data_format = metadata.get("network_data_format", {})
    for section in ("outputs", "inputs"):
        for entry in data_format.get(section, {}).values():
            shape = entry.get("spatial_shape") if isinstance(entry, dict) else None
            if isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) for s in shape):
                return shape
    return None


def _modality(metadata):
    text = json.dumps(metadata.get("network_data_format", {})) + str(metadata.get("image_classes", ""))
    return "MR-T1w" if ("T1w" in text or "MR" in text) else ("CT" if "CT" in text else "unknown")


def _semver(value):
    return isinstance(value, str) and re.match(r"^\d+\.\d+\.\d+$", value)


def _conditioning(unet_args, latent_channels, metadata):
    notes = []
    concat = unet_args.get("in_channels", latent_channels) - latent_channels
    cross = unet_args.get("cross_attention_dim") if unet_args.get("with_conditioning") else None
    if concat and cross:
        mode, count = "both", cross
    elif cross:
        mode, count = "crossattn", cross
    elif concat:
        mode, count = "concat", concat
    else:
        mode, count = ("class" if unet_args.get("num_class_embeds") else "none"), 0
    names = []
    for entry in metadata.get("network_data_format", {}).get("inputs", {}).values():
        channel_def = entry.get("channel_def") if isinstance(entry, dict) else None
        if isinstance(channel_def, dict) and len(channel_def) == count:
            names = [re.sub(r"[^a-z0-9]+", "_", str(channel_def[k]).lower()).strip("_")
                     for k in sorted(channel_def, key=int)]
    if count and not names:
        names = [f"c{i}" for i in range(count)]
        notes.append("conditioning variables are unnamed in the bundle: named c0.. with range [0, 1]")
    elif count:
        notes.append("conditioning ranges are not in the bundle: [0, 1] assumed (edit the card)")
    variables = [{"name": n if re.match(r"^[a-z]", n) else f"c_{n}", "unit": "normalised",
                  "range": [0, 1]} for n in names]
    return {"mode": mode, "variables": variables}, notes


def _scale_factor(config, formats):
    value = config.get("scale_factor")
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    if formats.get("diffusion") == "maisi":
        return "checkpoint"
    return 1.0


def _scheduler(config):
    for key, value in config.items():
        if not isinstance(value, dict) or "mask" in key.lower():
            continue
        known = _SCHEDULERS.get(str(value.get("_target_", "")).rsplit(".", 1)[-1])
        if known is None:
            continue
        kind, sampler = known
        scheduler = {"type": kind, "default_sampler": sampler,
                     "num_train_timesteps": int(value.get("num_train_timesteps", 1000)),
                     "prediction_type": value.get("prediction_type",
                                                  "v_prediction" if kind == "rectified_flow" else "epsilon")}
        scheduler.update({k: value[k] for k in _RFLOW_ARGS if k in value and kind == "rectified_flow"})
        if "schedule" in value:
            scheduler["beta_schedule"] = value["schedule"]
        for name in ("beta_start", "beta_end", "clip_sample"):
            if name in value:
                scheduler[name] = value[name]
        return scheduler
    return {"type": "ddpm", "num_train_timesteps": 1000, "beta_schedule": "scaled_linear_beta",
            "beta_start": 0.0015, "beta_end": 0.0205, "prediction_type": "epsilon"}
