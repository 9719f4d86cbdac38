"""Reference outputs of the samplers and pipelines, to prove that a refactoring leaves every
shipped sampler bit-identical.

``python Testing/sampling_reference.py`` writes Testing/fixtures/sampling_reference.pt from the
code as it is (it was first written before the samplers became objects, and re-written once when
whole decodes became one sample at a time, which moved decoded images by <= 5e-6 (float32 rounding
of batched vs single convolutions) and left every latent bit-identical; the commit is recorded in
the file); test_sampling_reference.py recomputes ``compute()`` and compares with torch.equal.

Kept tiny (< 200 KB): the demo-brain networks run on a 4x4x4 latent (they are convolutional), the
rectified-flow card is a tiny random one, and full-size images are kept as a sha256 of their bytes
plus a small crop (a mismatch shows how far off it is, not only that it is).
Registration is not bit-reproducible between runs (the optimiser's sampling differs by ~1e-7 mm),
so the counterfactual and progression runs use a pinned, identity registration: what is compared
is the model's part (encode, inversion, regeneration, ControlNet sampling, decode, back to native).
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FIXTURE = HERE / "fixtures" / "sampling_reference.pt"
LATENT = (8, 4, 4, 4)
CONDITIONS = [{"age": 60, "sex": "F", "diagnosis": "CN"}, {"age": 85, "sex": "M", "diagnosis": "AD"}]


def digest(array):
    array = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def crop(array):
    """A small corner-to-centre block of an image (z, y, x) or a batch of them, as a tensor."""
    tensor = torch.as_tensor(np.ascontiguousarray(array))
    z, y, x = (n // 2 for n in tensor.shape[-3:])
    return tensor[..., z - 2:z + 2, y - 2:y + 2, x - 2:x + 2].clone()


def image_entry(out, name, image):
    array = sitk.GetArrayFromImage(image) if isinstance(image, sitk.Image) else np.asarray(image)
    out[f"{name}/sha256"] = digest(array)
    out[f"{name}/crop"] = crop(array)


def scan():
    """A deterministic head-like scan on an oblique 5 mm grid (numbers only: no rendering)."""
    size = (30, 36, 30)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in size[::-1]], indexing="ij")
    radius = np.sqrt((x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 0.8) ** 2)
    rng = np.random.default_rng(0)
    array = (np.clip(1.2 - radius, 0, 1) * 800 + (radius < 0.3) * -300
             + rng.normal(0, 5, radius.shape)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((5.0, 5.0, 5.0))
    image.SetOrigin((-72.5, -70.0, -60.0))
    return image


def pinned_cache(image, space):
    """An InversionCache whose registration of ``image`` is the identity (reproducible bits)."""
    from SynthMedLib.pipelines.inversion_cache import InversionCache, scan_digest
    from SynthMedLib.spaces.intensity import apply_intensity, fit_intensity
    from SynthMedLib.spaces.mapping import NativeMapping, grid_of, resample_to_model

    transform = sitk.AffineTransform(3)
    resampled = resample_to_model(image, space, transform)
    intensity = fit_intensity(sitk.GetArrayViewFromImage(resampled), space.intensity)
    mapping = NativeMapping(space, transform, intensity, grid_of(image), 1.0)
    cache = InversionCache()
    cache.registration((scan_digest(image), repr(space)),
                       lambda: (apply_intensity(resampled, mapping=intensity), mapping))
    return cache


def rflow_card_data():
    """The tiny test card with MAISI's rectified-flow schedule."""
    from pipeline_fixtures import tiny_card_data

    data = tiny_card_data()
    data["id"] = "tiny-rflow"
    data["scheduler"] = {"type": "rectified_flow", "num_train_timesteps": 1000,
                         "prediction_type": "v_prediction", "default_steps": 3,
                         "use_discrete_timesteps": False, "use_timestep_transform": True}
    return data


def ddpm_card_data():
    """The tiny test card with a 12-timestep DDPM schedule (DDPM runs every timestep)."""
    from pipeline_fixtures import tiny_card_data

    data = tiny_card_data()
    data["id"] = "tiny-ddpm"
    data["scheduler"] = dict(data["scheduler"], num_train_timesteps=12, default_steps=4)
    return data


