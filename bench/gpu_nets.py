"""The published-size networks (random weights, or demo-brain's shipped ones) and their inputs for
bench/gpu_suite.py, built from the shipped cards.

Imports only torch, MONAI (through SynthMedLib.networks and the sampling engine) and the card loader
(jsonschema): none of SimpleITK, nibabel or nilearn, which the lent GPU machine lacks.
"""

import math
from dataclasses import dataclass, field

import torch

from SynthMedLib.cards import load_card
from SynthMedLib.networks import build_network
from SynthMedLib.sampling.denoiser import Conditioning, Denoiser
from SynthMedLib.sampling.device import autocast

# Per benchmark model: the card, its latent (network axes as the card lists them) and, in tiny mode
# (the CPU check), reduced widths and sizes of the same topology.
FULL = {
    "brainldm": {"card": "brainldm-ukb", "latent": None, "trained": False},
    "demo-brain": {"card": "demo-brain", "latent": None, "trained": True},
    "maisi256": {"card": "maisi-ct-rflow", "latent": [64, 64, 64], "trained": False},
    "maisi512": {"card": "maisi-ct-rflow", "latent": [128, 128, 128], "trained": False},
}
TINY = {
    "brainldm": {"card": "brainldm-ukb", "latent": [4, 8, 4], "trained": False,
                 "channels": {"diffusion": [8, 16, 16], "autoencoder": [4, 8, 8, 8]}},
    "demo-brain": {"card": "demo-brain", "latent": None, "trained": True},
    "maisi256": {"card": "maisi-ct-rflow", "latent": [8, 8, 8], "trained": False,
                 "channels": {"diffusion": [8, 8, 16, 16], "controlnet": [8, 8, 16, 16], "autoencoder": [4, 8, 8]}},
    "maisi512": {"card": "maisi-ct-rflow", "latent": [16, 16, 16], "trained": False,
                 "channels": {"diffusion": [8, 8, 16, 16], "controlnet": [8, 8, 16, 16], "autoencoder": [4, 8, 8]}},
}


@dataclass
class Nets:
    """One model's networks on the device, with what a generate call feeds them."""

    key: str
    card: object
    networks: dict
    latent_shape: tuple          # (C, *spatial)
    image_shape: tuple           # spatial
    scale_factor: float
    channels: dict = field(default_factory=dict)
    _conditionings: dict = field(default_factory=dict, repr=False)

    @property
    def unet(self):
        return self.networks["diffusion"]

    @property
    def autoencoder(self):
        return self.networks["autoencoder"]

    def parameter_bytes(self):
        return sum(p.numel() * p.element_size() for n in self.networks.values() for p in n.parameters())

    def conditioning(self, batch, device, seed=0):
        """Random condition values in the card's normalised range, MAISI's spacing/modality tensors
        and a random label map for its ControlNet, as the generate pipeline passes them (kept: at
        512^3 the label map's 8 bit channels are 4 GiB)."""
        key = (batch, str(device), seed)
        if key not in self._conditionings:
            self._conditionings = {key: self._new_conditioning(batch, device, seed)}
        return self._conditionings[key]

    def _new_conditioning(self, batch, device, seed):
        generator = torch.Generator().manual_seed(seed)
        section = self.card["conditioning"] or {}  # the card's raw section (JSON as shipped)
        variables = section.get("variables") or []
        vector = torch.rand(batch, len(variables), generator=generator).to(device) if variables else None
        unet_kwargs, controlnet_kwargs = {}, {}
        extra = section.get("extra_inputs") or {}
        if "spacing_tensor" in extra:
            spacing = [float(s) * float(extra["spacing_tensor"].get("scale", 1)) for s in self.card["space"]["spacing"]]
            unet_kwargs["spacing_tensor"] = torch.tensor(spacing, device=device).expand(batch, -1)
        if "class_labels" in extra:
            spec = extra["class_labels"]
            code = torch.full((batch,), int(spec["values"][spec["default"]]), dtype=torch.long, device=device)
            unet_kwargs["class_labels"] = controlnet_kwargs["class_labels"] = code
        controlnet_cond = None
        if "controlnet" in self.networks:
            bits = int(section.get("controlnet", {}).get("channels", 8))
            drawn = torch.Generator(device).manual_seed(seed)  # drawn where it is used: 1 G voxels at 512^3
            labels = torch.randint(0, 2, (batch, bits) + self.image_shape, generator=drawn, device=device,
                                   dtype=torch.uint8)
            controlnet_cond = labels.float()
        return Conditioning(vector=vector, mode=section.get("mode", "none"),
                            unconditional_value=float(section.get("unconditional_value", -1.0)),
                            controlnet_cond=controlnet_cond, unet_kwargs=unet_kwargs,
                            controlnet_kwargs=controlnet_kwargs)

    def denoiser(self, batch, device, precision="fp32", seed=0):
        return Denoiser(self.unet, self.conditioning(batch, device, seed), controlnet=self.networks.get("controlnet"),
                        autocast=autocast(device, precision))


