"""The demo model's evaluation, top to bottom: held-out references -> autoencoder reconstruction
-> samples under controlled conditions -> control, agreement, realism, diversity, memorisation,
speed -> metrics.json (the report and plots are written from it by report.py)."""

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from SynthMedLib.evaluate import metrics
from SynthMedLib.evaluate.reference import Reference, held_out_subjects, noisy_and_clean
from SynthMedLib.evaluate.sampling import generate_arrays
from SynthMedLib.model import Model

SWEEP_AGES = (50, 60, 70, 80, 90)
TARGETS = {"psnr_db": 30.0, "spearman": 0.7, "realism": 0.9, "ms_ssim_margin": 0.05, "seconds": 10.0}


@torch.no_grad()
def reconstruction_psnr(autoencoder, images, labels, reference=None):
    """PSNR inside the brain of encode(mean) -> decode against ``reference`` (default: the input
    itself), and the decoded labels' accuracy."""
    psnrs, accuracy = [], []
    for index, (image, label) in enumerate(zip(images, labels)):
        mu, _ = autoencoder.encode(torch.from_numpy(np.array(image))[None, None])
        out = autoencoder.decode(mu)
        brain = label > 0
        target = image if reference is None else reference[index]
        psnrs.append(metrics.psnr_in_mask(target, out[0, 0].clamp(0, 1).numpy(), brain))
        accuracy.append(float((out[0, 1:].argmax(0).numpy() == label)[brain].mean()))
    return psnrs, accuracy