def compute():
    """Every reference output, computed with the code as it is now."""
    # The only place that names the library's API: adapt these calls, never the inputs.
    from pipeline_fixtures import tiny_model
    from SynthMedLib.cards import Card
    from SynthMedLib.model import Model
    from SynthMedLib.networks import build_network
    from SynthMedLib.pipelines.counterfactual import counterfactual
    from SynthMedLib.pipelines.generate import generate
    from SynthMedLib.pipelines.latent_io import condition_vectors
    from SynthMedLib.pipelines.progression import progression
    from SynthMedLib.sampling.denoiser import Conditioning, Denoiser
    from SynthMedLib.sampling.samplers import invert, sample
    from SynthMedLib.spaces import ModelSpace

    torch.set_num_threads(1)
    out = {}
    demo = Model.from_card("demo-brain", device="cpu", needs="progression")
    card = demo.card
    vectors = condition_vectors(card, CONDITIONS)
    noise = torch.randn((2,) + LATENT, generator=torch.Generator().manual_seed(11))

    def denoiser(guidance=1.0, model=demo, vec=vectors):
        return Denoiser(model.networks["diffusion"], Conditioning(vec, "crossattn"),
                        guidance=guidance)

    # demo-brain: each DDPM-type sampler, with guidance and the DPM spacings
    runs = {"dpm++2m": dict(sampler="dpm++2m", steps=5),
            "dpm++2m-time": dict(sampler="dpm++2m", steps=5, spacing="time"),
            "dpm++2m-karras": dict(sampler="dpm++2m", steps=5, spacing="karras"),
            "ddim": dict(sampler="ddim", steps=5),
            "ddim-eta1": dict(sampler="ddim", steps=5, eta=1.0,
                              generator=torch.Generator().manual_seed(5))}
    for name, kwargs in runs.items():
        out[f"demo/{name}"] = sample(denoiser(guidance=2.0), noise.clone(), card.scheduler, **kwargs)
    # demo-brain: DDIM inversion and regeneration (the counterfactual's core)
    clean = out["demo/ddim"][:1]
    inverted = invert(denoiser(vec=vectors[:1]), clean, card.scheduler, steps=5)
    out["demo/inverted"] = inverted
    out["demo/regenerated"] = sample(denoiser(), inverted.expand(2, *inverted.shape[1:]), card.scheduler,
                                     sampler="ddim", steps=5)
    # demo-brain generate, end to end (default sampler; and DDIM), two seeds in one batch
    for sampler in (None, "ddim"):
        samples = generate(demo, CONDITIONS[1], count=2, seed=3, sampler=sampler, steps=3,
                           guidance=1.5, batch_size=2)
        for i, item in enumerate(samples):
            image_entry(out, f"generate-{sampler or 'default'}/{i}/image", item.image)
            image_entry(out, f"generate-{sampler or 'default'}/{i}/labels", item.labels)

    # DDPM over every timestep of a short schedule
    torch.manual_seed(0)
    ddpm = Card(ddpm_card_data())
    ddpm_model = Model.from_networks(ddpm, {n: build_network(ddpm, n) for n in ("autoencoder", "diffusion")},
                             weights_sha256={"autoencoder": "random", "diffusion": "random"})
    small = torch.randn((2,) + LATENT, generator=torch.Generator().manual_seed(12))
    out["ddpm/ddpm"] = sample(denoiser(model=ddpm_model, vec=condition_vectors(ddpm, CONDITIONS)),
                              small, ddpm.scheduler, sampler="ddpm", steps=12,
                              generator=torch.Generator().manual_seed(6))

    # rectified flow: Euler, DPM-Solver++ on the flow, inversion, generate end to end
    torch.manual_seed(1)
    rflow = Card(rflow_card_data())
    rflow_model = Model.from_networks(rflow, {n: build_network(rflow, n) for n in ("autoencoder", "diffusion")},
                              weights_sha256={"autoencoder": "random", "diffusion": "random"})
    with torch.no_grad():  # MONAI zero-initialises the UNet's output layer
        for parameter in rflow_model.networks["diffusion"].parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2)) * 0.02)
    flow_vectors = condition_vectors(rflow, CONDITIONS)
    flow_noise = torch.randn((2, 8, 8, 6, 8), generator=torch.Generator().manual_seed(13))
    for name in ("euler", "dpm++2m"):
        out[f"rflow/{name}"] = sample(denoiser(model=rflow_model, vec=flow_vectors), flow_noise.clone(),
                                      rflow.scheduler, sampler=name, steps=4)
    out["rflow/inverted"] = invert(denoiser(model=rflow_model, vec=flow_vectors[:1]),
                                   out["rflow/euler"][:1], rflow.scheduler, steps=4)
    for i, item in enumerate(generate(rflow_model, CONDITIONS[0], count=1, seed=4)):
        image_entry(out, f"rflow/generate/{i}/image", item.image)

    # counterfactual and progression end to end on the tiny test model (pinned registration)
    image = scan()
    space = ModelSpace.from_card(tiny_model().card)
    cache = pinned_cache(image, space)
    series = counterfactual(tiny_model(), image, CONDITIONS[0], [{"age": 75}, {"age": 90}],
                            cache=cache, volume_course=None)
    out["counterfactual/inverted"] = next(iter(cache._memory.values()))
    image_entry(out, "counterfactual/model_images", series.model_space["images"])
    for i, result in enumerate(series.results):
        image_entry(out, f"counterfactual/{i}/image", result.image)
        image_entry(out, f"counterfactual/{i}/labels", result.labels)
    series = progression(tiny_model(), image, CONDITIONS[1], [2, 6], draws=2, seed=7,
                         cache=pinned_cache(image, space), volume_course=None)
    image_entry(out, "progression/model_images", series.model_space["images"])
    for i, result in enumerate(series.results):
        image_entry(out, f"progression/{i}/image", result.image)
    return out


def main():
    out = compute()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    FIXTURE.parent.mkdir(exist_ok=True)
    torch.save({"commit": commit, "outputs": out}, FIXTURE)
    print(f"{FIXTURE}: {len(out)} entries, {FIXTURE.stat().st_size} bytes, commit {commit}")


if __name__ == "__main__":
    main()