def model_config(key, tiny):
    return (TINY if tiny else FULL)[key]


def build(key, device, tiny=False, seed=0):
    """The networks the card's generate pipeline needs, on ``device``, initialised there (550 M
    parameters initialise in seconds on a GPU, minutes on a CPU)."""
    config = model_config(key, tiny)
    card = load_card(config["card"])
    channels = config.get("channels", {})
    torch.manual_seed(seed)
    networks = {}
    for name in card.networks_for("generate"):
        with torch.device(device):
            network = build_network(card, name, channels=channels.get(name), device=device)
        if config["trained"]:
            load_shipped_weights(card, name, network)
        else:
            undo_zero_init(network)
        networks[name] = network.to(device).eval().requires_grad_(False)
    latent = tuple(config["latent"] or card.latent.shape)
    factor = card.latent_downsampling
    scale = card.latent.scale_factor
    return Nets(key, card, networks, (int(card.latent.channels),) + latent, tuple(n * factor for n in latent),
                1.0 if scale == "checkpoint" else float(scale), channels)


def load_shipped_weights(card, name, network):
    from safetensors.torch import load_file

    spec = card.weights[card.networks[name].weights]
    network.load_state_dict(load_file(str(card.directory / spec["file"])))


def undo_zero_init(network):
    """MONAI zero-initialises each block's last convolution/projection (so a fresh block is the
    identity): with random weights the UNet would then output exactly 0 and every sampler would
    return its input. Re-initialise those layers as torch does by default."""
    for module in network.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (torch.nn.Conv3d, torch.nn.Linear)) and weight is not None and not weight.any():
            module.reset_parameters()


def set_sdpa(network, enabled):
    """Toggle MONAI's attention blocks between torch's scaled_dot_product_attention and the explicit
    einsum/softmax path (a kernel choice: same weights, same function up to rounding)."""
    count = 0
    for module in network.modules():
        if hasattr(module, "use_flash_attention"):
            module.use_flash_attention = bool(enabled)
            count += 1
    return count


def sdpa_state(network):
    states = {bool(m.use_flash_attention) for m in network.modules() if hasattr(m, "use_flash_attention")}
    return states.pop() if len(states) == 1 else None


def flops_unet_step(nets, device_hint, batch=1):
    """FLOPs of one unguided UNet(+ControlNet) step, counted on the meta device (no memory, no compute)."""
    from gpu_measure import count_flops

    card = nets.card
    with torch.device("meta"):
        metas = {name: build_network(card, name, channels=nets.channels.get(name), device=device_hint)
                 for name in card.networks_for("generate") if name != "autoencoder"}
    conditioning = _to_meta(nets.conditioning(batch, device_hint))
    denoiser = Denoiser(metas["diffusion"], conditioning, controlnet=metas.get("controlnet"))
    x = torch.empty((batch,) + nets.latent_shape, device="meta")
    return count_flops(lambda: denoiser(x, 500))


def flops_decode(nets, device_hint, batch=1):
    """FLOPs of one whole decode, counted on meta at a latent of at most 32 per axis and scaled by the
    voxel count (the decoder's convolutions keep their grids, so the count is proportional, up to
    the overlap of MAISI's split convolutions, 24% too high at 8^3; MAISI's decoder allocates host
    memory even on meta, 34 GB at 128^3)."""
    from gpu_measure import count_flops

    # MAISI's fp16 group norms need autocast, which meta tensors do not get; FLOPs are the same without.
    plain = {"norm_float16": False} if "norm_float16" in nets.card.networks["autoencoder"].args else {}
    with torch.device("meta"):
        decoder = build_network(nets.card, "autoencoder", channels=nets.channels.get("autoencoder"),
                                device=device_hint, **plain)
    small = tuple(min(n, 32) for n in nets.latent_shape[1:])  # MAISI's split convolutions overlap: not at 8
    z = torch.empty((batch, nets.latent_shape[0]) + small, device="meta")
    flops = count_flops(lambda: decoder.decode_stage_2_outputs(z))
    return flops * math.prod(nets.latent_shape[1:]) / math.prod(small)


def _to_meta(conditioning):
    def meta(value):
        return None if value is None else torch.empty(value.shape, dtype=value.dtype, device="meta")

    return Conditioning(vector=meta(conditioning.vector), mode=conditioning.mode,
                        unconditional_value=conditioning.unconditional_value,
                        controlnet_cond=meta(conditioning.controlnet_cond),
                        unet_kwargs={k: meta(v) for k, v in conditioning.unet_kwargs.items()},
                        controlnet_kwargs={k: meta(v) for k, v in conditioning.controlnet_kwargs.items()})
