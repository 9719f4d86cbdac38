"""Held-out cohort renders the evaluation compares against (subject seeds >= HELD_OUT_SEED, never
seen in training), cached on disk like the training set."""

import hashlib
import json
from pathlib import Path

import numpy as np

from SynthMedLib.train.dataset import build_items


def held_out_subjects(sex, diagnosis, count, start=None):
    """``count`` held-out subjects of one sex and diagnosis (the cohort's own seed -> subject
    mapping, skipping seeds of the other sex)."""
    from SynthMedLib.cohort import HELD_OUT_SEED, subject_from_seed
    seed = HELD_OUT_SEED if start is None else start
    subjects = []
    while len(subjects) < count:
        subject = subject_from_seed(seed, diagnosis)
        if subject.sex == sex:
            subjects.append(subject)
        seed += 1
    return subjects


class Reference:
    """Renders of ``subjects`` at ``ages``: ``images``/``labels`` (S, A, D, H, W), ``volumes``
    {key: (S, A) array}."""

    def __init__(self, subjects, ages, card, cache_dir, workers=2, progress=True):
        self.subjects, self.ages = list(subjects), [float(a) for a in ages]
        key = hashlib.sha256(json.dumps({"s": [(s.seed, s.sex, s.diagnosis) for s in self.subjects],
                                         "a": self.ages, "space": card["space"]},
                                        sort_keys=True).encode()).hexdigest()[:16]
        folder = Path(cache_dir) / f"reference-{card['id']}-{key}"
        items = [(s, a) for s in self.subjects for a in self.ages]
        data = build_items(folder, items, card, workers=workers, progress=progress,
                           description="render held-out reference")
        shape = (len(self.subjects), len(self.ages))
        self.images = data.images.reshape(*shape, *data.images.shape[1:])
        self.labels = data.labels.reshape(*shape, *data.labels.shape[1:])
        keys = data.meta[0]["volumes"].keys()
        self.volumes = {k: np.array([m["volumes"][k] for m in data.meta]).reshape(shape) for k in keys}

    def band(self, key, age, low=1.0, high=99.0):
        """(P_low, P_high) of volume ``key`` across subjects at ``age`` (each subject's volume
        curve interpolated linearly between the rendered ages)."""
        values = [np.interp(age, self.ages, self.volumes[key][i]) for i in range(len(self.subjects))]
        return float(np.percentile(values, low)), float(np.percentile(values, high))


def noisy_and_clean(subject, age, card):
    """(noisy, noise-free, labels) of one subject on the card's grid; both images normalised by
    the mapping fitted to the noisy one (as the training set was), so they differ only by noise."""
    import SimpleITK as sitk

    from SynthMedLib.cohort import render
    from SynthMedLib.spaces.intensity import fit_intensity
    from SynthMedLib.spaces.model_space import ModelSpace

    grid = ModelSpace.from_card(card).grid()
    noisy = render(subject, age, grid=grid)
    # No autoencoder reproduces i.i.d. noise: against the noisy image, PSNR is capped by the
    # noise (sigma 0.01-0.03 of WM, about 30-40 dB) whatever the model; the noise-free render
    # shows the reconstruction against the anatomy, and that cap.
    clean = render(subject, age, grid=grid, noise=False)
    raw_noisy = sitk.GetArrayFromImage(noisy.image).astype(np.float64)
    mapping = fit_intensity(raw_noisy, card["space"]["intensity"])
    return (mapping.to_model(raw_noisy).astype(np.float32),
            mapping.to_model(sitk.GetArrayFromImage(clean.image)).astype(np.float32),
            sitk.GetArrayFromImage(noisy.labels))
