"""The evaluation's measurements, each a small function of numpy arrays (numpy order D, H, W;
intensities in the card's [0, 1] range; label ids 0 background, 1 ventricles, 2 other CSF,
3 GM, 4 WM)."""

import itertools

import numpy as np
import torch
from scipy.stats import spearmanr

VOLUME_KEYS = ("ventricles_ml", "csf_ml", "gm_ml", "wm_ml")
LABEL_OF = {"ventricles_ml": (1,), "csf_ml": (2,), "gm_ml": (3,), "wm_ml": (4,)}


def psnr_in_mask(reference, reconstruction, mask, data_range=1.0):
    """PSNR (dB) over the voxels of ``mask`` (the brain: every non-background label)."""
    error = np.mean((np.asarray(reference, np.float64)[mask] - np.asarray(reconstruction, np.float64)[mask]) ** 2)
    return float(10 * np.log10(data_range ** 2 / max(error, 1e-12)))


def label_volumes(labels, voxel_ml):
    return {key: float(np.isin(labels, ids).sum() * voxel_ml) for key, ids in LABEL_OF.items()}


def tissue_means(image, labels):
    """Mean T1 under WM, GM and CSF (ventricles + other CSF) of a generated label map."""
    means = {}
    for name, ids in (("wm", (4,)), ("gm", (3,)), ("csf", (1, 2))):
        inside = np.isin(labels, ids)
        means[name] = float(image[inside].mean()) if inside.any() else float("nan")
    return means


def tissue_order_holds(means):
    return bool(means["wm"] > means["gm"] > means["csf"])


def spearman(x, y):
    return float(spearmanr(x, y).statistic)


def ms_ssim_metric():
    """MONAI's MS-SSIM set for 3 mm brains (48 x 64 x 48): a 5-voxel kernel and three scales,
    so the coarsest scale (12 x 16 x 12) still holds the kernel; the first three of the standard
    scale weights, renormalised."""
    from monai.metrics import MultiScaleSSIMMetric
    weights = np.array([0.0448, 0.2856, 0.3001])
    return MultiScaleSSIMMetric(spatial_dims=3, data_range=1.0, kernel_size=5,
                                weights=tuple(weights / weights.sum()))


def mean_pairwise_ms_ssim(images):
    """Mean MS-SSIM over every pair of ``images`` (N, D, H, W)."""
    metric = ms_ssim_metric()
    pairs = list(itertools.combinations(range(len(images)), 2))
    x = torch.from_numpy(np.stack([images[i] for i, _ in pairs]))[:, None].float()
    y = torch.from_numpy(np.stack([images[j] for _, j in pairs]))[:, None].float()
    values = torch.cat([metric(x[k:k + 30], y[k:k + 30]) for k in range(0, len(pairs), 30)])
    return float(values.mean())


def _flat(images):
    return torch.from_numpy(np.array(images, np.float32).reshape(len(images), -1))


def rmse_matrix(samples, training):
    """RMSE between every sample and every training image, (N samples, M training) torch."""
    return torch.cdist(_flat(samples), _flat(training)) / float(np.sqrt(np.prod(np.shape(samples)[1:])))


def nearest_distances(samples, training):
    """RMSE from each sample to its nearest training image."""
    return rmse_matrix(samples, training).min(1).values.numpy()


# The memorisation checks at matched noise smooth both sides by this Gaussian (voxels).
MATCHED_NOISE_SIGMA_VOXELS = 1.0


def denoised(images, sigma_voxels):
    """Each volume smoothed by a Gaussian of ``sigma_voxels``: the memorisation check at matched
    noise. A sample carries no i.i.d. noise while two training images carry two independent draws,
    so raw RMSE favours the sample by the noise variance; smoothing both sides removes most of it."""
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(np.asarray(image, np.float32), sigma_voxels) for image in images])


def closest_different_subjects(training, subject_ids):
    """Smallest RMSE between two training images of *different* subjects (the same subject at
    two ages is not a different person)."""
    flat = _flat(training)
    distances = torch.cdist(flat, flat)
    ids = torch.as_tensor(subject_ids)
    distances[ids[:, None] == ids[None, :]] = float("inf")
    return float(distances.min()) / np.sqrt(flat.shape[1])
