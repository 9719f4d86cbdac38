"""Samples of a card's model for the evaluation, made by the generate pipeline with its defaults
(sampler, steps), so the numbers measure the model as users run it."""

import numpy as np
import SimpleITK as sitk


def generate_arrays(model, conditions, seeds, guidance=1.0, sampler=None, steps=None):
    """(images (N, D, H, W) float32, labels (N, D, H, W) uint8, provenance of the first) for
    ``conditions`` (list of {age, sex, diagnosis}), one noise seed each."""
    from SynthMedLib.pipelines.generate import generate

    images, labels, first = [], [], None
    for condition, seed in zip(conditions, seeds):
        sample = generate(model, condition, count=1, seed=int(seed), guidance=guidance,
                          sampler=sampler, steps=steps)[0]
        images.append(sitk.GetArrayFromImage(sample.image))
        labels.append(sitk.GetArrayFromImage(sample.labels))
        first = first or sample.provenance
    return np.clip(np.stack(images), 0, 1).astype(np.float32), np.stack(labels).astype(np.uint8), first
