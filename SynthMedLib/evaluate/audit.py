"""Is a synthetic dataset good and safe to share? Fidelity, diversity, memorisation and condition
adherence against a reference dataset (and the model's training set, for memorisation).

Images are compared on the reference's grid, each scaled to [0, 1] between its 0.5th and 99.5th
percentiles (evaluate/downstream.load_pairs), so that a dataset and its reference meet alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from SynthMedLib.errors import InputError
from SynthMedLib.evaluate.metrics import MATCHED_NOISE_SIGMA_VOXELS, denoised, mean_pairwise_ms_ssim, rmse_matrix

AGE_BIN_YEARS = 10
# Mode collapse: a synthetic set whose images are this much more alike than the reference's (mean
# pairwise MS-SSIM) is flagged; the demo model's evaluation uses the same margin.
DIVERSITY_MARGIN = 0.05
# Memorisation: a sample closer to a training record than this percentile of the training set's
# own nearest-neighbour distances is flagged (no real subject is that close to another).
PRIVACY_PERCENTILE = 1.0
MAX_CELL_IMAGES = 16            # MS-SSIM pairs grow quadratically


@dataclass
class Images:
    arrays: np.ndarray          # (N, D, H, W) float32 in [0, 1]
    names: list[str]


def volume_fidelity(synthetic, reference, columns) -> dict:
    """KS statistic / p and Wasserstein distance per volume, overall and per age bin."""
    from scipy.stats import ks_2samp, wasserstein_distance

    def compare(a, b):
        if len(a) < 2 or len(b) < 2:
            return None
        test = ks_2samp(a, b)
        return {"n_synthetic": len(a), "n_reference": len(b), "ks": float(test.statistic),
                "ks_p": float(test.pvalue), "wasserstein_ml": float(wasserstein_distance(a, b)),
                "mean_synthetic": float(np.mean(a)), "mean_reference": float(np.mean(b))}

    result = {}
    for column in columns:
        entry = {"all": compare(synthetic[column].to_numpy(float), reference[column].to_numpy(float))}
        if "age" in synthetic.columns and "age" in reference.columns:
            for low in range(0, 120, AGE_BIN_YEARS):
                inside = [frame[(frame["age"] >= low) & (frame["age"] < low + AGE_BIN_YEARS)][column]
                          for frame in (synthetic, reference)]
                compared = compare(inside[0].to_numpy(float), inside[1].to_numpy(float))
                if compared is not None:
                    entry[f"age {low}-{low + AGE_BIN_YEARS}"] = compared
        result[column] = entry
    return result


def classifier_two_sample_test(synthetic: Images, reference: Images, folds: int = 4, steps: int = 150,
                               seed: int = 0, downsample: int = 2, progress=None) -> dict:
    """Cross-validated AUC of a small MONAI 3D CNN told to separate synthetic from reference
    images: 0.5 means it cannot tell them apart; 1.0 means every synthetic image gives itself away.
    Balanced classes (the larger set is subsampled), images average-pooled by ``downsample``."""
    from monai.networks.nets import Classifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    n = min(len(synthetic.arrays), len(reference.arrays))
    if n < folds:
        raise InputError(f"the classifier test needs at least {folds} images per side, got {n}")
    rng = np.random.default_rng(seed)
    pick = [rng.permutation(len(s.arrays))[:n] for s in (synthetic, reference)]
    x = torch.from_numpy(np.concatenate([synthetic.arrays[pick[0]], reference.arrays[pick[1]]]))[:, None]
    if downsample > 1:
        x = torch.nn.functional.avg_pool3d(x, downsample)
    y = np.r_[np.ones(n), np.zeros(n)]
    scores = np.zeros(2 * n)
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(2 * n), y)
    for fold, (train, test) in enumerate(splits):
        torch.manual_seed(seed + fold)
        network = Classifier(in_shape=tuple(x.shape[1:]), classes=1, channels=(4, 8, 16), strides=(2, 2, 2),
                             num_res_units=1)
        optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
        target = torch.from_numpy(y).float()
        network.train()
        for _ in range(steps):
            batch = rng.choice(train, size=min(8, len(train)), replace=False)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(network(x[batch])[:, 0], target[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if progress is not None:
                progress.check()
        network.eval()
        with torch.no_grad():
            scores[test] = network(x[test])[:, 0].numpy()
        if progress is not None:
            progress.step("classifier test", fold + 1, folds)
    return {"auc": float(roc_auc_score(y, scores)), "images_per_side": n, "folds": folds, "steps": steps,
            "network": "monai.networks.nets.Classifier (4, 8, 16)"}


def mmd(synthetic: Images, reference: Images, downsample: int = 4) -> float:
    """MONAI's MMD between the two sets' (pooled) images: a feature-network-free distance."""
    from monai.metrics import MMDMetric

    def pooled(images):
        x = torch.from_numpy(images.arrays)[:, None]
        return torch.nn.functional.avg_pool3d(x, downsample).flatten(1)

    return float(MMDMetric()(pooled(synthetic), pooled(reference)))


def diversity(synthetic: Images, reference: Images, synthetic_cells: dict, reference_cells: dict) -> dict:
    """Mean pairwise MS-SSIM within each set, overall and per condition cell; higher = more alike.
    ``*_cells``: cell name -> indices into the set's images."""
    def within(images, indices):
        indices = list(indices)[:MAX_CELL_IMAGES]
        return None if len(indices) < 2 else mean_pairwise_ms_ssim(images.arrays[indices])

    result = {"all": {"synthetic": within(synthetic, range(len(synthetic.arrays))),
                      "reference": within(reference, range(len(reference.arrays)))}}
    for cell in sorted(set(synthetic_cells) | set(reference_cells)):
        result[cell] = {"synthetic": within(synthetic, synthetic_cells.get(cell, [])),
                        "reference": within(reference, reference_cells.get(cell, []))}
    flagged = []
    for cell, values in result.items():
        if values["synthetic"] is not None and values["reference"] is not None and \
                values["synthetic"] > values["reference"] + DIVERSITY_MARGIN:
            flagged.append(cell)
    identical = sum(np.array_equal(synthetic.arrays[i], synthetic.arrays[j])
                    for i, j in itertools.combinations(range(min(len(synthetic.arrays), 64)), 2))
    return {"cells": result, "margin": DIVERSITY_MARGIN, "collapsed_cells": flagged, "identical_pairs": int(identical),
            "mode_collapse": bool(flagged) or identical > 0}


