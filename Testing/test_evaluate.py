"""The evaluation's measurements on arrays whose answers are known."""

import numpy as np
import pytest

from SynthMedLib.evaluate import metrics


def test_psnr_inside_the_mask_only():
    reference = np.zeros((8, 8, 8))
    reconstruction = reference.copy()
    mask = np.zeros_like(reference, bool)
    mask[2:6, 2:6, 2:6] = True
    reconstruction[mask] += 0.01       # error 0.01 inside: PSNR 40 dB
    reconstruction[0, 0, 0] = 1.0       # outside the mask: ignored
    assert metrics.psnr_in_mask(reference, reconstruction, mask) == pytest.approx(40.0)


def test_volumes_and_tissue_order_from_a_label_map():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0], labels[1], labels[2], labels[3, :2] = 1, 2, 3, 4
    volumes = metrics.label_volumes(labels, voxel_ml=0.027)
    assert volumes == pytest.approx({"ventricles_ml": 16 * 0.027, "csf_ml": 16 * 0.027,
                                     "gm_ml": 16 * 0.027, "wm_ml": 8 * 0.027})
    image = np.choose(labels, [0.0, 0.2, 0.2, 0.5, 0.9])
    assert metrics.tissue_order_holds(metrics.tissue_means(image, labels))
    swapped = np.choose(labels, [0.0, 0.2, 0.2, 0.9, 0.5])
    assert not metrics.tissue_order_holds(metrics.tissue_means(swapped, labels))


def test_ms_ssim_is_one_for_copies_and_lower_for_different_images():
    rng = np.random.default_rng(0)
    base = rng.random((24, 24, 24)).astype(np.float32)
    assert metrics.mean_pairwise_ms_ssim(np.stack([base, base, base])) == pytest.approx(1.0, abs=1e-4)
    different = rng.random((3, 24, 24, 24)).astype(np.float32)
    assert metrics.mean_pairwise_ms_ssim(different) < 0.5


def test_memorisation_distances():
    training = np.zeros((4, 2, 2, 2), np.float32)
    training[1] += 0.1                  # subject 0 at another age: not a different person
    training[2] += 0.5
    training[3] += 0.9
    assert metrics.closest_different_subjects(training, [0, 0, 1, 2]) == pytest.approx(0.4)
    samples = np.stack([training[2] + 0.05, training[3] - 0.2])
    assert metrics.nearest_distances(samples, training) == pytest.approx([0.05, 0.2])


def test_denoising_both_sides_removes_the_noise_advantage_of_a_smooth_sample():
    rng = np.random.default_rng(1)
    anatomy = np.stack([np.full((12, 12, 12), level, np.float32) for level in (0.3, 0.32, 0.5)])
    training = anatomy + rng.normal(0, 0.05, anatomy.shape).astype(np.float32)
    sample = anatomy[2:] + 0.03  # smooth, 0.03 from subject 2's anatomy, no noise
    ids = [0, 1, 2]
    # Raw: the noiseless sample looks closer than two training subjects are (0.02 apart).
    assert metrics.nearest_distances(sample, training)[0] < 0.06
    assert metrics.closest_different_subjects(training, ids) > 0.06
    smooth_training = metrics.denoised(training, 2.0)
    assert metrics.nearest_distances(metrics.denoised(sample, 2.0), smooth_training)[0] == pytest.approx(0.03, abs=0.01)
    assert metrics.closest_different_subjects(smooth_training, ids) == pytest.approx(0.02, abs=0.01)


def test_spearman_of_a_monotone_relation_is_one():
    ages = np.linspace(50, 90, 10)
    assert metrics.spearman(ages, np.exp(ages / 20)) == pytest.approx(1.0)