def evaluate(card, training_data, cache_dir, guidance=1.0, subjects=20, workers=2, progress=True):
    """Every measurement of the demo model's report for ``card``; ``training_data`` is the CohortData it was
    trained on (for the memorisation check)."""
    voxel_ml = float(np.prod(card["space"]["spacing"])) / 1000.0
    say = (lambda text: tqdm.write(text)) if progress else (lambda text: None)
    say("rendering held-out references")
    sweep = Reference(held_out_subjects("F", "CN", subjects), SWEEP_AGES, card, cache_dir, workers, progress)
    cn75 = Reference(held_out_subjects("F", "CN", 16, start=2_000_000), [75], card, cache_dir, workers, progress)
    ad75 = Reference(held_out_subjects("F", "AD", subjects), [75], card, cache_dir, workers, progress)
    model = Model.from_card(card, device="cpu", needs="generate")
    networks = model.networks
    result = {"model": card["id"], "version": card["version"], "guidance": guidance}

    say("autoencoder reconstruction")
    images = sweep.images[:, [0, 2, 4]].reshape(-1, *sweep.images.shape[2:])
    labels = sweep.labels[:, [0, 2, 4]].reshape(-1, *sweep.labels.shape[2:])
    psnrs, accuracy = reconstruction_psnr(networks["autoencoder"], images, labels)
    # The same held-out subjects rendered without noise: the reconstruction against the anatomy,
    # and the noisy image's own PSNR against it (the ceiling for any denoising reconstruction).
    clean_psnr, noise_floor = [], []
    for subject in sweep.subjects[:5]:
        for age in (SWEEP_AGES[0], SWEEP_AGES[2], SWEEP_AGES[4]):
            noisy, clean, clean_labels = noisy_and_clean(subject, age, card)
            clean_psnr += reconstruction_psnr(networks["autoencoder"], [noisy], [clean_labels],
                                              reference=[clean])[0]
            noise_floor.append(metrics.psnr_in_mask(clean, noisy, clean_labels > 0))
    result["autoencoder"] = {"images": len(psnrs), "psnr_mean": float(np.mean(psnrs)),
                             "psnr_min": float(np.min(psnrs)), "label_accuracy": float(np.mean(accuracy)),
                             "psnr_vs_noise_free_mean": float(np.mean(clean_psnr)),
                             "noisy_input_vs_noise_free_mean": float(np.mean(noise_floor))}

    say("sampling")
    ages = np.linspace(50, 90, 32)
    conditions = ([{"age": float(a), "sex": "F", "diagnosis": "CN"} for a in ages]
                  + [{"age": 75.0, "sex": "F", "diagnosis": "CN"}] * 16
                  + [{"age": 75.0, "sex": "F", "diagnosis": "AD"}] * 16)
    seeds = list(range(len(conditions)))
    samples, sample_labels, provenance = generate_arrays(model, conditions, seeds, guidance=guidance)
    result.update(sampler=provenance["sampler"], steps=provenance["steps"])
    volumes = [metrics.label_volumes(label, voxel_ml) for label in sample_labels]
    means = [metrics.tissue_means(image, labels) for image, labels in zip(samples, sample_labels)]

    sweep_vent = [v["ventricles_ml"] for v in volumes[:32]]
    cn_vent = [v["ventricles_ml"] for v in volumes[32:48]]
    ad_vent = [v["ventricles_ml"] for v in volumes[48:]]
    result["control"] = {"ages": ages.tolist(), "ventricles_ml": sweep_vent,
                         "spearman": metrics.spearman(ages, sweep_vent),
                         "cn75_ventricles_mean": float(np.mean(cn_vent)),
                         "ad75_ventricles_mean": float(np.mean(ad_vent)),
                         "cohort_cn75_ventricles_mean": float(cn75.volumes["ventricles_ml"].mean()),
                         "cohort_ad75_ventricles_mean": float(ad75.volumes["ventricles_ml"].mean())}
    order = [metrics.tissue_order_holds(m) for m in means]
    result["agreement"] = {"holds": int(sum(order)), "samples": len(order),
                           "tissue_means": means}

    inside = []
    for condition, volume in zip(conditions, volumes):
        reference = ad75 if condition["diagnosis"] == "AD" else sweep
        bands = {k: reference.band(k, condition["age"]) for k in metrics.VOLUME_KEYS}
        inside.append({k: bands[k][0] <= volume[k] <= bands[k][1] for k in metrics.VOLUME_KEYS})
    result["realism"] = {"fraction": float(np.mean([all(i.values()) for i in inside])),
                         "per_volume": {k: float(np.mean([i[k] for i in inside])) for k in metrics.VOLUME_KEYS},
                         "volumes": volumes}

    say("diversity and memorisation")
    result["diversity"] = {"samples_ms_ssim": metrics.mean_pairwise_ms_ssim(samples[32:48]),
                           "cohort_ms_ssim": metrics.mean_pairwise_ms_ssim(cn75.images[:, 0])}
    subject_ids = [m["seed"] for m in training_data.meta]
    nearest = metrics.nearest_distances(samples, training_data.images)
    result["memorisation"] = {
        "nearest_training_rmse_min": float(nearest.min()),
        "nearest_training_rmse_mean": float(nearest.mean()),
        "closest_two_training_subjects_rmse": metrics.closest_different_subjects(
            training_data.images, subject_ids)}
    # The same check with the noise smoothed out of both sides (reported beside the target's raw
    # figure, not instead of it).
    smooth_training = metrics.denoised(training_data.images, metrics.MATCHED_NOISE_SIGMA_VOXELS)
    smooth_nearest = metrics.nearest_distances(metrics.denoised(samples, metrics.MATCHED_NOISE_SIGMA_VOXELS),
                                               smooth_training)
    result["memorisation"]["denoised"] = {
        "sigma_voxels": metrics.MATCHED_NOISE_SIGMA_VOXELS,
        "nearest_training_rmse_min": float(smooth_nearest.min()),
        "closest_two_training_subjects_rmse": metrics.closest_different_subjects(
            smooth_training, subject_ids)}

    say("speed")
    started = time.perf_counter()  # the networks are loaded and warm: this is one sample
    generate_arrays(model, conditions[:1], [12345], guidance=guidance)
    result["speed"] = {"seconds_per_sample": time.perf_counter() - started,
                       "threads": torch.get_num_threads()}
    result["arrays"] = {"samples": samples, "labels": sample_labels, "reference": sweep,
                        "reconstruction": (images[:1], labels[:1])}
    return result