def memorisation(synthetic: Images, training: Images) -> dict:
    """Each synthetic sample's distance (RMSE, both sides smoothed alike) to its nearest training
    record, against the training records' distances to their nearest *other* record."""
    if len(training.arrays) < 3:
        raise InputError("the memorisation check needs at least 3 training images")
    smooth_s, smooth_t = (denoised(i.arrays, MATCHED_NOISE_SIGMA_VOXELS) for i in (synthetic, training))
    nearest, which = rmse_matrix(smooth_s, smooth_t).min(1)
    among = rmse_matrix(smooth_t, smooth_t)
    among.fill_diagonal_(float("inf"))
    training_nn = among.min(1).values.numpy()
    threshold = float(np.percentile(training_nn, PRIVACY_PERCENTILE))
    flagged = [{"sample": synthetic.names[i], "nearest_training": training.names[int(which[i])],
                "rmse": float(nearest[i])} for i in range(len(nearest)) if float(nearest[i]) < threshold]
    return {"threshold_rmse": threshold, "percentile": PRIVACY_PERCENTILE,
            "matched_noise_sigma": MATCHED_NOISE_SIGMA_VOXELS,
            "training_nn_rmse": {"min": float(training_nn.min()), "median": float(np.median(training_nn))},
            "synthetic_nn_rmse": {"min": float(nearest.min()), "median": float(nearest.median())},
            "flagged_fraction": len(flagged) / len(nearest), "flagged": flagged,
            "synthetic_nn_distances": [float(v) for v in nearest]}


def adherence(synthetic) -> dict:
    """Do the measured volumes follow the conditions asked? Spearman(age, ventricles) and the
    ventricles of each diagnosis per age bin (AD > MCI > CN expected); asked vs measured for any
    condition that is itself a volume."""
    from scipy.stats import spearmanr

    result = {}
    if "age" in synthetic.columns and "ventricles_ml" in synthetic.columns and len(synthetic) > 2:
        result["spearman_age_ventricles"] = float(spearmanr(synthetic["age"], synthetic["ventricles_ml"]).statistic)
    if "diagnosis" in synthetic.columns and "ventricles_ml" in synthetic.columns:
        cells = {}
        frame = synthetic.assign(age_bin=(synthetic["age"] // AGE_BIN_YEARS * AGE_BIN_YEARS).astype(int)) \
            if "age" in synthetic.columns else synthetic.assign(age_bin=0)
        for (age_bin, diagnosis), group in frame.groupby(["age_bin", "diagnosis"], observed=True):
            cells.setdefault(f"age {age_bin}-{age_bin + AGE_BIN_YEARS}", {})[str(diagnosis)] = \
                {"n": len(group), "ventricles_ml": float(group["ventricles_ml"].mean())}
        result["ventricles_by_diagnosis"] = cells
        means = synthetic.groupby("diagnosis", observed=True)["ventricles_ml"].mean()
        if {"AD", "CN"} <= set(means.index):
            result["ad_greater_than_cn"] = bool(means["AD"] > means["CN"])
    for column in synthetic.columns:
        measured = f"{column}_ml" if not column.endswith("_ml") else None
        if measured and measured in synthetic.columns and np.issubdtype(synthetic[column].dtype, np.number):
            result[f"asked_vs_measured_{column}"] = float(spearmanr(synthetic[column], synthetic[measured]).statistic)
    return result
