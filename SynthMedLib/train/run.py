"""One training stage from its config, top to bottom: card -> data -> networks -> train -> export."""

import json
from pathlib import Path

import numpy as np
import torch

from SynthMedLib.errors import WeightsError
from SynthMedLib.train import checkpoint as ckpt
from SynthMedLib.train.config import load_config
from SynthMedLib.train.distributed import Distributed
from SynthMedLib.train.export import export_network, load_shipped
from SynthMedLib.train.loop import train


def _card(config):
    from SynthMedLib.cards import read_card
    return read_card(config["card"])


def _network(card, name, seed):
    from SynthMedLib.networks.build import build_network
    # Same seed on every rank: DDP expects identical initial weights (it also broadcasts them).
    torch.manual_seed(seed)
    return build_network(card, name)


def _dataset(config, card, dist, progress):
    from SynthMedLib.train.dataset import load_dataset
    # Rank 0 renders the cohort once; the others wait, then read the same cache.
    if dist.is_main:
        load_dataset(config["dataset"], card, progress=progress)
    dist.barrier()
    return load_dataset(config["dataset"], card, progress=False)


def _latents(card, data, config, dist, progress):
    """Posterior (mu, sigma) of every item under the shipped autoencoder, cached beside the data
    (keyed by the autoencoder's sha256) and the scale factor that gives the latents unit variance."""
    from SynthMedLib.train.autoencoder import encode_dataset
    from SynthMedLib.train.diffusion import Latents
    sha = card.weights[card.networks["autoencoder"].weights]["sha256"] or "unset"
    path = data.folder / f"latents-{sha[:16]}.npz"
    if dist.is_main and not path.exists():
        autoencoder = load_shipped(card, "autoencoder", _network(card, "autoencoder", 0))
        mu, sigma = encode_dataset(autoencoder, data.images, progress=progress,
                                   device=dist.device(config.get("device", "auto")))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, mu=mu, sigma=sigma)
        tmp.rename(path)
    dist.barrier()
    with np.load(path) as stored:
        mu, sigma = stored["mu"], stored["sigma"]
    scale = config.get("scale_factor") or float(1.0 / mu.std())
    return Latents(mu, sigma, scale)


def run_stage(config_path, overrides=None, progress=True, cancel=None, export=True, export_only=False):
    config = load_config(config_path, overrides)
    torch.set_num_threads(int(config["threads"]))
    dist = Distributed()
    card = _card(config)
    data = _dataset(config, card, dist, progress)
    stage_name = config["stage"]
    network = _network(card, stage_name, int(config["seed"]))
    fresh = ckpt.find_checkpoint(config["run_dir"]) is None
    if fresh and config.get("init_from"):
        # Fine-tuning: start from trained weights (e.g. a CPU-trained model continued on a GPU).
        from safetensors.torch import load_file
        network.load_state_dict(load_file(config["init_from"]))
    card_updates = {}

    if stage_name == "autoencoder":
        from SynthMedLib.train.autoencoder import AutoencoderStage
        stage = AutoencoderStage(network, data, config)
    else:
        from SynthMedLib.train.diffusion import conditions_of
        latents = _latents(card, data, config, dist, progress)
        conditions = conditions_of(card, data.meta)
        if stage_name == "diffusion":
            from SynthMedLib.train.diffusion import DiffusionStage
            stage = DiffusionStage(network, latents, conditions, card, config)
            card_updates = {"latent": {"scale_factor": latents.scale_factor}}
        else:
            from SynthMedLib.train.controlnet import ControlNetStage, init_from_unet
            unet = load_shipped(card, "diffusion", _network(card, "diffusion", 0))
            if fresh and not config.get("init_from"):
                init_from_unet(network, unet)
            stage = ControlNetStage(network, unet, latents, conditions, data.meta, card, config)

    if export_only:
        return {"step": ckpt.read_state(ckpt.find_checkpoint(config["run_dir"]))["step"],
                "resumed_from": None, "last_losses": {},
                "exported": str(export_checkpoint(config, stage_name, card_updates))}
    result = train(stage, config, config["run_dir"], progress=progress, cancel=cancel)
    if export and dist.is_main and result["step"] >= int(config["steps"]):
        result["exported"] = str(export_checkpoint(config, stage_name, card_updates))
        (Path(config["run_dir"]) / "result.json").write_text(json.dumps(result, indent=1))
    return result


def export_checkpoint(config, stage_name, card_updates):
    """Export the run's newest checkpoint (its EMA weights when kept) beside the card; the
    safetensors metadata says which step of how many it is, so an interim export is visible."""
    from safetensors.torch import load_file
    folder = ckpt.find_checkpoint(config["run_dir"])
    if folder is None:
        raise WeightsError(f"{config['run_dir']} has no checkpoint to export")
    name = f"ema_{stage_name}" if (Path(folder) / f"ema_{stage_name}.safetensors").exists() else stage_name
    step = ckpt.read_state(folder)["step"]
    return export_network(config["card"], stage_name, load_file(str(Path(folder) / f"{name}.safetensors")),
                          card_updates, metadata={"stage": stage_name, "step": step,
                                                  "of_steps": config["steps"], "source": name})
